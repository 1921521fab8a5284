"""Numba scalar cores shared by the array kernels: bit access and the rounding of one value.

The cores are written without data-dependent branches (every `x if c else y` is a select), so the
loops that inline them vectorize. The rounding mode is a loop-invariant argument; stochastic rounding
is a separate compile-time flag because it needs the hash.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from ..rounding import RNA, RNE, RTN, RTP, RTZ, random_bits

OVERFLOW_SATURATE, OVERFLOW_NAN, OVERFLOW_INF = 0, 1, 2
INVALID = -1  # a NaN into a format that has no NaN, under on_nan="raise"
_F32_QNAN = 0x7FC00000


@intrinsic
def float64_bits(typingctx, value):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@intrinsic
def bits_float64(typingctx, bits):
    """The float64 whose IEEE bits are the int64 `bits` (a bitcast)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@intrinsic
def float32_bits(typingctx, value):
    def codegen(context, builder, signature, args):
        return builder.zext(builder.bitcast(args[0], ir.IntType(32)), ir.IntType(64))

    return types.int64(types.float32), codegen


@intrinsic
def float32_to_uint32(typingctx, value):
    """The bits of a float32 as uint32, without widening (keeps 32-bit vector lanes)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.uint32(types.float32), codegen


@intrinsic
def uint32_to_float32(typingctx, value):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.uint32), codegen


@njit(cache=True, inline="always")
def rounded_shift(sig, shift, negative, code_lsb_base, mode, stochastic, key, index, sr_bits):
    """sig * 2^-shift rounded to an integer (shift > 0, sig < 2^60).

    Ties under rne go to the even *code*: code_lsb_base is what the code adds to the truncated
    integer's lowest bit (non-zero only for formats without mantissa bits, whose codes are exponents).
    Stochastic: round up iff r + floor(dropped * 2^sr_bits) >= 2^sr_bits, r = sr_bits random bits.
    """
    safe_shift = min(shift, 62)  # sig < 2^60, so every larger shift truncates to 0 alike
    truncated = sig >> safe_shift
    ones = (np.int64(1) << safe_shift) - 1
    if stochastic:
        low = sig & ones
        drop = shift - sr_bits
        scaled = (low << (-drop)) if drop <= 0 else (low >> min(drop, 62))
        r = random_bits(key, index, sr_bits)
        return truncated + (1 if r + scaled >= (np.int64(1) << sr_bits) else 0)
    half = np.int64(1) << (safe_shift - 1)
    directed_up = (mode == RTP and not negative) or (mode == RTN and negative)
    increment = (
        half - 1 + ((truncated + code_lsb_base) & 1) if mode == RNE
        else (half if mode == RNA else (ones if directed_up else 0))
    )
    return (sig + increment) >> safe_shift


@njit(cache=True, inline="always")
def encode_minifloat(bits, in_mbits, in_bias, mbits, emin, no_zero, max_mag, sign_mask,
                     unsigned, flush_subnormals, nan_code, nan_signed, inf_code, overflow, nan_to_zero,
                     negative_zero, mode, stochastic, key, index, sr_bits):
    """Code of the float whose IEEE bits are `bits` (float32: 23, 127; float64: 52, 1023).

    Needs emin >= 1 - in_bias (the input's subnormals then share the input's smallest exponent).
    Returns INVALID for a NaN into a format without NaN under on_nan="raise".
    """
    sign_shift = in_mbits + (8 if in_mbits == 23 else 11)
    negative = ((bits >> sign_shift) & 1) == 1
    magnitude = bits & ((np.int64(1) << sign_shift) - 1)
    inf_bits = ((np.int64(1) << (sign_shift - in_mbits)) - 1) << in_mbits
    exp_field = magnitude >> in_mbits
    is_normal = exp_field != 0
    sig = (magnitude & ((np.int64(1) << in_mbits) - 1)) | (np.int64(1) << in_mbits) if is_normal else magnitude
    e = exp_field - in_bias if is_normal else 1 - in_bias  # value = sig * 2^(e - in_mbits)
    exp_offset = max(e - emin, 0)
    # Without subnormals, values below the smallest normal lie between 0 and it: quantum 2^emin.
    tiny = flush_subnormals and e < emin
    shift = in_mbits - (0 if tiny else mbits) + max(emin - e, 0)
    code_lsb_base = (exp_offset - no_zero) & 1 if (mbits == 0 and not tiny) else 0
    q = rounded_shift(sig, shift, negative, code_lsb_base, mode, stochastic, key, index, sr_bits)
    mag = q << mbits if tiny else max((exp_offset << mbits) + q - (no_zero << mbits), 0)

    sign = sign_mask if negative else 0
    nan_out = nan_code | sign if nan_signed else nan_code
    overflow_out = max_mag | sign if overflow == OVERFLOW_SATURATE else (
        inf_code | sign if overflow == OVERFLOW_INF else nan_out)
    toward_zero = mode == RTZ or (mode == RTP and negative) or (mode == RTN and not negative)
    finite_overflow_out = max_mag | sign if (toward_zero and not stochastic) else overflow_out
    zero_out = (nan_code if (no_zero or negative) else 0) if unsigned else (sign if negative_zero else 0)

    result = mag | sign
    result = finite_overflow_out if mag > max_mag else result
    result = zero_out if (mag == 0 and not no_zero) else result
    result = nan_code if (unsigned and negative) else result
    result = zero_out if magnitude == 0 else result
    result = (nan_code if (unsigned and negative) else overflow_out) if magnitude == inf_bits else result
    nan_result = nan_out if nan_code >= 0 else ((0 if negative else sign_mask) if nan_to_zero else INVALID)
    return nan_result if magnitude > inf_bits else result


@njit(cache=True, inline="always")
def round_float64(value, mode, stochastic, key, index, sr_bits):
    """value rounded to an integer-valued float64 with `mode` (exact: no arithmetic rounds)."""
    if stochastic:
        bits = float64_bits(value)
        magnitude = bits & 0x7FFFFFFFFFFFFFFF
        exp_field = magnitude >> 52
        sig = (magnitude & 0xFFFFFFFFFFFFF) | (np.int64(1) << 52) if exp_field != 0 else magnitude
        shift = max(1075 - max(exp_field, 1), 1)
        q = rounded_shift(sig, shift, value < 0, 0, mode, True, key, index, sr_bits)
        fractional = exp_field < 1075 and value == value
        return (-np.float64(q) if value < 0 else np.float64(q)) if fractional else value
    if mode == RNE:
        return np.rint(value)
    if mode == RTZ:
        return np.trunc(value)
    if mode == RTP:
        return np.ceil(value)
    if mode == RTN:
        return np.floor(value)
    whole = np.trunc(value)  # RNA: value - trunc(value) is exact
    away = abs(value - whole) >= 0.5
    return whole + (np.sign(value) if away else 0.0)


@njit(cache=True)
def decode_minifloat_bits(code, ebits, mbits, bias, special, signed, has_zero, subnormals):
    """float32 bit pattern of a minifloat code.

    NaNs of formats narrower than 16 bits become the quiet NaN with the code's sign (ml_dtypes'
    float8 rule); 16-bit formats (bf16, fp16) keep the payload as widening casts do.

    special: 0 ieee, 1 fn, 2 fnuz, 3 finite.
    """
    mag_bits = ebits + mbits
    sign_mask = np.int64(1) << mag_bits if signed else np.int64(0)
    negative = (code & sign_mask) != 0
    mag = code & ((np.int64(1) << mag_bits) - 1)
    sign32 = np.int64(0x80000000) if negative else np.int64(0)
    exp_field = mag >> mbits
    mantissa = mag & ((np.int64(1) << mbits) - 1)
    if special == 2 and negative and mag == 0:
        return _F32_QNAN | sign32
    if special == 0 and exp_field == (np.int64(1) << ebits) - 1:
        if mantissa != 0 and mag_bits + 1 < 16:
            return _F32_QNAN | sign32
        return 0x7F800000 | (mantissa << (23 - mbits)) | sign32  # 16-bit formats widen their payload
    if special == 1 and mag == (np.int64(1) << mag_bits) - 1:
        return _F32_QNAN | sign32
    if has_zero and exp_field == 0:
        value = np.ldexp(np.float64(mantissa), 1 - bias - mbits) if subnormals else 0.0
    else:
        value = np.ldexp(np.float64((np.int64(1) << mbits) + mantissa), exp_field - bias - mbits)
    return float32_bits(np.float32(-value if negative else value))
