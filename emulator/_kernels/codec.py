"""Parallel Numba array kernels. Each element's result depends only on its value and flat index,
so results are identical for any number of threads."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .scalar import encode_minifloat, float32_to_uint32, round_float64, uint32_to_float32


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
def encode_minifloat_f32_rne(bits, out, mbits, emin, max_mag, code_sign_shift, zero_sign_mask,
                             overflow_code, overflow_sign_mask, nan_code, nan_sign_mask):
    """Fast path of encode_minifloat_array for float32 input (`bits`, its uint32 view), round to
    nearest even, and a signed format with zero, subnormals and mbits >= 1. Normal results: re-bias the
    exponent and round the mantissa with the carry trick (add half - 1 + the kept lsb); subnormal
    results: add a float32 whose ulp is the format's smallest subnormal, so that the FPU rounds (RNE) at
    the right bit. Signs enter as masks on the code's sign bit s: a zero result is s & zero_sign_mask,
    an overflow overflow_code | (s & overflow_sign_mask), a NaN nan_code ^ (s & nan_sign_mask).

    Every value is uint32 and no shift amount can reach 32 (numba would otherwise widen to 64-bit
    lanes); this keeps the loop in 16-wide AVX-512 lanes, about 2x faster.
    """
    zero, one, all_ones = np.uint32(0), np.uint32(1), np.uint32(0xFFFFFFFF)
    shift = np.uint32(23 - mbits)
    kept_lsb = np.uint32(1 << (23 - mbits))
    round_half = np.uint32((1 << (22 - mbits)) - 1)
    rebias = np.uint32((emin + 126) << 23)
    min_normal_bits = np.uint32((emin + 127) << 23)
    magic = np.float32(2.0 ** (emin - mbits + 23))
    magic_bits = float32_to_uint32(magic)
    limit, inf_bits, sign_bit = np.uint32(max_mag), np.uint32(0x7F800000), np.uint32(0x80000000)
    code_sign_bit = np.uint32(0x80000000 >> code_sign_shift)
    zero_mask = np.uint32(zero_sign_mask)
    overflow, overflow_mask = np.uint32(overflow_code), np.uint32(overflow_sign_mask)
    nan, nan_mask = np.uint32(nan_code), np.uint32(nan_sign_mask)
    for i in prange(bits.size):
        b = bits[i]
        sign = np.uint32(b & sign_bit)
        a = np.uint32(b ^ sign)
        odd = one if (a & kept_lsb) != zero else zero
        # masking the shift here (not outside the loop) is what lets LLVM keep it in 32 bits
        normal = np.uint32(np.uint32(np.uint32(np.uint32(a - rebias) + round_half) + odd) >> (shift & np.uint32(31)))
        subnormal = np.uint32(float32_to_uint32(uint32_to_float32(a) + magic) - magic_bits)
        mag = subnormal if a < min_normal_bits else normal
        code_sign = code_sign_bit if sign != zero else zero
        code = np.uint32(mag | np.uint32(code_sign & (zero_mask if mag == zero else all_ones)))
        code = np.uint32(overflow | np.uint32(code_sign & overflow_mask)) if (mag > limit or a == inf_bits) else code
        out[i] = np.uint32(nan ^ np.uint32(code_sign & nan_mask)) if a > inf_bits else code


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


# Serial on purpose, like the integer GEMM's conversions: it runs between BLAS calls (see gemm.py).
@njit(cache=True)
def quantize_int_divide_rne(x, scale, zero_point, qmin, qmax, code_mask, out):
    """out[i] = (clamp(rint(f64(x[i]) / scale), qmin - z, qmax - z) + z) & code_mask for a per-tensor scale and
    zero point: quantize's common case in one pass. Returns False if x holds a NaN (out is then unfinished)."""
    lo, hi = np.float64(qmin - zero_point), np.float64(qmax - zero_point)
    for i in range(x.size):
        v = np.float64(x[i]) / scale
        if v != v:
            return False
        r = min(max(np.rint(v), lo), hi)
        out[i] = (np.int64(r) + zero_point) & code_mask
    return True
