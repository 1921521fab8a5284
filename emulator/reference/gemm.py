"""Plain twins of emulator/_kernels/gemm.py: one dot product at a time, in Fractions and Python integers."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from ..accumulators import Accumulator

F32 = np.float32


def floor_log2(x: Fraction) -> int:
    """floor(log2 |x|) of a nonzero rational, exactly."""
    x = abs(x)
    e = x.numerator.bit_length() - x.denominator.bit_length()
    return e if Fraction(2) ** e <= x else e - 1


def round_to_float32(x: Fraction) -> np.float32:
    """x rounded to nearest even float32 (subnormals down to 2^-149, inf past the largest finite)."""
    if x == 0:
        return F32(0.0)
    lsb = max(floor_log2(x) - 23, -149)
    scaled = abs(x) / Fraction(2) ** lsb
    whole = math.floor(scaled)
    rest = scaled - whole
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and whole % 2):
        whole += 1
    value = whole * Fraction(2) ** lsb
    if value >= Fraction(2) ** 128:
        return F32(math.copysign(math.inf, x))
    return F32(float(value) if x > 0 else -float(value))


def truncate(x: Fraction, quantum_exponent: int) -> Fraction:
    """x truncated toward zero to a multiple of 2^quantum_exponent."""
    quantum = Fraction(2) ** quantum_exponent
    return math.trunc(x / quantum) * quantum


def truncate_mantissa(x: Fraction, mbits: int) -> Fraction:
    if x == 0:
        return Fraction(0)
    return truncate(x, max(floor_log2(x) - mbits, -126 - mbits))


def _tensor_core_part(products, exponents, acc: Accumulator) -> np.float32:
    register = F32(0.0)
    partial = Fraction(0)
    for start in range(0, len(products), acc.chunk):
        chunk = products[start:start + acc.chunk]
        candidates = [e for p, e in zip(chunk, exponents[start:start + acc.chunk]) if p != 0]
        if partial != 0:
            candidates.append(floor_log2(partial))
        if candidates:
            keep = max(candidates) - acc.fraction_bits
            total = truncate(partial, keep) + sum(truncate(p, keep) for p in chunk)
            partial = truncate_mantissa(total, acc.accumulator_mbits)
        if acc.promote_every and (start + len(chunk)) % acc.promote_every == 0:
            register = F32(register + F32(float(partial)))
            partial = Fraction(0)
    if acc.promote_every:
        return F32(register + F32(float(partial)))
    return F32(float(partial))


def reference_dot(a, b, acc: Accumulator, a_exponents=None, b_exponents=None, split_bounds=None):
    """One output of matmul: a and b are sequences of exact values (ints, or floats exact as Fractions);
    the exponents (tensor cores) are each operand's exponent with subnormals at emin."""
    if acc.kind in ("exact", "int") and all(isinstance(v, (int, np.integer)) for v in list(a) + list(b)):
        if acc.kind == "exact" or acc.overflow == "wrap":
            total = sum(int(x) * int(y) for x, y in zip(a, b))
            if acc.kind == "exact":
                return total
            half = 1 << (acc.bits - 1)
            return (total + half) % (1 << acc.bits) - half
        total = 0
        for x, y in zip(a, b):
            total = min(max(total + int(x) * int(y), acc.min_value), acc.max_value)
        return total
    products = [Fraction(float(x)) * Fraction(float(y)) for x, y in zip(a, b)]
    if acc.kind == "exact":
        return round_to_float32(sum(products, Fraction(0)))
    if acc.kind == "float32":
        terms = [F32(float(p)) for p in products]
        if acc.order == "sequential":
            total = F32(0.0)
            for t in terms:
                total = F32(total + t)
            return total
        while len(terms) > 1:
            pairs = [F32(terms[i] + terms[i + 1]) for i in range(0, len(terms) - 1, 2)]
            terms = pairs + ([terms[-1]] if len(terms) % 2 else [])
        return terms[0] if terms else F32(0.0)
    exponents = [int(x) + int(y) for x, y in zip(a_exponents, b_exponents)]
    bounds = list(split_bounds) if split_bounds is not None else [0, len(products)]
    total = F32(0.0)
    for s, (k0, k1) in enumerate(zip(bounds, bounds[1:])):
        part = _tensor_core_part(products[k0:k1], exponents[k0:k1], acc)
        total = part if s == 0 else F32(total + part)
    return total


def exponents(values, emin: int) -> list:
    """Each value's exponent as a tensor core aligns it: floor(log2 |x|), subnormals at `emin` (zeros: emin,
    which reference_dot never reads, since zero products take no part in the alignment)."""
    return [max(floor_log2(Fraction(float(v))), emin) if v else emin for v in values]
