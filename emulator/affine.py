"""Scaled quantization: q = clamp(round(x / s) + z, qmin, qmax) for integers, q = fmt(x / s) for floats.

scale_op="divide" (default): x / s is the float64 quotient (correctly rounded; for float32 x and s it
rounds to the same integer as the exact quotient for every format of up to 24 bits).
scale_op="reciprocal": x and s as float32, inv = 1/s in float32, round(x * inv in float32) + z: torch's
fake_quantize_per_tensor_affine / fake_quantize_per_channel_affine, and torch 2.14's quantize_* to
qint8/quint8, bit for bit.
scale_op="reciprocal_fma": round(float32(fma(x, inv, z))), one rounding of x * inv + z to float32:
torch 2.13's quantize_per_tensor to qint8/quint8 (FBGEMM's AVX2 kernel adds the zero point with an FMA
before rounding, so a product of exactly 61.5 with z = 5 gives 66, where "reciprocal" gives 67).
scale_op="reciprocal_add": round(float32(float32(x * inv) + float32(z))), two float32 roundings with
the zero point itself rounded to float32: torch 2.13's quantize_per_tensor / quantize_per_channel to
qint32 and its quantize_per_channel to qint8/quint8.
scale_op="reciprocal_round_add": float32(round(float32(x * inv)) + float32(z)), rounding first, then the
zero point added in float32 (so 1e9 + 5 stays 1e9): torch 2.14's quantize_* to qint32. Which torch
release implements which of these is a table in simdq.emulate.parity (`simdq parity refs` detects it).
NaN inputs raise ValueError (torch's NaN results differ between its kernels). Dequantization is
(q - z) * s computed in float64 and rounded once to float32.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .arguments import axis as check_axis, numeric_array, shown
from .codec import check_codes, code_dtype, decode, encode, float_input
from .formats import FloatFormat, IntFormat, get_format
from .rounding import DEFAULT_SR_BITS, rounding_code
from ._kernels import codec as codec_kernels
from ._kernels.scalar import round_float64

SCALE_OPS = ("divide", "reciprocal", "reciprocal_fma", "reciprocal_add", "reciprocal_round_add")
_FLOAT32_SCALE_OPS = SCALE_OPS[1:]


def _per_axis(param, name, x_shape, axis, group_size, dtype):
    """param reshaped to broadcast against x: scalar, per-channel (axis) or per-group (axis, group)."""
    try:
        arr = np.asarray(param, dtype=dtype)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or an array of numbers, got {shown(param)}") from None
    if axis is None:
        if group_size is not None:
            raise ValueError("group_size needs an axis: the groups run along axis=")
        if arr.size != 1:
            raise ValueError(f"{name} has {arr.size} values but no axis was given: pass axis= for per-channel")
        return arr.reshape(())
    ndim = len(x_shape)
    axis = check_axis(axis, "axis", ndim) % ndim
    channels = x_shape[axis]
    if group_size is None:
        if arr.ndim != 1 or arr.size != channels:
            raise ValueError(f"per-channel {name} must have shape ({channels},), got {arr.shape}")
        shape = [1] * ndim
        shape[axis] = channels
        return arr.reshape(shape)
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)) or group_size < 1 or \
            channels % group_size:
        raise ValueError(f"group_size must be a positive divisor of {channels} (the size of axis {axis}), got {shown(group_size)}")
    groups = channels // group_size
    if arr.ndim == 1 and arr.size == groups:
        shape = [1] * ndim
        shape[axis] = groups
        arr = arr.reshape(shape)
    if arr.ndim != ndim or arr.shape[axis] != groups or any(
        a not in (1, b) for i, (a, b) in enumerate(zip(arr.shape, x_shape)) if i != axis
    ):
        raise ValueError(f"per-group {name} must have {groups} groups along axis {axis} and broadcast to {x_shape}, got {arr.shape}")
    return np.repeat(arr, group_size, axis=axis)


def _checked_scale(scale, x_shape, axis, group_size):
    s = _per_axis(scale, "scale", x_shape, axis, group_size, np.float64)
    if not (np.all(np.isfinite(s)) and np.all(s > 0)):
        raise ValueError("scale must be finite and > 0 everywhere (got zero, negative, inf or NaN)")
    return s


def _checked_zero_point(zero_point, fmt, x_shape, axis, group_size):
    z = numeric_array(zero_point, "zero_point")
    if z.dtype.kind == "f" and np.all(np.isfinite(z)) and np.all(z == np.round(z)):
        z = z.astype(np.int64)
    if z.dtype.kind not in "iu":
        raise ValueError(f"zero_point must be an integer, got {z.dtype}")
    if isinstance(fmt, IntFormat):
        if np.any(z < fmt.qmin) or np.any(z > fmt.qmax):
            raise ValueError(f"zero_point must lie in {fmt.qmin}..{fmt.qmax} for {fmt.name}")
    elif np.any(z != 0):
        raise ValueError(f"{fmt.name} is not an integer format: zero_point must be 0")
    if z.size == 1 and axis is not None:
        return z.reshape(())
    return _per_axis(z, "zero_point", x_shape, axis, group_size, np.int64)


def _scaled(x, s, scale_op):
    if scale_op == "divide":
        return x.astype(np.float64) / s
    if scale_op in _FLOAT32_SCALE_OPS:
        inv = np.float32(1.0) / s.astype(np.float32)
        return (x.astype(np.float32) * inv).astype(np.float32)
    raise ValueError(f"scale_op must be one of {', '.join(SCALE_OPS)}, got {shown(scale_op)}")


@njit(parallel=True, cache=True)
def _round_add_clamp(v, z, out, qmin, qmax, code_mask, mode, key, sr_bits):
    """out = (clamp(round(v) + z, qmin, qmax)) & code_mask, elementwise (v, z flat, same size)."""
    for i in prange(v.size):
        r = round_float64(np.float64(v[i]), mode, mode == 5, key, i, sr_bits)
        r = min(max(r, np.float64(qmin - z[i])), np.float64(qmax - z[i]))
        out[i] = (np.int64(r) + z[i]) & code_mask


def quantize(x, fmt, scale, zero_point=0, *, axis=None, group_size=None, rounding="rne", seed=None,
             sr_bits=DEFAULT_SR_BITS, scale_op="divide") -> np.ndarray:
    """Codes of x / scale (+ zero_point) in fmt; scale per tensor, per channel (axis) or per group."""
    fmt = get_format(fmt)
    if not isinstance(fmt, (IntFormat, FloatFormat)):
        raise ValueError(f"quantize takes integer or minifloat formats; {fmt.name} is {fmt.kind} (see block_encode)")
    x = float_input(x)
    mode, key = rounding_code(rounding, seed, sr_bits)
    s = _checked_scale(scale, x.shape, axis, group_size)
    z = _checked_zero_point(zero_point, fmt, x.shape, axis, group_size)
    if isinstance(fmt, IntFormat) and scale_op == "divide" and rounding == "rne" and s.ndim == 0 and z.ndim == 0:
        out = np.empty(x.size, dtype=code_dtype(fmt.bits))
        if not codec_kernels.quantize_int_divide_rne(np.ascontiguousarray(x).reshape(-1), float(s), int(z), fmt.qmin,
                                                     fmt.qmax, (1 << fmt.bits) - 1, out):
            raise ValueError("x contains NaN: quantize has no NaN code to give it")
        return out.reshape(x.shape)
    if np.isnan(x).any():
        raise ValueError("x contains NaN: quantize has no NaN code to give it")
    v = _scaled(x, s, scale_op)
    if isinstance(fmt, FloatFormat):
        return encode(v, fmt, rounding=rounding, seed=seed, sr_bits=sr_bits)
    if scale_op == "reciprocal_fma":
        inv = (np.float32(1.0) / s.astype(np.float32)).astype(np.float64)
        v = (x.astype(np.float32).astype(np.float64) * inv + z).astype(np.float32)  # product exact in float64
        z = np.zeros((), dtype=np.int64)
    elif scale_op == "reciprocal_add":
        v = (v + z.astype(np.float32)).astype(np.float32)  # float32 + float32, rounded once to float32
        z = np.zeros((), dtype=np.int64)
    elif scale_op == "reciprocal_round_add":
        flat = np.ascontiguousarray(v).reshape(-1)
        rounded = np.empty(flat.size, dtype=np.int64)  # round only: the clamp at +-2^53 is past every format
        _round_add_clamp(flat, np.zeros(flat.size, np.int64), rounded, -(2**53), 2**53, -1, mode, key, sr_bits)
        v = (rounded.astype(np.float32).reshape(v.shape) + z.astype(np.float32)).astype(np.float32)
        z = np.zeros((), dtype=np.int64)  # v is now integral: the rounding below leaves it as it is
    flat_v = np.ascontiguousarray(v, dtype=v.dtype).reshape(-1)
    flat_z = np.ascontiguousarray(np.broadcast_to(z, v.shape), dtype=np.int64).reshape(-1)
    out = np.empty(flat_v.size, dtype=code_dtype(fmt.bits))
    _round_add_clamp(flat_v, flat_z, out, fmt.qmin, fmt.qmax, (1 << fmt.bits) - 1, mode, key, sr_bits)
    return out.reshape(v.shape)


def dequantize(codes, fmt, scale, zero_point=0, *, axis=None, group_size=None, scale_op="divide") -> np.ndarray:
    """float32 of (q - zero_point) * scale; scale_op="reciprocal" first rounds the scale to float32."""
    fmt = get_format(fmt)
    values = decode(codes, fmt).astype(np.float64)
    if isinstance(fmt, IntFormat) and fmt.bits > 24:
        raw = check_codes(codes, fmt).astype(np.int64)
        values = np.where(fmt.signed & (raw >= (1 << (fmt.bits - 1))), raw - (1 << fmt.bits), raw).astype(np.float64)
    s = _checked_scale(scale, values.shape, axis, group_size)
    if scale_op in _FLOAT32_SCALE_OPS:
        s = s.astype(np.float32).astype(np.float64)
    elif scale_op != "divide":
        raise ValueError(f"scale_op must be one of {', '.join(SCALE_OPS)}, got {shown(scale_op)}")
    z = _checked_zero_point(zero_point, fmt, values.shape, axis, group_size)
    return ((values - z) * s).astype(np.float32)


def fake_quantize(x, fmt, scale, zero_point=0, **options) -> np.ndarray:
    """dequantize(quantize(x)): x rounded onto the quantization grid, as float32."""
    dequant_keys = {"axis", "group_size", "scale_op"}
    codes = quantize(x, fmt, scale, zero_point, **options)
    return dequantize(codes, fmt, scale, zero_point, **{k: v for k, v in options.items() if k in dequant_keys})
