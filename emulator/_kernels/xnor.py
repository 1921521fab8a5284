"""Numba popcount kernels for emulator/xnor.py (hardware popcnt through LLVM's ctpop)."""

from __future__ import annotations


import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic


@intrinsic
def popcount64(typingctx, word):
    """LLVM ctpop on a uint64: one popcnt instruction on x86-64."""
    if word != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return types.uint64(types.uint64), codegen


@njit(parallel=True, cache=True)
def xnor_popcount(a_words, b_words, k, out):
    """out[i, j] = k - 2 * popcount(a_words[i] XOR b_words[j]); rows of words along K."""
    m, n_words = a_words.shape
    n = b_words.shape[0]
    n4 = n - n % 4
    for i in prange(m):
        row = a_words[i]
        for j in range(0, n4, 4):  # four columns at once: each word of the row is loaded once for four popcounts
            c0 = c1 = c2 = c3 = 0
            for t in range(n_words):
                w = row[t]
                c0 += popcount64(w ^ b_words[j, t])
                c1 += popcount64(w ^ b_words[j + 1, t])
                c2 += popcount64(w ^ b_words[j + 2, t])
                c3 += popcount64(w ^ b_words[j + 3, t])
            out[i, j] = k - 2 * c0
            out[i, j + 1] = k - 2 * c1
            out[i, j + 2] = k - 2 * c2
            out[i, j + 3] = k - 2 * c3
        for j in range(n4, n):
            count = 0
            for t in range(n_words):
                count += popcount64(row[t] ^ b_words[j, t])
            out[i, j] = k - 2 * count


@njit(parallel=True, cache=True)
def and_popcount(plane_words, w_words, out):
    """out[i, j] = dot(plane_i, w_j) for a 0/1 plane and +-1 weights: popcount(p) - 2 * popcount(p AND w)."""
    m, n_words = plane_words.shape
    n = w_words.shape[0]
    for i in prange(m):
        ones = 0
        for t in range(n_words):
            ones += popcount64(plane_words[i, t])
        for j in range(n):
            minus = 0
            for t in range(n_words):
                minus += popcount64(plane_words[i, t] & w_words[j, t])
            out[i, j] = ones - 2 * minus


# ---- convolutions on channel-packed pixels ---------------------------------------------------------------------
# Each output pixel's taps are gathered once into a small buffer of words (kernel taps x channel words), then
# every filter is one XOR/AND-popcount pass over it: no im2col matrix is formed. Rows of the output run in
# parallel; each output is one integer sum, so the result does not depend on the thread count.
@njit(parallel=True, cache=True)
def pack_pixels(codes, out):
    """out[p, n, y, x, c // 64] bit c % 64 = bit p of codes[n, c, y, x] (NCHW codes): each word is built in a
    register from its 64 channels and written once."""
    planes = out.shape[0]
    n_size, c_size, h, w = codes.shape
    words = out.shape[4]
    for row in prange(n_size * h):
        n, y = row // h, row % h
        for x in range(w):
            for t in range(words):
                top = min(c_size, (t + 1) * 64)
                for p in range(planes):
                    word = np.uint64(0)
                    for c in range(t * 64, top):
                        word |= ((np.uint64(codes[n, c, y, x]) >> np.uint64(p)) & np.uint64(1)) << np.uint64(c - t * 64)
                    out[p, n, y, x, t] = word


@njit(cache=True)
def tap_popcounts(filters, out):
    """out[o, tap] = popcount of filters[o, tap, :] (packed words)."""
    for o in range(filters.shape[0]):
        for tap in range(filters.shape[1]):
            count = np.uint64(0)
            for t in range(filters.shape[2]):
                count += popcount64(filters[o, tap, t])
            out[o, tap] = np.int64(count)


@njit(cache=True)
def _gather(pixels, n, oy, ox, kh, kw, sh, sw, ph, pw, dh, dw, fill, buf, inside):
    """The words of one output pixel's taps into buf (taps x words); a tap past the image takes `fill`."""
    h, w, words = pixels.shape[1], pixels.shape[2], pixels.shape[3]
    for i in range(kh):
        iy = oy * sh - ph + i * dh
        for j in range(kw):
            ix = ox * sw - pw + j * dw
            tap = i * kw + j
            inside[tap] = 0 <= iy < h and 0 <= ix < w
            for t in range(words):
                buf[tap * words + t] = pixels[n, iy, ix, t] if inside[tap] else fill[t]


@njit(parallel=True, cache=True)
def xnor_conv(pixels, filters, channels, kh, kw, sh, sw, ph, pw, dh, dw, fill, skip_outside, tap_sums, out):
    """out[n, o, y, x] = sum over the taps of dot(+-1 pixel channels, +-1 filter channels), by XNOR-popcount.

    pixels (N, H, W, words); filters (O, KH*KW*words); a tap past the image holds `fill` (words), or, with
    skip_outside, adds nothing (exact zero padding): it is gathered as +1s (fill all zero) and its filter's
    sum there, tap_sums[o, tap], taken back out. A row of outputs is gathered first, then each filter passes
    over it (the writes run along the row, and LLVM vectorizes the popcounts)."""
    n_size, _, _, words = pixels.shape
    _, o_size, oh, ow = out.shape
    taps = kh * kw
    span = taps * words
    k = channels * taps
    for row in prange(n_size * oh):
        n, oy = row // oh, row % oh
        buf = np.empty((ow, span), dtype=np.uint64)
        inside = np.empty((ow, taps), dtype=np.bool_)
        for ox in range(ow):
            _gather(pixels, n, oy, ox, kh, kw, sh, sw, ph, pw, dh, dw, fill, buf[ox], inside[ox])
        for o in range(o_size):
            frow = filters[o]
            for ox in range(ow):
                pixel = buf[ox]
                count = np.uint64(0)
                for t in range(span):
                    count += popcount64(pixel[t] ^ frow[t])
                total = k - 2 * np.int64(count)
                if skip_outside:
                    for tap in range(taps):
                        if not inside[ox, tap]:
                            total -= tap_sums[o, tap]
                out[n, o, oy, ox] = total


@njit(parallel=True, cache=True)
def bitplane_conv(planes, filters, plane_weights, kh, kw, sh, sw, ph, pw, dh, dw, out):
    """out[n, o, y, x] = sum_p plane_weights[p] * dot(plane p of the pixels' taps (0/1), +-1 filter), each
    dot = popcount(plane) - 2 * popcount(plane AND filter); taps past the image hold 0 (integer zero padding)."""
    n_planes, n_size, _, _, words = planes.shape
    _, o_size, oh, ow = out.shape
    taps = kh * kw
    span = taps * words
    zeros = np.zeros(words, dtype=np.uint64)
    for row in prange(n_size * oh):
        n, oy = row // oh, row % oh
        buf = np.empty((n_planes, ow, span), dtype=np.uint64)
        inside = np.empty(taps, dtype=np.bool_)
        ones = np.zeros((n_planes, ow), dtype=np.int64)
        for p in range(n_planes):
            for ox in range(ow):
                _gather(planes[p], n, oy, ox, kh, kw, sh, sw, ph, pw, dh, dw, zeros, buf[p, ox], inside)
                count = np.uint64(0)
                for t in range(span):
                    count += popcount64(buf[p, ox, t])
                ones[p, ox] = np.int64(count)
        for o in range(o_size):
            frow = filters[o]
            for ox in range(ow):
                total = np.int64(0)
                for p in range(n_planes):
                    pixel = buf[p, ox]
                    minus = np.uint64(0)
                    for t in range(span):
                        minus += popcount64(pixel[t] & frow[t])
                    total += plane_weights[p] * (ones[p, ox] - 2 * np.int64(minus))
                out[n, o, oy, ox] = total
