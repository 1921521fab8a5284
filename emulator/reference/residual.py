"""Plain twin of emulator/residual.py: one channel at a time, one element at a time, in Python floats."""

from __future__ import annotations

import math

import numpy as np


def reference_residual_binarize(channel: list, bases: int, zero: str = "+1") -> tuple:
    """(codes, scales) of one channel's weights (a list of Python floats)."""
    residual = [float(v) for v in channel]
    codes = [0] * len(residual)
    scales = []
    for j in range(bases):
        alpha = math.fsum(abs(r) for r in residual) / len(residual)
        scales.append(alpha)
        for i, r in enumerate(residual):
            negative = r < 0 if zero == "+1" else r <= 0
            if negative:
                codes[i] |= 1 << j
            residual[i] = r - (-alpha if negative else alpha)
    return codes, scales


def reference_residual_value(code: int, scales: list) -> float:
    """One weight: the planes' alpha * sign added in float64 in plane order, then rounded to float32."""
    total = 0.0
    for j, alpha in enumerate(scales):
        total = total + (-alpha if (code >> j) & 1 else alpha)
    with np.errstate(over="ignore"):
        return float(np.float32(total))
