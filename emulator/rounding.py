"""Rounding modes and the counter-based random bits of stochastic rounding.

Stochastic rounding draws `sr_bits` random bits r per element from a hash of (seed, flat element
index), so the result depends on neither the number of threads nor the order of work. With the dropped
fraction delta (0 <= delta < 1, in units of the target's last place) the value rounds away from zero
iff r + floor(delta * 2^sr_bits) >= 2^sr_bits: probability floor(delta * 2^sr_bits) / 2^sr_bits, which
is gfloat's RoundMode.StochasticFastest with srnumbits = sr_bits.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .arguments import integer, shown

ROUNDING_MODES = {
    "rne": 0,  # to nearest, ties to even (the default everywhere)
    "rtz": 1,  # toward zero
    "rna": 2,  # to nearest, ties away from zero
    "rtp": 3,  # toward +inf
    "rtn": 4,  # toward -inf
    "stochastic": 5,
}
RNE, RTZ, RNA, RTP, RTN, STOCHASTIC = range(6)
DEFAULT_SR_BITS = 32
MAX_SR_BITS = 62

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def rounding_code(rounding: str, seed, sr_bits: int) -> tuple[int, int]:
    """Validate the rounding arguments; return (mode code, seed key for the hash)."""
    integer(sr_bits, "sr_bits", 1, MAX_SR_BITS)
    if not isinstance(rounding, str) or rounding not in ROUNDING_MODES:
        raise ValueError(f"rounding must be one of {', '.join(ROUNDING_MODES)}, got {shown(rounding)}")
    mode = ROUNDING_MODES[rounding]
    if mode != STOCHASTIC:
        if seed is not None:
            raise ValueError("seed is only used with rounding='stochastic'")
        return mode, 0
    if seed is None or isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError("rounding='stochastic' needs an integer seed (reproducible by design)")
    if not isinstance(sr_bits, (int, np.integer)) or not 1 <= sr_bits <= MAX_SR_BITS:
        raise ValueError(f"sr_bits must be an integer in 1..{MAX_SR_BITS}, got {shown(sr_bits)}")
    key = seed_key(int(seed))
    return mode, key - (1 << 64) if key >= 1 << 63 else key  # as int64, for the kernels


def _mix64_py(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def seed_key(seed: int) -> int:
    """Scramble the user's seed once so that nearby seeds give unrelated streams."""
    return _mix64_py((seed * _GOLDEN + 0x632BE59BD9B4E019) & _MASK64)


def random_bits_reference(key: int, index: int, nbits: int) -> int:
    """Plain-Python reference of the per-element random bits (splitmix64 of key + (index+1)*golden)."""
    return _mix64_py((key + (index + 1) * _GOLDEN) & _MASK64) >> (64 - nbits)


@njit(cache=True, inline="always")
def random_bits(key, index, nbits):
    z = np.uint64(key) + (np.uint64(index) + np.uint64(1)) * np.uint64(_GOLDEN)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return np.int64(z >> np.uint64(64 - nbits))
