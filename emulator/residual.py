"""Residual (multi-basis) binarization: a weight as a sum of scaled +-1 planes, one scale per basis and channel.

For each output channel (the slice of `axis`), starting from r_0 = w in float64:
  s_j     = sign(r_{j-1})                 (zero -> +1, or -1 with the format's zero="-1")
  alpha_j = sum(|r_{j-1}|) / n            (the sum correctly rounded, as math.fsum, then one division)
  r_j     = r_{j-1} - alpha_j * s_j       (one float64 rounding; alpha_j * s_j is exact)
which is BinaryDM's Evolvable-Basis Binarizer at initialization (ours_util.py, BNNConv2d with order=2: the first
basis is sign(W) times the channel's mean |W|, the second the sign of the residual times its mean magnitude).
The sum is correctly rounded so that the scales do not depend on summation order, hence on threads or layout.
Decoded, a weight is sum_j alpha_j * s_j added in float64 in plane order, then rounded once to float32.

Codes: bit j of an element's code is plane j's sign bit (1 for -1), so plane j alone is a `binary` code array
(emulator.binary_conv2d and the XNOR kernels take it as is) and a code takes `bases` bits (emulator.pack).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._kernels import residual as kernels
from .arguments import axis as check_axis, numeric_array
from .codec import check_codes, float_input
from .formats import ResidualBinaryFormat, get_format


@dataclass(frozen=True)
class ResidualBinary:
    """codes: uint8, the weight's shape (bit j: plane j is -1); scales: float64 (channels, bases)."""

    codes: np.ndarray
    scales: np.ndarray


def residual_format(fmt) -> ResidualBinaryFormat:
    fmt = get_format(fmt)
    if not isinstance(fmt, ResidualBinaryFormat):
        raise ValueError(f"{fmt.name} is not a residual binary format (binary2, binary3, ...)")
    return fmt


def _rows(x: np.ndarray, axis: int) -> np.ndarray:
    """x with the channel axis first and everything else flattened: (channels, n)."""
    if x.ndim == 0:
        raise ValueError("residual binarization needs at least a 1-D array (channels along axis)")
    moved = np.moveaxis(x, check_axis(axis, "axis", x.ndim), 0)
    return moved.reshape(moved.shape[0], -1)


def residual_binarize(w, fmt="binary2", *, axis: int = 0) -> ResidualBinary:
    """Codes and per-channel scales of w (float32 or float64, finite) in a residual binary format."""
    fmt = residual_format(fmt)
    arr = float_input(w, "w")
    if not np.isfinite(arr).all():
        raise ValueError("w must be finite: a NaN or infinite weight has no sign plane and no mean")
    rows = _rows(arr, axis)
    if rows.shape[1] == 0:
        raise ValueError("every channel needs at least one element")
    residual = rows.astype(np.float64)
    codes = np.zeros(rows.shape, dtype=np.uint8)
    scales = np.empty((rows.shape[0], fmt.bases), dtype=np.float64)
    for j in range(fmt.bases):
        negative = residual < 0 if fmt.zero == "+1" else residual <= 0
        kernels.row_means(np.abs(residual), scales[:, j])
        codes |= negative.astype(np.uint8) << j
        residual = residual - np.where(negative, -scales[:, j:j + 1], scales[:, j:j + 1])
    moved_shape = np.moveaxis(arr, axis, 0).shape
    return ResidualBinary(np.moveaxis(codes.reshape(moved_shape), 0, axis), scales)


def residual_dequantize(codes, scales, fmt="binary2", *, axis: int = 0) -> np.ndarray:
    """float32 weights: sum_j alpha_j * s_j in float64, plane by plane, rounded once to float32."""
    fmt = residual_format(fmt)
    arr = check_codes(codes, fmt)
    rows = _rows(arr, axis)
    alphas = numeric_array(scales, "scales").astype(np.float64)
    if not (np.isfinite(alphas).all() and (alphas >= 0).all()):
        raise ValueError("scales must be finite and >= 0 (mean magnitudes)")
    if alphas.shape != (rows.shape[0], fmt.bases):
        raise ValueError(f"scales must have shape (channels, bases) = {(rows.shape[0], fmt.bases)}, got "
                         f"{alphas.shape}")
    values = np.zeros(rows.shape, dtype=np.float64)
    for j in range(fmt.bases):
        values = values + np.where((rows >> j) & 1, -alphas[:, j:j + 1], alphas[:, j:j + 1])
    moved_shape = np.moveaxis(arr, axis, 0).shape
    with np.errstate(over="ignore"):  # a sum past float32's largest (weights near 3.4e38) is +-inf, as a cast
        rounded = values.astype(np.float32)
    return np.moveaxis(rounded.reshape(moved_shape), 0, axis)


def residual_planes(codes, fmt="binary2") -> list:
    """Plane j's `binary` codes (uint8 0/1, the codes' shape), for j = 0 .. bases-1."""
    fmt = residual_format(fmt)
    arr = check_codes(codes, fmt)
    return [((arr >> j) & 1).astype(np.uint8) for j in range(fmt.bases)]
