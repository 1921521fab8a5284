"""Numba kernels for emulator/residual.py: a correctly rounded sum per row (math.fsum's algorithm), so that each
channel's mean magnitude is the same on any machine and thread count. Its plain twin is math.fsum itself
(emulator/reference/residual.py)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# non-overlapping float64 partials of finite values number at most about (2098 exponent bits / 53) + 1
MAX_PARTIALS = 64


@njit(cache=True)
def fsum(values) -> float:
    """Shewchuk's exact summation into non-overlapping partials, then rounded once, as CPython's math.fsum
    (finite inputs whose sum does not overflow: the only ones residual binarization passes)."""
    partials = np.empty(MAX_PARTIALS, dtype=np.float64)
    count = 0
    for value in values:
        x = value
        kept = 0
        for j in range(count):
            y = partials[j]
            if abs(x) < abs(y):
                x, y = y, x
            hi = x + y
            lo = y - (hi - x)
            if lo != 0.0:
                partials[kept] = lo
                kept += 1
            x = hi
        count = kept
        if x != 0.0:  # as CPython: a zero joins no partial (so an all-zero sum is +0.0)
            partials[count] = x
            count += 1
    if count == 0:
        return 0.0
    n = count - 1
    hi = partials[n]
    lo = 0.0
    while n > 0:
        n -= 1
        x = hi
        y = partials[n]
        hi = x + y
        lo = y - (hi - x)
        if lo != 0.0:
            break
    # a half-way case: the partials below decide which way the rounding goes
    if n > 0 and ((lo < 0.0 and partials[n - 1] < 0.0) or (lo > 0.0 and partials[n - 1] > 0.0)):
        y = lo * 2.0
        x = hi + y
        if y == x - hi:
            hi = x
    return hi


@njit(parallel=True, cache=True)
def row_means(magnitudes, out):
    """out[i] = fsum(magnitudes[i]) / len(magnitudes[i]): one correctly rounded sum, then one division."""
    rows, n = magnitudes.shape
    for i in prange(rows):
        out[i] = fsum(magnitudes[i]) / n
