"""im2col: a convolution's input as the (positions x taps) matrix its GEMM multiplies, taps in (c, kh, kw) order."""

from __future__ import annotations

import numpy as np

from .arguments import shown


def _pair(value, what):
    pair = (value, value) if np.ndim(value) == 0 else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in pair):
        raise ValueError(f"{what} must be an integer or a pair of integers, got {shown(value)}")
    return int(pair[0]), int(pair[1])


def conv_geometry(kernel, stride=1, padding=0, dilation=1):
    """The checked (kernel, stride, padding, dilation) pairs."""
    kernel, stride, padding, dilation = (_pair(v, w) for v, w in ((kernel, "kernel"), (stride, "stride"),
                                                                  (padding, "padding"), (dilation, "dilation")))
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0 or min(kernel) < 1:
        raise ValueError(f"stride and dilation must be >= 1 and padding >= 0, got stride={stride}, "
                         f"padding={padding}, dilation={dilation}")
    return kernel, stride, padding, dilation


def conv_output_shape(spatial, *, kernel, stride=1, padding=0, dilation=1):
    kernel, stride, padding, dilation = conv_geometry(kernel, stride, padding, dilation)
    out = tuple((size + 2 * p - d * (k - 1) - 1) // s + 1
                for size, k, s, p, d in zip(spatial, kernel, stride, padding, dilation))
    if min(out) < 1:
        raise ValueError(f"a {kernel} kernel (dilation {dilation}) does not fit a {tuple(spatial)} input "
                         f"padded by {padding}")
    return out


def im2col(x: np.ndarray, *, kernel, stride=1, padding=0, dilation=1, fill=0):
    """(N*OH*OW, C*KH*KW) columns of NCHW `x` padded with `fill`, and the (OH*OW, C*KH*KW) mask of real taps."""
    kernel, stride, padding, dilation = conv_geometry(kernel, stride, padding, dilation)
    n, c, h, w = x.shape
    oh, ow = conv_output_shape((h, w), kernel=kernel, stride=stride, padding=padding, dilation=dilation)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    padded = np.full((n, c, h + 2 * ph, w + 2 * pw), fill, dtype=x.dtype)
    padded[:, :, ph:ph + h, pw:pw + w] = x
    inside = np.zeros((1, 1, h + 2 * ph, w + 2 * pw), dtype=bool)
    inside[:, :, ph:ph + h, pw:pw + w] = True

    def columns(image):
        # a strided view of every window (no copy), then one copy into (positions, taps) order
        windows = np.lib.stride_tricks.sliding_window_view(image, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
        taps = windows[:, :, ::sh, ::sw][:, :, :oh, :ow, ::dh, ::dw]  # (N, C, OH, OW, KH, KW)
        return taps.transpose(0, 2, 3, 1, 4, 5).reshape(image.shape[0] * oh * ow, -1)

    mask = np.broadcast_to(columns(inside).reshape(oh * ow, 1, kh * kw), (oh * ow, c, kh * kw)).reshape(oh * ow, -1)
    return np.ascontiguousarray(columns(padded)), mask


def conv_shape(x_shape, w_shape, groups, **geometry):
    """(N, O, OH, OW) of an NCHW x OIHW grouped convolution, or one line saying why the shapes do not fit."""
    if len(x_shape) != 4 or len(w_shape) != 4:
        raise ValueError(f"a convolution needs NCHW and OIHW code arrays, got shapes {tuple(x_shape)} and "
                         f"{tuple(w_shape)}")
    n, c = x_shape[:2]
    o, c_per_group, kh, kw = w_shape
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1 or \
            c != c_per_group * groups or o % groups:
        raise ValueError(f"{c} input channels and {o} filters of {c_per_group} channels do not make "
                         f"{shown(groups)} groups")
    return (n, o, *conv_output_shape(x_shape[2:], kernel=(kh, kw), **geometry))


def conv_groups(x: np.ndarray, w: np.ndarray, groups: int, *, fill, **geometry):
    """Per group: the im2col columns (N*OH*OW, C/g*KH*KW), the filters as (C/g*KH*KW, O/g), the mask of real taps,
    and the group's output channels (a slice)."""
    c_per_group, o_per_group = w.shape[1], w.shape[0] // groups
    kernel = w.shape[2:]
    for g in range(groups):
        cols, inside = im2col(x[:, g * c_per_group:(g + 1) * c_per_group], kernel=kernel, fill=fill, **geometry)
        channels = slice(g * o_per_group, (g + 1) * o_per_group)
        yield cols, np.ascontiguousarray(w[channels].reshape(o_per_group, -1).T), inside, channels


def to_nchw(results, n, oh, ow) -> np.ndarray:
    """The groups' (N*OH*OW, O/g) GEMM results as one NCHW array."""
    return np.ascontiguousarray(np.concatenate([r.reshape(n, oh, ow, -1) for r in results], axis=3)
                                .transpose(0, 3, 1, 2))
