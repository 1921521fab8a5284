"""Clipping ranges for quantizers: min-max, percentile, and an Lp-error search over clipping ratios.

Each calibrator returns the largest magnitude to represent (`amax`), per tensor or per output channel
(reduce over every dimension but 0). The scale then maps amax onto the format's largest value.
"""

from __future__ import annotations

import torch

from emulator import BinaryFormat, FloatFormat, IntFormat, get_format

from ..errors import SimdqError
from . import torch_quant

CALIBRATORS = ("minmax", "percentile", "mse")
CLIP_RATIOS = torch.linspace(0.2, 1.0, 81, dtype=torch.float64)


def _per_channel(x: torch.Tensor, per_channel: bool) -> torch.Tensor:
    return x.reshape(x.shape[0], -1) if per_channel else x.reshape(1, -1)


def format_max(fmt) -> float:
    """The magnitude a scale maps amax to: qmax for integers (symmetric: -amax -> -qmax, the code -qmax-1 of
    a two's-complement range unused), max finite for minifloats."""
    if isinstance(fmt, IntFormat):
        return float(fmt.qmax)
    if isinstance(fmt, FloatFormat):
        return float(fmt.max_finite)
    raise SimdqError(f"{fmt.name}: no clipping range for this format kind")


def scale_for(amax: torch.Tensor, fmt) -> torch.Tensor:
    """Symmetric scale mapping amax onto the format's largest magnitude (zero ranges get scale 1)."""
    scale = amax.double() / format_max(get_format(fmt))
    return torch.where(scale > 0, scale, torch.ones_like(scale))


def minmax(x: torch.Tensor, per_channel: bool = False) -> torch.Tensor:
    return _per_channel(x, per_channel).abs().amax(dim=1).double()


def percentile(x: torch.Tensor, per_channel: bool = False, q: float = 99.99) -> torch.Tensor:
    flat = _per_channel(x, per_channel).abs().double()
    return torch.quantile(flat, q / 100, dim=1) if flat.shape[1] <= 2**24 else flat.amax(dim=1)


def mse(x: torch.Tensor, fmt, per_channel: bool = False, p: float = 2.0) -> torch.Tensor:
    """The clipped amax (ratio of the max over CLIP_RATIOS) with the least mean |fake_quant(x) - x|^p."""
    fmt = get_format(fmt)
    flat = _per_channel(x, per_channel).float()
    top = flat.abs().amax(dim=1).double()
    best_error = torch.full_like(top, float("inf"))
    best = top.clone()
    for ratio in CLIP_RATIOS:
        amax = top * ratio
        scale = scale_for(amax, fmt)
        axis = 0 if per_channel else None
        error = (torch_quant.fake_quantize(flat, fmt, scale if per_channel else scale.reshape(()), axis=axis)
                 - flat).abs().double().pow(p).mean(dim=1)
        better = error < best_error
        best_error = torch.where(better, error, best_error)
        best = torch.where(better, amax, best)
    return best


def calibrate_amax(x: torch.Tensor, fmt, method: str, per_channel: bool = False) -> torch.Tensor:
    if method not in CALIBRATORS:
        raise SimdqError(f"unknown calibrator {method!r}; allowed: {', '.join(CALIBRATORS)}")
    if isinstance(get_format(fmt), BinaryFormat):
        raise SimdqError("binary formats take the mean |x| per channel as their scale, not a clipping range")
    if method == "minmax":
        return minmax(x, per_channel)
    if method == "percentile":
        return percentile(x, per_channel)
    return mse(x, fmt, per_channel)
