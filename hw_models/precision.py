"""Compute precisions of tensor/matrix units and which operand formats each can hold exactly.

A layer runs at a compute precision only if both operands are exactly representable in it: W4A4 integer
runs as int4 where the device has int4 and as int8 otherwise; int4 weights also fit fp8 (3 significant
bits); fp32 activations fit only fp32. Scales (per tensor or per channel) are applied in the epilogue and
do not constrain the choice; per-block scales are noted by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass

from .workload import OperandFormat


@dataclass(frozen=True)
class ComputeType:
    name: str
    family: str
    bits: int
    significand_bits: int = 0
    max_exponent: int = 0
    min_exponent: int = 0


def _float(name, bits, significand_bits, max_exponent, min_exponent):
    return ComputeType(name, "float", bits, significand_bits, max_exponent, min_exponent)


# fp8 names the pair of OCP formats that Hopper/Ada tensor cores take in any combination.
_FP8_VARIANTS = (_float("e4m3", 8, 4, 8, -9), _float("e5m2", 8, 3, 15, -16))

COMPUTE_TYPES = {
    t.name: t
    for t in (
        _float("fp32", 32, 24, 127, -149),
        _float("tf32", 19, 11, 127, -136),
        _float("fp16", 16, 11, 15, -24),
        _float("bf16", 16, 8, 127, -133),
        ComputeType("fp8", "float", 8),
        ComputeType("int16", "int", 16),
        ComputeType("int8", "int", 8),
        ComputeType("int4", "int", 4),
        ComputeType("b1", "binary", 1),
    )
}


def _float_fits(operand: OperandFormat, target: ComputeType) -> bool:
    if operand.family == "binary":
        return True
    if operand.family == "int":
        # the largest magnitude of a signed b-bit integer, 2^(b-1) - 1, needs b-1 significant bits
        needed = operand.bits - 1 if operand.signed else operand.bits
        return target.significand_bits >= needed and target.max_exponent >= needed
    return (
        target.significand_bits >= operand.significand_bits
        and target.max_exponent >= operand.max_exponent
        and target.min_exponent <= operand.min_exponent
    )


def fits(operand: OperandFormat, compute: str) -> bool:
    """True if every value of `operand` is exactly a value of compute precision `compute`."""
    target = COMPUTE_TYPES[compute]
    if target.family == "binary":
        return operand.family == "binary"
    if target.family == "int":
        # integer MMA takes signed and unsigned operands of its width (IMMA s8/u8, s4/u4)
        if operand.family == "binary":
            return target.bits >= 2
        return operand.family == "int" and operand.bits <= target.bits
    if target.name == "fp8":
        return any(_float_fits(operand, variant) for variant in _FP8_VARIANTS)
    return _float_fits(operand, target)
