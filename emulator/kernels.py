"""Parallel Numba array kernels. Each element's result depends only on its value and flat index,
so results are identical for any number of threads."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .scalar import encode_minifloat, round_float64


@njit(parallel=True, cache=True)
def encode_minifloat_array(bits, in_mbits, in_bias, out, mbits, emin, no_zero, max_mag, sign_mask, unsigned,
                           flush_subnormals, nan_code, nan_signed, inf_code, overflow, nan_to_zero,
                           negative_zero, mode, key, sr_bits):
    """bits: the uint32 (float32) or uint64 (float64) view of the input, which the caller has checked
    for NaNs where the format cannot take them."""
    if mode == 5:
        for i in prange(bits.size):
            out[i] = encode_minifloat(np.int64(bits[i]), in_mbits, in_bias, mbits, emin, no_zero, max_mag,
                                      sign_mask, unsigned, flush_subnormals, nan_code, nan_signed, inf_code,
                                      overflow, nan_to_zero, negative_zero, mode, True, key, i, sr_bits)
    else:
        for i in prange(bits.size):
            out[i] = encode_minifloat(np.int64(bits[i]), in_mbits, in_bias, mbits, emin, no_zero, max_mag,
                                      sign_mask, unsigned, flush_subnormals, nan_code, nan_signed, inf_code,
                                      overflow, nan_to_zero, negative_zero, mode, False, key, i, sr_bits)


@njit(parallel=True, cache=True)
def encode_int_array(x, out, qmin, qmax, code_mask, mode, key, sr_bits):
    """Round and saturate x (NaN-free) into integer codes."""
    low, high = np.float64(qmin), np.float64(qmax)
    if mode == 5:
        for i in prange(x.size):
            v = min(max(round_float64(np.float64(x[i]), mode, True, key, i, sr_bits), low), high)
            out[i] = np.int64(v) & code_mask
    else:
        for i in prange(x.size):
            v = min(max(round_float64(np.float64(x[i]), mode, False, key, i, sr_bits), low), high)
            out[i] = np.int64(v) & code_mask


@njit(parallel=True, cache=True)
def encode_binary_array(x, out, zero_is_minus):
    for i in prange(x.size):
        v = x[i]
        out[i] = 1 if (v < 0 or (zero_is_minus and v == 0)) else 0


@njit(parallel=True, cache=True)
def lookup(codes, table, out):
    for i in prange(codes.size):
        out[i] = table[codes[i]]


@njit(parallel=True, cache=True)
def decode_int_array(codes, bits, signed, out):
    wrap = np.int64(1) << bits
    half = np.int64(1) << (bits - 1)
    for i in prange(codes.size):
        v = np.int64(codes[i])
        out[i] = v - wrap if (signed and v >= half) else v
