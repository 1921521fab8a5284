"""The estimate of a traced model: formats per layer -> bit-aware costs -> device time and energy, with totals.

Torch-free: it takes the layers simdq.model traced (simdq.cli.estimate runs the whole pipeline).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from math import prod

from hw_models import LayerWork
from hw_models.precision import COMPUTE_TYPES
from hw_models.workload import FP32, FULL_PRECISION, dequantize_work, quantize_work, weight_dequantize_work

from ..config import EstimateConfig
from ..model.layer import Layer
from ..scheme import PAPER_CONVENTIONS, LayerScheme, add_policy_layers, quant_format, resolve
from .accounting import LayerCost, layer_cost

TOTAL_KEYS = ("params", "size_mib", "weight_bytes", "read_bytes", "write_bytes", "macs", "bops", "flops", "ops",
              "latency_s", "energy_j")
PER_IMAGE_KEYS = ("macs", "bops", "flops", "ops", "read_bytes", "write_bytes", "latency_s", "energy_j")


@dataclass
class LayerResult:
    layer: Layer
    scheme: LayerScheme
    cost: LayerCost
    device: object  # hw_models.LayerEstimate, or None for layers that run nothing


@dataclass
class Estimate:
    model: str
    description: str
    device: str
    device_description: str
    convention: str
    batch: int
    steps: int
    guidance: bool
    layers: list
    totals: dict
    per_image: dict
    baseline: dict  # totals of the same model with every layer at the model's precision
    uncounted: dict  # what the convention leaves out
    timings: dict = field(default_factory=dict)
    energy_model: str = ""  # what the energy numbers are (measured on the GPU, or dynamic only from a table)

    @property
    def forwards_per_image(self) -> float:
        return self.steps * (2 if self.guidance else 1) / self.batch


# the layer kinds each runtime.tf32 mode lets run fp32 GEMMs on TF32 (cuDNN: convolutions; cuBLAS: the rest).
# Fused attention stays fp32 in every mode: PyTorch's fp32 SDPA kernels do not use TF32 (on an H200 they time
# the same with it on and off).
TF32_KINDS = {"none": (), "convolutions": ("conv",), "all": ("conv", "linear", "attention_matmul")}


def tf32_kinds(runtime) -> tuple:
    kinds = TF32_KINDS[runtime.tf32]
    return tuple(k for k in kinds if not (k == "attention_matmul" and runtime.fused_attention))


def _conv_stride(layer: Layer) -> int:
    """A 2-D convolution's stride, from the widths it reads and writes (a downsampling convolution reads twice
    its output's width, or one more where it pads only after); 1 where the trace has no shapes."""
    if layer.kind != "conv" or len(layer.input_shape) != 4 or len(layer.output_shape) != 4:
        return 1
    return max(1, layer.input_shape[-1] // layer.output_shape[-1])


def _layout_bytes(layer: Layer, cost) -> tuple:
    """(channels-first, channels-last) bytes of a convolution's operands, what a GPU's NHWC or NCHW kernels
    transform (LayerWork.layout_transform_bytes): the weights as they are stored; the input and the output it
    returns alike, as the input is stored (cuDNN computes and returns channels-last for a channels-last input:
    model.trace.cudnn_output_format)."""
    if layer.kind != "conv" or len(layer.operand_layouts) < 2:
        return 0.0, 0.0
    activation, weight = layer.operand_layouts[:2]
    channels_first = channels_last = 0.0
    for layout, size in ((weight, cost.weight_bytes), (activation, cost.read_bytes + cost.write_bytes)):
        if layout == "channels_last":
            channels_last += size
        else:
            channels_first += size
    return channels_first, channels_last


def free_memory_bytes(runtime, device, results) -> float:
    """runtime.gpu_memory_free_gb in bytes; where it is null, the device's memory less the weights of `results`
    (unbounded where the device file gives no capacity)."""
    if runtime.gpu_memory_free_gb is not None:
        return runtime.gpu_memory_free_gb * 1e9
    capacity = device.memory_bytes
    return float("inf") if capacity is None else max(0.0, capacity - sum(r.cost.weight_bytes for r in results))


class CachedWorkspaces:
    """The FFT workspaces PyTorch's caching allocator holds through a forward captured as a CUDA graph: a workspace
    stays cached once freed, a later FFT reuses a cached block as large, and a failed allocation releases none of
    them (during a capture it cannot). So each FFT finds the memory left free less what earlier FFTs of other
    sizes cached (on an H100, SD-1.5 in fp32 with 20 GB free captured its 320->640 FFT, 6.9 GB, and then not its
    640->640 ones, 13.9 GB, which alone would fit; reports/gpu-fft-forward-h100.json)."""

    def __init__(self, free_bytes: float):
        self.free_bytes = free_bytes
        self.blocks = []

    def free_for(self, workspace: float) -> float:
        """The memory free for a layer asking for `workspace` bytes (0: none), its block kept if it fits."""
        if not workspace or any(block >= workspace for block in self.blocks):
            return self.free_bytes
        available = self.free_bytes - sum(self.blocks)
        if workspace <= available:
            self.blocks.append(workspace)
        return available


def layer_work(result: LayerResult, model_dtype: str, tf32_kinds=()):
    layer, scheme, cost = result.layer, result.scheme, result.cost
    if layer.kind == "unused":
        return None
    # a residual binary weight runs one GEMM pass per plane: its planes stacked as extra output channels of one
    # GEMM, their products scaled and added in the epilogue
    planes = scheme.weight.planes if scheme.weight else 1
    gemm_dims = layer.gemm_dims
    if planes > 1 and gemm_dims:
        gemm_dims = (*gemm_dims[:2], gemm_dims[2] * planes, gemm_dims[3])
    element_bytes = FULL_PRECISION.get(model_dtype, FP32).bits / 8
    channels_first, channels_last = _layout_bytes(layer, cost)
    return LayerWork(
        name=layer.name, kind=layer.kind, macs=layer.macs * planes, vector_flops=layer.vector_flops,
        weight_bytes=cost.weight_bytes, read_bytes=cost.read_bytes, write_bytes=cost.write_bytes,
        kernels=layer.kernels, activation_format=scheme.activation.operand,
        weight_format=scheme.weight.operand if scheme.weight else None, vector_dtype=model_dtype,
        gemm_dims=gemm_dims, tf32=layer.kind in tf32_kinds,
        window=prod(layer.kernel_size) if layer.kind == "conv" and layer.kernel_size else 0,
        stride=_conv_stride(layer),
        parallel_rows=layer.parallel_rows, input_elements=layer.gemm_read,
        relayout_kernels=layer.relayout_kernels, relayout_bytes=layer.relayout * element_bytes,
        strided_kernels=layer.strided_kernels, strided_bytes=layer.strided * element_bytes,
        fused_attention=layer.fused_attention, channels_first_bytes=channels_first, channels_last_bytes=channels_last,
        batch=layer.input_shape[0] if layer.kind == "conv" and len(layer.input_shape) == 4 else 0,
    )


# what the extra kernels add to a GEMM's counts (its MACs, precision and kind stay the GEMM's)
ADDED_ACTIONS = ("vector_ops", "binary_ops", "onchip_bytes", "dram_bytes", "weight_bytes", "kernels", "strided_bytes",
                 "transform_bytes", "write_bytes")


def _with(estimate, work: LayerWork, extra):
    """A GEMM's device estimate with the kernels of `work` added (dynamic quantization's or the eager weight
    dequantization's): they run one after the other, so times, traffic and energy add."""
    a, b = estimate.actions, extra.actions
    actions = replace(a, **{name: getattr(a, name) + getattr(b, name) for name in ADDED_ACTIONS})
    energy = None if estimate.energy_j is None or extra.energy_j is None else estimate.energy_j + extra.energy_j
    return replace(
        estimate, mapping=f"{estimate.mapping} + {work.kind} ({work.kernels} kernels)",
        compute_s=estimate.compute_s + extra.compute_s, memory_s=estimate.memory_s + extra.memory_s,
        overhead_s=estimate.overhead_s + extra.overhead_s, latency_s=estimate.latency_s + extra.latency_s,
        energy_j=energy, actions=actions)


def _dynamic_extras(result: LayerResult, work: LayerWork, estimate, model_bytes: int) -> list:
    """The work runtime.activation_quantization: dynamic adds to a GEMM whose activations are quantized."""
    layer, activation = result.layer, result.scheme.activation.operand
    if not (work.is_gemm and work.gemm_dims) or activation.full_precision:
        return []
    batch, m, n, k = work.gemm_dims
    operands = 2 if layer.kind == "attention_matmul" else 1  # both operands of an activation matmul
    extras = [quantize_work(layer.name, operands * batch * m * k, model_bytes, activation, work.vector_dtype)]
    precision = estimate.compute_precision
    if precision and COMPUTE_TYPES[precision].family == "int":
        extras.append(dequantize_work(layer.name, batch * m * n, model_bytes, work.vector_dtype))
    return extras


def _dequantized_weights(result: LayerResult, work: LayerWork, model_bytes: int):
    """runtime.weight_only: dequantize: (the GEMM reading full-precision weights, the two kernels that make
    them), or None where the layer is not weight-only quantized."""
    layer, scheme = result.layer, result.scheme
    weight, activation = (scheme.weight.operand if scheme.weight else None), scheme.activation.operand
    if not (work.is_gemm and layer.is_weight_layer and weight is not None) or weight.full_precision \
            or not activation.full_precision:
        return None
    codes = layer.weight_params * weight.bits / 8
    gemm = replace(work, weight_bytes=work.weight_bytes - codes + layer.weight_params * model_bytes,
                   weight_format=activation, macs=layer.macs, gemm_dims=layer.gemm_dims)
    return gemm, weight_dequantize_work(layer.name, layer.weight_params, codes, model_bytes, work.vector_dtype)


def cost_layers(layers, schemes, config: EstimateConfig, convention: str, device) -> list:
    model_format = quant_format(config.model.dtype)
    scale_bits = quant_format(config.quant.scale_format).bits
    runtime = config.runtime
    results = []
    for layer, scheme in zip(layers, schemes):
        cost = layer_cost(layer, scheme, config.quant, model_format, scale_bits, convention)
        results.append(LayerResult(layer, scheme, cost, None))
    workspaces = CachedWorkspaces(free_memory_bytes(runtime, device, results))
    for result in results:
        work = layer_work(result, config.model.dtype, tf32_kinds(runtime))
        if work is None:
            continue
        work = replace(work, free_memory_bytes=workspaces.free_for(device.workspace_bytes(work)))
        dequantized = _dequantized_weights(result, work, model_format.bits // 8) \
            if runtime.weight_only == "dequantize" else None
        if dequantized:
            work, extra = dequantized
            estimate = _with(device.estimate_layer(work), extra, device.estimate_layer(extra))
        else:
            estimate = device.estimate_layer(work)
        if runtime.activation_quantization == "dynamic":
            for extra in _dynamic_extras(result, work, estimate, model_format.bits // 8):
                estimate = _with(estimate, extra, device.estimate_layer(extra))
        result.device = estimate
    return results


def totals_of(results: list) -> dict:
    devices = [r.device for r in results if r.device is not None]
    energies = [d.energy_j for d in devices]
    return {
        "params": sum(r.cost.params for r in results),
        "size_mib": sum(r.cost.size_bytes for r in results) / 2**20,
        "weight_bytes": sum(r.cost.weight_bytes for r in results),
        "read_bytes": sum(r.cost.read_bytes for r in results),
        "write_bytes": sum(r.cost.write_bytes for r in results),
        "macs": sum(r.cost.macs for r in results),
        "bops": sum(r.cost.bops for r in results),
        "flops": sum(r.cost.flops for r in results),
        "ops": sum(r.cost.ops for r in results),
        "latency_s": sum(d.latency_s for d in devices),
        "energy_j": None if any(e is None for e in energies) else sum(energies),
    }


def uncounted_of(results: list, convention: str) -> dict:
    """What a paper convention leaves out of its OPs (zeros under `full`)."""
    if convention not in PAPER_CONVENTIONS:
        return {"attention_macs": 0, "excluded_layer_macs": 0, "non_gemm_flops": 0}
    return {
        "attention_macs": sum(r.layer.macs for r in results if r.layer.kind == "attention_matmul"),
        "excluded_layer_macs": sum(
            r.layer.macs for r in results if r.layer.is_weight_layer and not r.cost.counted),
        "non_gemm_flops": sum(r.layer.vector_flops for r in results),
    }


def baseline_totals(layers: list, config: EstimateConfig, convention: str, device) -> dict:
    """Totals of the traced `layers` with every layer at the model's precision: they depend on the layers, the
    model dtype, the convention, the runtime section and the device, never on config.quant (a sweep prices them once
    per device)."""
    full = quant_format(config.model.dtype)
    unquantized = [LayerScheme(full if layer.is_weight_layer else None, full) for layer in layers]
    return totals_of(cost_layers(layers, unquantized, config, convention, device))


def estimate_layers(layers: list, config: EstimateConfig, device, spec, run_input, convention: str,
                    timings: dict, baseline: dict | None = None) -> Estimate:
    """The Estimate of `layers` (traced from the UNet of `spec` at `run_input`) on a hw_models.Device;
    `baseline`: baseline_totals of the same layers, dtype, convention and device, if already known."""
    started = time.perf_counter()
    schemes = resolve(layers, config.quant, config.model.dtype)
    if baseline is None:
        baseline = baseline_totals(layers, config, convention, device)
    layers, schemes = add_policy_layers(layers, schemes, config.quant, config.model.dtype)
    results = cost_layers(layers, schemes, config, convention, device)
    totals = totals_of(results)
    estimate = Estimate(
        model=spec.name, description=spec.description, device=device.label,
        device_description=device.description, convention=convention, batch=run_input.batch,
        steps=run_input.steps, guidance=run_input.guidance, layers=results, totals=totals, per_image={},
        baseline=baseline, uncounted=uncounted_of(results, convention), timings=timings,
        energy_model=getattr(device.primary.energy, "kind", "no energy model"),
    )
    factor = estimate.forwards_per_image
    estimate.per_image = {k: None if totals[k] is None else totals[k] * factor for k in PER_IMAGE_KEYS}
    timings["accounting"] = time.perf_counter() - started
    return estimate


def overridden_input(config: EstimateConfig, batch, steps):
    """config.input with --batch and --steps applied."""
    updates = {k: v for k, v in (("batch", batch), ("steps", steps)) if v is not None}
    return config.input.model_copy(update=updates) if updates else config.input
