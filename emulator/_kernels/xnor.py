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


@njit(parallel=True, cache=True)
def pack_planes(codes, out):
    """out[p, r, k // 64] bit k % 64 = bit p of codes[r, k]: every bit-plane of integer codes, packed along K.
    `out` (planes, R, words) must start zeroed."""
    planes = out.shape[0]
    rows, k_size = codes.shape
    for r in prange(rows):
        for k in range(k_size):
            code = np.uint64(codes[r, k])
            bit = np.uint64(1) << np.uint64(k & 63)
            for p in range(planes):
                if (code >> np.uint64(p)) & np.uint64(1):
                    out[p, r, k >> 6] |= bit
