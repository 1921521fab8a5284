"""The emulator's scaled quantization in torch, code for code: q = fmt(x / scale) (+ zero point).

Same definition as emulator.quantize with scale_op="divide" and round-to-nearest-even: the quotient is
formed in float64 (correctly rounded in both), integers round half to even then saturate, minifloats
round to the nearest representable value with ties to the even code, and overflow follows the format's
policy. Minifloats are rounded through a table of the format's magnitudes (bucketize on the float64
midpoints), so this runs on any torch device; the tests check it against the emulator's Numba kernels
bit for bit. Formats the table does not cover (no zero, unsigned, flushed subnormals, no mantissa bits)
raise ValueError.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np
import torch

from emulator import FloatFormat, IntFormat, get_format
from emulator.codec import decode_table

from ..errors import SimdqError


def broadcast_param(param, shape, axis=None, group_size=None, dtype=torch.float64, device=None) -> torch.Tensor:
    """A scale or zero point shaped to broadcast against x: scalar, per channel (axis), per group."""
    value = torch.as_tensor(param, dtype=dtype, device=device)
    if axis is None:
        if value.numel() != 1:
            raise SimdqError(f"{value.numel()} values given without an axis: pass axis= for per-channel")
        return value.reshape(())
    axis %= len(shape)
    view = [1] * len(shape)
    if group_size is None:
        view[axis] = shape[axis]
        return value.reshape(view)
    if shape[axis] % group_size:
        raise SimdqError(f"group size {group_size} does not divide {shape[axis]} (axis {axis})")
    groups = shape[axis] // group_size
    value = value.reshape(*value.shape[:axis], groups, *value.shape[axis + 1:]) if value.dim() == len(shape) \
        else value.reshape([groups if i == axis else 1 for i in range(len(shape))])
    return value.repeat_interleave(group_size, dim=axis)


@lru_cache(maxsize=32)
def _value_table(fmt) -> np.ndarray:
    with np.errstate(invalid="ignore"):  # signalling-NaN codes widen to quiet NaN
        return decode_table(fmt).astype(np.float64)


@lru_cache(maxsize=32)
def _magnitude_table(fmt: FloatFormat):
    """(sorted magnitudes, float64 midpoints between neighbours) of a format's non-negative finite codes."""
    if not (fmt.signed and fmt.has_zero and fmt.subnormals and fmt.mbits >= 1):
        raise SimdqError(f"{fmt.name}: the torch quantizer covers signed minifloats with zero, subnormals and at "
                         "least one mantissa bit")
    values = _value_table(fmt)[: fmt.max_code_magnitude + 1]
    return values, (values[:-1] + values[1:]) / 2


def _round_minifloat(v: torch.Tensor, fmt: FloatFormat) -> torch.Tensor:
    """Codes (int64) of the float64 values v in fmt, round-to-nearest-even."""
    magnitudes, midpoints = _magnitude_table(fmt)
    device = v.device
    mids = torch.as_tensor(midpoints, device=device)
    a = v.abs().contiguous()
    code = torch.bucketize(a, mids)  # a == midpoint -> the lower neighbour
    lower_tie = (code < len(midpoints)) & (a == mids[code.clamp(max=len(midpoints) - 1)]) & (code % 2 == 1)
    code = code + lower_tie.long()  # ties go to the even code
    top = fmt.max_code_magnitude
    ulp = magnitudes[-1] - magnitudes[-2]
    threshold = magnitudes[-1] + ulp / 2
    over = (a > threshold) | ((a == threshold) & bool(top % 2))  # the code past the top is odd-even like any
    negative = torch.signbit(v)
    sign = torch.where(negative, fmt.sign_mask, 0)
    signed_nan = fmt.special in ("ieee", "fn")
    nan = fmt.nan_code | sign if signed_nan else torch.full_like(code, max(fmt.nan_code, 0))
    overflow = {"saturate": top | sign, "inf": fmt.inf_code | sign}.get(fmt.overflow, nan)
    zero = sign if fmt.has_negative_zero else torch.zeros_like(code)
    code = torch.where(code == 0, zero, code | sign)
    return torch.where(over, overflow, code)


def quantize(x: torch.Tensor, fmt, scale, zero_point=0, *, axis=None, group_size=None) -> torch.Tensor:
    """Codes (int64, the format's unsigned bit patterns) of x / scale (+ zero point), as emulator.quantize."""
    fmt = get_format(fmt)
    if torch.isnan(x).any():
        raise SimdqError("x contains NaN: quantize has no NaN code to give it")
    s = broadcast_param(scale, x.shape, axis, group_size, device=x.device)
    if not (torch.isfinite(s).all() and (s > 0).all()):
        raise SimdqError("scale must be finite and > 0 everywhere")
    v = x.double() / s
    if isinstance(fmt, IntFormat):
        z = broadcast_param(zero_point, x.shape, axis if torch.as_tensor(zero_point).numel() > 1 else None,
                            group_size, torch.int64, x.device)
        q = torch.round(v).clamp(min=fmt.qmin - z, max=fmt.qmax - z).long() + z
        return q & ((1 << fmt.bits) - 1)
    if isinstance(fmt, FloatFormat):
        if torch.as_tensor(zero_point).ne(0).any():
            raise SimdqError(f"{fmt.name} is not an integer format: zero_point must be 0")
        return _round_minifloat(v, fmt)
    raise SimdqError(f"{fmt.name}: the torch quantizer takes integer and minifloat formats")


def dequantize(codes: torch.Tensor, fmt, scale, zero_point=0, *, axis=None, group_size=None) -> torch.Tensor:
    """float32 of (value(code) - zero point) x scale, computed in float64 and rounded once (as the emulator)."""
    fmt = get_format(fmt)
    table = torch.as_tensor(_value_table(fmt), device=codes.device)
    values = table[codes.long()]
    s = broadcast_param(scale, codes.shape, axis, group_size, device=codes.device)
    z = broadcast_param(zero_point, codes.shape, axis if torch.as_tensor(zero_point).numel() > 1 else None,
                        group_size, torch.float64, codes.device)
    return ((values - z) * s).float()


def fake_quantize(x: torch.Tensor, fmt, scale, zero_point=0, **options) -> torch.Tensor:
    return dequantize(quantize(x, fmt, scale, zero_point, **options), fmt, scale, zero_point, **options)


def saturating(fmt_name: str):
    """The format for scaled quantization: minifloats saturate at their largest finite value instead of
    overflowing to inf or NaN (what quantization libraries do once a tensor is scaled into range; a value
    past the calibrated range must not poison the next layer). The name stays the scheme's."""
    fmt = get_format(fmt_name)
    if isinstance(fmt, FloatFormat) and fmt.overflow != "saturate":
        return dataclasses.replace(fmt, overflow="saturate")
    return fmt


def pad_to_blocks(values: np.ndarray, block_size: int, axis: int) -> np.ndarray:
    """Zero-pad `axis` to a whole number of blocks."""
    missing = -values.shape[axis] % block_size
    if not missing:
        return values
    widths = [(0, 0)] * values.ndim
    widths[axis] = (0, missing)
    return np.pad(values, widths)
