"""Plain twin of emulator/requant.py: one accumulator at a time, in Python integers and numpy float32 scalars."""

from __future__ import annotations

import math

import numpy as np

F32 = np.float32


def _rne(x: float) -> int:
    floor = math.floor(x)
    rest = x - floor
    return floor + (1 if rest > 0.5 or (rest == 0.5 and floor % 2) else 0)


def _high_mul(a: int, q: int) -> int:
    if a == q == -(1 << 31):
        return (1 << 31) - 1
    total = a * q + ((1 << 30) if a * q >= 0 else 1 - (1 << 30))
    quotient = abs(total) >> 31  # C++ integer division truncates toward zero
    return quotient if total >= 0 else -quotient


def _divide_by_pot(x: int, exponent: int) -> int:
    mask = (1 << exponent) - 1
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if (x & mask) > threshold else 0)


def reference_requantize(acc: int, sx: float, sw: float, sy: float, zp: int, qmin: int, qmax: int,
                         convention: str, bias: int = 0) -> int:
    a = (int(acc) + int(bias) + (1 << 31)) % (1 << 32) - (1 << 31)
    sx, sw, sy = F32(sx), F32(sw), F32(sy)
    if convention in ("onnxruntime", "qnnpack", "onnx_reference"):
        m = F32(F32(sw * sx) * F32(F32(1) / sy)) if convention == "qnnpack" else F32(F32(sx * sw) / sy)
        if convention == "onnx_reference":
            y = _rne(float(a) * float(m) + zp)
        else:
            scaled = float(F32(F32(a) * m))
            y = _rne(min(max(scaled, qmin - zp), qmax - zp)) + zp
        return min(max(y, qmin), qmax)
    if convention == "tflite_reference":
        product = a * (float(sx) * float(sw) / float(sy))
        y = int(math.copysign(math.floor(abs(product) + 0.5), product))
        return min(max(y + zp, qmin), qmax)
    real = float(F32(sx * sw)) / float(sy)
    fraction, e = math.frexp(real)
    q = math.floor(fraction * 2**31 + 0.5)
    if q == 1 << 31:
        q, e = q // 2, e + 1
    if e < -31:
        q, e = 0, 0
    if convention == "gemmlowp":
        shifted = (a * (1 << max(e, 0)) + (1 << 31)) % (1 << 32) - (1 << 31)
        y = _divide_by_pot(_high_mul(shifted, q), max(-e, 0))
    else:
        y = min(max((a * q + (1 << (30 - e))) >> (31 - e), -(1 << 31)), (1 << 31) - 1)
    return min(max(y + zp, qmin), qmax)
