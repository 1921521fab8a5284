"""What the cost model needs to know about a format name used in a quantization scheme.

"fp32", "fp16" and "bf16" mean the model's own unquantized precision (FLOPs, not BOPs); every other
name is an emulator format (any preset, eXmY string or block format).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from emulator import BinaryFormat, BlockFormat, FloatFormat, IntFormat, ResidualBinaryFormat, get_format
from hw_models.workload import FULL_PRECISION, OperandFormat

@dataclass(frozen=True)
class QuantFormat:
    """name; bits: bits of one stored element; family: full, int, float, binary or block;
    block_size and block_scale_bits (block formats): elements per scale and bits of that scale;
    tensor_scale_bits: one extra per-tensor scale (NVFP4's fp32); operand: the device-side description;
    planes: scaled +-1 planes a weight is the sum of (residual binary formats: one scale per plane and channel,
    one GEMM pass per plane), 1 for every other format."""

    name: str
    bits: int
    family: str
    operand: OperandFormat
    block_size: int = 0
    block_scale_bits: int = 0
    tensor_scale_bits: int = 0
    planes: int = 1

    @property
    def full_precision(self) -> bool:
        return self.family == "full"


def _float_operand(name: str, fmt: FloatFormat, block_size: int = 0) -> OperandFormat:
    smallest = fmt.emin - fmt.mbits if fmt.subnormals and fmt.has_zero else fmt.emin
    return OperandFormat(name, "float", fmt.bits, fmt.signed, fmt.mbits + 1, fmt.emax, smallest, block_size)


def _element_operand(name: str, fmt, block_size: int = 0) -> OperandFormat:
    if isinstance(fmt, IntFormat):
        return OperandFormat(name, "int", fmt.bits, fmt.signed, block_size=block_size)
    return _float_operand(name, fmt, block_size)


@lru_cache(maxsize=None)
def quant_format(name: str) -> QuantFormat:
    """Describe a scheme format name; raises ValueError (from the emulator) for an unknown name."""
    if not isinstance(name, str):
        raise ValueError(f"a format must be a name such as int4, e4m3fn, mxfp4 or fp32, got {name!r}")
    key = name.lower()
    if key in FULL_PRECISION:
        operand = FULL_PRECISION[key]
        return QuantFormat(key, operand.bits, "full", operand)
    fmt = get_format(key)
    if isinstance(fmt, BinaryFormat):
        return QuantFormat(fmt.name, 1, "binary", OperandFormat(fmt.name, "binary", 1))
    if isinstance(fmt, ResidualBinaryFormat):
        return QuantFormat(fmt.name, fmt.bases, "binary", OperandFormat(fmt.name, "binary", 1, planes=fmt.bases),
                           planes=fmt.bases)
    if isinstance(fmt, BlockFormat):
        return QuantFormat(
            fmt.name, fmt.element.bits, "block", _element_operand(fmt.name, fmt.element, fmt.block_size),
            block_size=fmt.block_size, block_scale_bits=fmt.scale.bits,
            tensor_scale_bits=32 if fmt.tensor_scale else 0,
        )
    if isinstance(fmt, IntFormat):
        return QuantFormat(fmt.name, fmt.bits, "int", _element_operand(fmt.name, fmt))
    return QuantFormat(fmt.name, fmt.bits, "float", _float_operand(fmt.name, fmt))
