"""Block-scaled formats: OCP MX (E8M0 scale per 32 elements) and NVFP4 (E4M3 scale per 16).

MX scale rules, on the block's amax (names as in torchao):
  floor  X = 2^(floor(log2 amax) - emax_elem)                     (OCP MX v1.0; clips the top binade)
  ceil   X = 2^(ceil(log2 amax) - emax_elem)
  even   amax rounded to the element's mantissa width (half up) first, then floor
  rceil  X = 2^ceil(log2(amax * (1 / max_elem))), both products in float32 (NVIDIA's cuBLAS recipe)
The exponent is clamped to E8M0's -127..127; a non-finite amax gives the NaN scale 0xFF, and the whole
block decodes to NaN. Elements are x / X rounded (rne by default) and saturated to the element's max.
NVFP4 follows torchao / NVIDIA's kernels in float32: block scale e4m3(clamp(amax / 6 / t, 2^-6, 448)),
elements e2m1(clamp(x * ((1 / t) / scale), -6, 6)), with the optional tensor scale t = amax / (448 * 6).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from .arguments import axis as check_axis, numeric_array, shown, text
from .codec import decode, encode, float_input
from .formats import BlockFormat, FloatFormat, IntFormat, get_format

E8M0_NAN = 0xFF


@dataclass(frozen=True)
class BlockEncoded:
    """Element codes (x's shape), scale codes (block axis divided by the block size), tensor scale."""

    elements: np.ndarray
    scales: np.ndarray
    tensor_scale: float | None = None


def _blocks(x: np.ndarray, block_size: int, axis: int) -> np.ndarray:
    """View of x with `axis` moved last and split into (..., n_blocks, block_size)."""
    if x.ndim == 0:
        raise ValueError("block formats need at least a 1-D array")
    moved = np.moveaxis(x, check_axis(axis, "axis", x.ndim), -1)
    if moved.shape[-1] % block_size:
        raise ValueError(f"the size of axis {axis} ({moved.shape[-1]}) must be a multiple of the block size {block_size}")
    return moved.reshape(*moved.shape[:-1], moved.shape[-1] // block_size, block_size)


def _unblocks(blocks: np.ndarray, axis: int) -> np.ndarray:
    return np.moveaxis(blocks.reshape(*blocks.shape[:-2], -1), -1, axis)


def mx_scale_exponent(amax: np.ndarray, fmt: BlockFormat, rule: str) -> np.ndarray:
    """E8M0 scale codes (biased exponents, 0xFF for NaN) from block amax values (float64)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        mantissa, exponent = np.frexp(amax)  # amax = mantissa * 2^exponent, mantissa in [0.5, 1)
        floor_log2 = exponent.astype(np.int64) - 1
        if rule == "floor":
            unbiased = floor_log2 - fmt.element_emax
        elif rule == "ceil":
            unbiased = floor_log2 + (mantissa != 0.5) - fmt.element_emax
        elif rule == "even":
            mbits = 0 if isinstance(fmt.element, IntFormat) else fmt.element.mbits
            rounds_up = 2 * mantissa + 2.0 ** -(mbits + 1) >= 2.0
            unbiased = floor_log2 + rounds_up - fmt.element_emax
        elif rule == "rceil":
            max_elem = np.float32(fmt.element.max_finite if isinstance(fmt.element, FloatFormat) else 127 / 64)
            descale = amax.astype(np.float32) * (np.float32(1.0) / max_elem)
            d_mantissa, d_exponent = np.frexp(descale.astype(np.float64))
            unbiased = d_exponent.astype(np.int64) - 1 + (d_mantissa != 0.5)
            amax = descale.astype(np.float64)
        else:
            raise ValueError(f"MX scale rule must be one of floor, ceil, even, rceil; got {shown(rule)}")
    codes = np.clip(unbiased, -127, 128) + 127
    codes = np.where(amax == 0, 0, codes)
    return np.where(np.isfinite(amax) & (codes <= 254), codes, E8M0_NAN).astype(np.uint8)


def _element_format(fmt: BlockFormat):
    """Elements saturate (OCP MX); NaN elements only occur in NaN-scale blocks, which decode to NaN."""
    if isinstance(fmt.element, FloatFormat):
        return get_format(fmt.element, overflow="saturate", on_nan="zero")
    return fmt.element


def block_encode(x, fmt, *, axis: int = -1, rounding: str = "rne", seed=None, scale_rule: str | None = None,
                 tensor_scale="amax") -> BlockEncoded:
    """Encode x block by block along `axis`. tensor_scale (NVFP4 only): "amax" computes amax/(448*6),
    a float uses that calibrated scale, None uses no tensor scale."""
    fmt = get_format(fmt)
    if not isinstance(fmt, BlockFormat):
        raise ValueError(f"{fmt.name} is not block-scaled: use emulator.encode or quantize")
    x = float_input(x)
    blocks = _blocks(x, fmt.block_size, axis)
    element_fmt = _element_format(fmt)
    amax_rule = isinstance(tensor_scale, str) and tensor_scale == "amax"
    if not (amax_rule or tensor_scale is None or
            (isinstance(tensor_scale, numbers.Real) and not isinstance(tensor_scale, (bool, np.bool_)))):
        raise ValueError(f"tensor_scale must be 'amax', None or a positive number, got {shown(tensor_scale)}")
    if not fmt.tensor_scale and not amax_rule:
        raise ValueError(f"{fmt.name} has no tensor scale (only NVFP4 does): leave tensor_scale unset, got "
                         f"{shown(tensor_scale)}")
    if scale_rule is not None:
        text(scale_rule, "scale_rule")
    if fmt.is_mx:
        amax = np.max(np.abs(blocks), axis=-1).astype(np.float64)
        scales = mx_scale_exponent(amax, fmt, scale_rule or fmt.scale_rule)
        scaled = blocks.astype(np.float64) * np.exp2(127.0 - scales.astype(np.float64))[..., None]
        scaled = np.where((scales == E8M0_NAN)[..., None], 0.0, scaled)
        if isinstance(element_fmt, IntFormat):
            scaled = scaled * 64.0  # MXINT8 elements are int8 / 64
        elements = encode(scaled, element_fmt, rounding=rounding, seed=seed)
        return BlockEncoded(_unblocks(elements, axis), scales)
    return _nvfp4_encode(x, blocks, fmt, axis, rounding, seed, tensor_scale if fmt.tensor_scale else None)


def _nvfp4_encode(x, blocks, fmt, axis, rounding, seed, tensor_scale):
    f32 = np.float32
    blocks = blocks.astype(f32)
    amax = np.max(np.abs(blocks), axis=-1)
    e4m3 = get_format(fmt.scale, overflow="saturate")
    max_elem = f32(fmt.element.max_finite)
    tiny, max_scale = f32(fmt.scale.min_normal), f32(fmt.scale.max_finite)
    block_scale = amax / max_elem
    if isinstance(tensor_scale, str) and tensor_scale == "amax":
        tensor_scale = float(np.max(np.abs(x)).astype(f32) / (max_scale * max_elem))
    if tensor_scale is None:
        scale_codes = encode(np.clip(block_scale, tiny, max_scale), e4m3)
        reciprocal = f32(1.0) / decode(scale_codes, e4m3)
    else:
        t = f32(tensor_scale)
        if not (np.isfinite(t) and t > 0):
            raise ValueError(f"tensor_scale must be finite and > 0, got {shown(tensor_scale)}")
        scale_codes = encode(np.clip(block_scale / t, tiny, max_scale), e4m3)
        reciprocal = (f32(1.0) / t) / decode(scale_codes, e4m3)
    scaled = np.clip(blocks * reciprocal[..., None], -max_elem, max_elem)
    elements = encode(scaled, _element_format(fmt), rounding=rounding, seed=seed)
    return BlockEncoded(_unblocks(elements, axis), scale_codes, None if tensor_scale is None else float(f32(tensor_scale)))


def block_decode(encoded: BlockEncoded, fmt, *, axis: int = -1) -> np.ndarray:
    """float32 values of a BlockEncoded: element * scale (* tensor scale), NaN for NaN-scale blocks."""
    fmt = get_format(fmt)
    if not isinstance(fmt, BlockFormat):
        raise ValueError(f"{fmt.name} is not block-scaled")
    if not isinstance(encoded, BlockEncoded):
        raise ValueError(f"block_decode takes the BlockEncoded that block_encode returns, got {type(encoded).__name__}")
    elements = _blocks(numeric_array(encoded.elements, "elements"), fmt.block_size, axis)
    values = decode(elements, fmt.element).astype(np.float64)
    if isinstance(fmt.element, IntFormat):
        values = values / 64.0
    scales = decode(encoded.scales, fmt.scale).astype(np.float64)
    if encoded.scales.shape != elements.shape[:-1]:
        raise ValueError(f"scales must have shape {elements.shape[:-1]}, got {encoded.scales.shape}")
    if encoded.tensor_scale is not None:
        scales = scales * np.float64(np.float32(encoded.tensor_scale))
    return _unblocks((values * scales[..., None]).astype(np.float32), axis)
