"""A roofline engine: per layer, the largest of compute time, DRAM time and a per-kernel floor.

Compute time is 2 x MACs at the dense peak of the compute precision the layer maps to, plus the
non-GEMM arithmetic at the engine's vector rate. Memory time is the layer's DRAM traffic (weights as
stored, activations read and written) at peak bandwidth. The per-kernel floor models launch and
synchronisation cost (about 4-5 us per kernel on an H100 even under CUDA graphs). This is an upper bound
on speed: real GPUs reach 1.5-4x less on diffusion layers (see the hardware-calibration work).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

from ..actions import Actions
from .base import EngineDescription, EngineModel, LayerEstimate
from ..precision import COMPUTE_TYPES, fits
from ..workload import LayerWork, OperandFormat


@dataclass(frozen=True)
class EngineRates:
    peaks: dict  # compute precision -> dense operations per second (one MAC = two operations)
    vector_peak: float
    kernel_overhead_s: float
    sparse_peaks: dict = None  # 2:4-sparse rates where the engine has them (not used for dense layers)

    def scaled(self, factor: float) -> "EngineRates":
        """The rates at a power mode that scales the engine's clock by `factor`."""
        sparse = {p: v * factor for p, v in (self.sparse_peaks or {}).items()}
        return EngineRates({p: v * factor for p, v in self.peaks.items()}, self.vector_peak * factor,
                           self.kernel_overhead_s, sparse)


def conversion_ops(layer: LayerWork, weight: OperandFormat, activation: OperandFormat, precision: str) -> tuple:
    """(operations, notes) a quantized GEMM costs beyond its MACs on a unit of `precision`: unpacking
    operands stored narrower than the unit (one op per element), dequantizing and requantizing outputs
    (one op each per output), and applying per-block scales along K (one op per output and block)."""
    batch, m, n, k = layer.gemm_dims if layer.gemm_dims else (1, 0, 0, 0)
    outputs, target = batch * m * n, COMPUTE_TYPES[precision].bits
    ops, notes = 0, []
    if not weight.full_precision and weight.bits < target:
        ops += batch * k * n if layer.kind == "attention_matmul" else k * n
        notes.append("unpack weights")
    if not activation.full_precision and activation.bits < target:
        ops += batch * m * k
        notes.append("unpack activations")
    if not (weight.full_precision and activation.full_precision):
        ops += outputs * (2 if not activation.full_precision else 1)
        notes.append("rescale outputs")
    block = max(weight.block_size, activation.block_size)
    if block:
        ops += outputs * ceil(k / block)
        notes.append("per-block scales")
    return ops, notes


def gemm_onchip_bytes(layer: LayerWork, tile=(128, 128)) -> float:
    """On-chip traffic under an output tiling (tile_m x tile_n): A is read once per column of tiles, B once
    per row of tiles, C written once; a layer that is not a GEMM moves its DRAM traffic through on-chip memory."""
    if not (layer.is_gemm and layer.gemm_dims):
        return layer.traffic_bytes
    batch, m, n, k = layer.gemm_dims
    a_bytes = (layer.activation_format.bits / 8) * batch * m * k
    b_format = layer.weight_format or layer.activation_format
    b_bytes = (b_format.bits / 8) * batch * k * n
    c_bytes = layer.write_bytes
    return a_bytes * ceil(n / tile[1]) + b_bytes * ceil(m / tile[0]) + c_bytes


class RooflineEngine(EngineModel):
    def __init__(self, name: str, rates: EngineRates, dram_bandwidth: float, energy=None, kinds=None):
        self.name = name
        self.rates = rates
        self.dram_bandwidth = dram_bandwidth
        self.energy = energy  # hw_models.energy.EnergyModel, or None: no energy estimate
        self.kinds = kinds

    def can_run(self, layer: LayerWork) -> bool:
        if not super().can_run(layer):
            return False
        if layer.is_gemm:  # an engine without a precision that holds the operands cannot take the layer
            weight = layer.weight_format or layer.activation_format
            return (self.choose_precision(weight, layer.activation_format, layer.tf32) is not None
                    or self.kinds is None)
        return True

    def choose_precision(self, weight: OperandFormat, activation: OperandFormat, tf32: bool = False):
        """The fastest compute precision of the engine that holds both operands exactly, or None; with tf32,
        fp32 operands may also run at tf32 (the runtime rounds them, as cuBLAS and cuDNN do when allowed)."""
        candidates = [p for p in self.rates.peaks if fits(weight, p) and fits(activation, p)]
        if tf32 and "tf32" in self.rates.peaks and all(f.name == "fp32" for f in (weight, activation)):
            candidates.append("tf32")
        if not candidates:
            return None
        integer_operands = all(f.family in ("int", "binary") for f in (weight, activation))

        def preference(precision):
            # at equal peak, integers stay on integer units (exact int32 accumulation), floats on float
            same_family = (COMPUTE_TYPES[precision].family != "float") == integer_operands
            return self.rates.peaks[precision], same_family

        return max(candidates, key=preference)

    def _mapping(self, weight: OperandFormat, activation: OperandFormat, precision: str) -> str:
        operands = f"{weight.name} x {activation.name}"
        if weight.full_precision and activation.full_precision:
            note = "native" if weight.name == activation.name == precision else "upcast"
            if precision == "tf32" and weight.name == "fp32":
                note = "TF32 allowed"
        elif activation.full_precision:
            note = f"weights dequantized to {precision}"
        elif all(f.bits == COMPUTE_TYPES[precision].bits for f in (weight, activation)):
            note = "native"
        else:
            note = "upcast"
        if weight.planes > 1:
            note += f", {weight.planes} weight planes"
        return f"{operands} -> {precision} ({note})"

    def estimate_layer(self, layer: LayerWork) -> LayerEstimate:
        engine = self.rates
        precision, extra = None, 0
        compute_s = layer.vector_flops / engine.vector_peak
        if layer.is_gemm:
            weight = layer.weight_format or layer.activation_format
            precision = self.choose_precision(weight, layer.activation_format, layer.tf32)
            if precision is None:
                mapping = f"{weight.name} x {layer.activation_format.name}: no exact precision, vector unit"
                compute_s += 2 * layer.macs / engine.vector_peak
            else:
                mapping = self._mapping(weight, layer.activation_format, precision)
                compute_s += 2 * layer.macs / engine.peaks[precision]
                extra, notes = conversion_ops(layer, weight, layer.activation_format, precision)
                compute_s += extra / engine.vector_peak
                if notes:
                    mapping += f" + {extra:,} vector ops: " if extra else " + "
                    mapping += ", ".join(notes)
        else:
            mapping = f"vector {layer.vector_dtype}"
        memory_s = layer.traffic_bytes / self.dram_bandwidth
        overhead_s = layer.kernels * engine.kernel_overhead_s
        times = {"compute": compute_s, "memory": memory_s, "overhead": overhead_s}
        bottleneck = max(times, key=times.get)
        return LayerEstimate(
            engine=self.name,
            compute_precision=precision,
            mapping=mapping,
            compute_s=compute_s,
            memory_s=memory_s,
            overhead_s=overhead_s,
            latency_s=times[bottleneck],
            bottleneck=bottleneck,
            actions=self.actions(layer, precision, extra),
        )

    def actions(self, layer: LayerWork, precision, extra_ops: int, tile=(128, 128)) -> Actions:
        return Actions(layer.macs if layer.is_gemm else 0, precision, layer.vector_flops + extra_ops,
                       layer.vector_dtype, 0, gemm_onchip_bytes(layer, tile), layer.traffic_bytes,
                       convolution=layer.kind == "conv", weight_bytes=layer.weight_bytes,
                       kernels=layer.kernels, strided_bytes=layer.relayout_bytes + layer.strided_bytes,
                       transform_bytes=2 * layer.layout_transform_bytes(precision), write_bytes=layer.write_bytes)

    def describe(self) -> EngineDescription:
        return EngineDescription("roofline", dict(self.rates.peaks))

