"""Which arithmetic each quantized layer runs on the emulator: the accumulator, and why that one.

Without a device every GEMM accumulates exactly. With `--hw DEVICE` a layer takes the accumulator that the
device file's `accumulate:` names for the compute precision the cost model maps the layer to (the same
mapping `simdq estimate --per-layer` shows: int8 on an H100 -> int32_saturate, e4m3 -> sm90_fp8, a binary layer
on an XNOR array -> exact XNOR-popcount or bit-planes). `--accumulator NAME` overrides every layer. Where the
device's rule cannot take the operands (block-scaled operands on a tensor core: sm100's block-scaled MMA is not
modelled; integer operands on a float unit), the layer falls back to a rule that can, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from emulator import BinaryFormat, BlockFormat, FloatFormat, IntFormat, ResidualBinaryFormat, get_accumulator

from ..calibrate.torch_quant import saturating
from ..errors import SimdqError
from ..scheme.accumulators import accumulator_for


@dataclass(frozen=True)
class LayerArithmetic:
    """How one quantized GEMM runs. kernel: which emulator product ("int x int", "binary x binary" (XNOR-
    popcount), "int x binary" (bit-planes), "float x float", "block x block"), or "float32 torch" when an
    operand is unquantized (weight-only schemes: the device runs a float GEMM of the dequantized weights).
    source: where the accumulator came from; requant: the convention (emulator.requantize) by which an integer
    layer's accumulator becomes int8 codes at the output's calibrated range, as an integer pipeline's
    QLinearConv / TFLite CONV_2D writes them, then dequantized for the float ops that follow (None: the float
    epilogue)."""

    name: str
    weight_format: str
    activation_format: str
    accumulator: str
    kernel: str
    source: str
    engine: str | None = None
    precision: str | None = None
    requant: str | None = None

    @property
    def emulated(self) -> bool:
        return self.kernel != "float32 torch"


def family(fmt) -> str:
    if isinstance(fmt, (BinaryFormat, ResidualBinaryFormat)):  # a residual weight runs as its binary planes
        return "binary"
    if isinstance(fmt, IntFormat):
        return "int"
    if isinstance(fmt, BlockFormat):
        return "block"
    if isinstance(fmt, FloatFormat):
        return "float"
    return "full"


def _kernel(weight, activation) -> str:
    families = (family(activation), family(weight))
    if "full" in families:
        return "float32 torch"
    if families == ("binary", "binary"):
        return "binary x binary"
    if "binary" in families and "int" in families:
        return "int x binary"
    if "binary" in families:
        raise SimdqError(f"binary weights with {activation.name} activations (or the reverse) make no GEMM a "
                         "device runs: quantize the other operand to binary or to an integer format")
    if families[0] != families[1] and "block" not in families and "int" in families:
        raise SimdqError(f"{activation.name} activations with {weight.name} weights: a mixed integer/float GEMM is "
                         "not emulated (no device unit takes it as is)")
    return " x ".join(families)


def integer_kernel(kernel: str) -> bool:
    """Whether the kernel's operands are integers (binary included): its accumulator is an integer one."""
    return kernel in ("int x int", "int x binary", "binary x binary")


def _format(name: str | None):
    from ..scheme import quant_format

    if name is None or quant_format(name).full_precision:
        return None
    return saturating(name)


def _fitting(accumulator: str, kernel: str, what: str) -> tuple[str, str]:
    """(accumulator, note): the device's rule where it can take the operands, else the nearest one that can."""
    acc = get_accumulator(accumulator)
    if acc.kind == "tensor_core" and "block" in kernel:
        return "fp32", f"{what}: {acc.name}, but block-scaled tensor-core MMA (sm100) is not modelled: fp32"
    if acc.kind in ("float32", "tensor_core") and integer_kernel(kernel):
        return "exact", f"{what}: {acc.name} on integer operands: integer products summed exactly"
    if acc.kind == "int" and not integer_kernel(kernel):
        return "fp32", f"{what}: {acc.name} on float operands: fp32"
    return acc.name, what


def plan_layer(name: str, weight_format: str, activation_format: str, *, accumulator: str | None = None,
               device=None, device_layer=None, requant: str | None = None) -> LayerArithmetic:
    """The arithmetic of one layer: `accumulator` for every layer if given, else what `device` names for the
    precision `device_layer` (its hw_models.LayerEstimate) runs at, else exact."""
    weight, activation = _format(weight_format), _format(activation_format)
    kernel = "float32 torch" if weight is None or activation is None else _kernel(weight, activation)
    engine = device_layer.engine if device_layer is not None else None
    precision = device_layer.compute_precision if device_layer is not None else None
    if not kernel.startswith("float32"):
        if accumulator is not None:
            chosen, source = _fitting(accumulator, kernel, "--accumulator")
        elif device is None:
            chosen, source = "exact", "no device: exact"
        elif precision is None:
            chosen, source = "exact", f"{device.name}: no GEMM precision for this layer: exact"
        else:
            named = accumulator_for(device, precision, engine)
            if named is not None:
                chosen, source = _fitting(named.name, kernel, f"{device.name} {engine}.{precision}")
            elif precision == "b1":  # an XNOR array's popcount tree is as wide as the sum needs
                chosen, source = "exact", f"{device.name} {engine}: XNOR-popcount (exact)"
            else:
                chosen, source = "exact", f"{device.name} {engine}.{precision} names no accumulator: exact"
    else:
        chosen, source = "fp32", "an operand is unquantized: float32 torch"
    requant = requant if integer_kernel(kernel) else None
    if isinstance(weight, ResidualBinaryFormat):
        # each plane is a binary GEMM; its own scales take the float32 epilogue, so no one int8 requantization
        kernel = f"{kernel}, {weight.bases} weight planes"
        if requant is not None:
            source, requant = f"{source}; float epilogue: {weight.name}'s planes carry their own scales", None
    return LayerArithmetic(name, weight_format, activation_format, chosen, kernel, source, engine, precision, requant)
