"""Binary (1-bit) products on bit-packed words: XNOR-popcount, exact zero padding, and bit-planes (W1A<b>).

Binary codes are emulator's: +1 -> bit 0, -1 -> bit 1. Packed 64 per uint64 along K (element 0 in bit 0), so
  dot(a, w) = K - 2 * popcount(a XOR w)     (the padding bits past K are 0 in both and cancel).
Convolutions gather the +1 (bit 0) padding and subtract, per output position, what the padded taps added
(sum of w over the taps that fall in the padding): the exact zero-padding result, as Larq Compute Engine's
LceBconv2d does with pad_values = 0. padding_value=+1 keeps the +1 padding (LCE's pad_values = 1); -1 pads with
-1 (dabnn).
Binary weights with b-bit integer activations (BinaryDM's W1A4) run as bit-planes: x = sum_p 2^p x_p (the top
plane weighs -2^(b-1) for signed formats), and each plane's pass is
  dot(x_p, w) = popcount(x_p) - 2 * popcount(x_p AND w),
shifted and added: equal to the direct integer result.
"""

from __future__ import annotations

import numpy as np

from .arguments import shown
from ._kernels import xnor as kernels
from .codec import check_codes
from .formats import BinaryFormat, IntFormat, get_format
from .im2col import conv_geometry, conv_shape

BINARY = BinaryFormat()
BINARY_PADDING = (None, 1, -1)


def _pack_pixels(codes: np.ndarray, planes: int) -> np.ndarray:
    """NCHW codes -> (planes, N, H, W, words): each pixel's channels packed 64 to a word (bit p of the codes)."""
    n, c, h, w = codes.shape
    out = np.empty((planes, n, h, w, -(-c // 64)), dtype=np.uint64)
    kernels.pack_pixels(np.ascontiguousarray(codes, dtype=np.uint8), out)
    return out


def pack_rows(codes: np.ndarray, planes: int = 1) -> np.ndarray:
    """(R, K) codes -> (planes, R, ceil(K / 64)) uint64 words: bit p of element k in bit k % 64 of word k // 64
    of plane p. One plane (binary codes) comes back as (R, words). (Rows are packed as R pixels of K channels.)"""
    rows, k = np.shape(codes)
    out = _pack_pixels(np.reshape(codes, (rows, k, 1, 1)), planes).reshape(planes, rows, -1)
    return out[0] if planes == 1 else out


def binary_matmul(a, b) -> np.ndarray:
    """int64 a @ b for binary codes a (M x K) and b (K x N): K - 2 * popcount(a XOR b) per output."""
    a = check_codes(a, BINARY)
    b = check_codes(b, BINARY)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"binary_matmul needs (M x K) @ (K x N) codes, got {a.shape} and {b.shape}")
    out = np.empty((a.shape[0], b.shape[1]), dtype=np.int64)
    kernels.xnor_popcount(pack_rows(a), pack_rows(b.T), a.shape[1], out)
    return out


def _plane_weights(fmt: IntFormat) -> list:
    """Each bit-plane's weight: 2^p, the top plane -2^(b-1) for signed (two's complement) formats."""
    weights = [1 << p for p in range(fmt.bits)]
    if fmt.signed:
        weights[-1] = -weights[-1]
    return weights


def bitplane_matmul(x, w, *, x_format) -> np.ndarray:
    """int64 x @ w for integer codes x (M x K, `x_format`) and binary codes w (K x N), one pass per bit."""
    fmt = get_format(x_format)
    if not isinstance(fmt, IntFormat) or fmt.bits > 8:
        raise ValueError(f"bit-planes need integer activations of at most 8 bits, not {fmt.name}")
    x = check_codes(x, fmt)
    w = check_codes(w, BINARY)
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[0]:
        raise ValueError(f"bitplane_matmul needs (M x K) @ (K x N) codes, got {x.shape} and {w.shape}")
    planes = pack_rows(x, fmt.bits).reshape(fmt.bits, x.shape[0], -1)
    w_words = pack_rows(w.T)
    out = np.zeros((x.shape[0], w.shape[1]), dtype=np.int64)
    plane_dot = np.empty_like(out)
    for plane, weight in zip(planes, _plane_weights(fmt)):
        kernels.and_popcount(plane, w_words, plane_dot)
        out += weight * plane_dot
    return out


def binary_conv2d(x, w, *, stride=1, padding=0, dilation=1, groups=1, padding_value=None,
                  x_format=None) -> np.ndarray:
    """int64 NCHW convolution of binary weights (OIHW codes) with binary or integer (`x_format`) activations.

    Each pixel's channels are packed into 64-bit words and every output is one XNOR-popcount (binary
    activations) or one AND-popcount per bit-plane (integers) over its taps' words; no im2col matrix is
    formed. Taps past the image: exact zeros (padding_value None: the +1s they are gathered as are taken back
    out per filter), or +1 / -1 (binary activations)."""
    if padding_value not in BINARY_PADDING:
        raise ValueError(f"binary padding_value must be None (exact zero padding), 1 or -1, got {shown(padding_value)}")
    fmt = BINARY if x_format is None else get_format(x_format)
    x = check_codes(x, fmt)
    w = check_codes(w, BINARY)
    n, o, oh, ow = conv_shape(x.shape, w.shape, groups, stride=stride, padding=padding, dilation=dilation)
    binary_x = isinstance(fmt, BinaryFormat)
    if not binary_x and padding_value is not None:
        raise ValueError("padding_value applies to binary activations; integer activations pad with 0")
    if not binary_x and (not isinstance(fmt, IntFormat) or fmt.bits > 8):
        raise ValueError(f"bit-planes need integer activations of at most 8 bits, not {fmt.name}")
    kernel, (sh, sw), (ph, pw), (dh, dw) = conv_geometry(w.shape[2:], stride, padding, dilation)
    kh, kw = kernel
    c_per_group, o_per_group = w.shape[1], o // groups
    out = np.empty((n, o, oh, ow), dtype=np.int64)
    for g in range(groups):
        channels = slice(g * c_per_group, (g + 1) * c_per_group)
        filters = _pack_pixels(w[g * o_per_group:(g + 1) * o_per_group], 1)[0]  # (O/g, KH, KW, words)
        words = filters.shape[-1]
        flat_filters = np.ascontiguousarray(filters.reshape(o_per_group, kh * kw * words))
        part = np.empty((n, o_per_group, oh, ow), dtype=np.int64)
        if binary_x:
            pixels = _pack_pixels(x[:, channels], 1)[0]
            ones = _channel_mask(c_per_group, words) if padding_value == -1 else np.zeros(words, np.uint64)
            popcounts = np.empty((o_per_group, kh * kw), dtype=np.int64)
            kernels.tap_popcounts(np.ascontiguousarray(filters.reshape(o_per_group, kh * kw, words)), popcounts)
            tap_sums = c_per_group - 2 * popcounts  # each filter's sum of +-1 at each tap
            kernels.xnor_conv(pixels, flat_filters, c_per_group, kh, kw, sh, sw, ph, pw, dh, dw, ones,
                              padding_value is None, np.ascontiguousarray(tap_sums), part)
        else:
            planes = _pack_pixels(x[:, channels], fmt.bits)
            kernels.bitplane_conv(planes, flat_filters, np.array(_plane_weights(fmt), dtype=np.int64), kh, kw, sh,
                                  sw, ph, pw, dh, dw, part)
        out[:, g * o_per_group:(g + 1) * o_per_group] = part
    return out


def _channel_mask(channels: int, words: int) -> np.ndarray:
    """Words with a 1 bit for every real channel (the -1 padding of a pixel)."""
    bits = np.zeros(words * 64, dtype=np.uint8)
    bits[:channels] = 1
    return np.packbits(bits, bitorder="little").view(np.uint64).copy()
