"""Numba kernels of the GEMM accumulators; emulator/gemm.py calls them, emulator/reference/gemm.py is their twin.

Every kernel computes each output element on its own (rows in parallel, a fixed K order inside), so results do
not depend on the number of threads.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .scalar import bits_float64, float64_bits

# Exponents are float32 (small whole numbers, exact): numba widens integer arithmetic to 64 bits, and the
# integer max across columns vectorized worse (LDM-4's sm90_fp8 forward: 21.7x torch float32 with int16
# exponents, 16.5x with float32 ones; reports/benchmarks.md).
ZERO_EXPONENT = -16000.0  # a zero operand's: the sum of two stays far below any real exponent sum
NO_SUM = np.float32(-32000.0)  # the exponent of a zero running sum (the lowest an exponent sum can be)


# ---- integers -------------------------------------------------------------------------------------------------
@njit(parallel=True, cache=True)
def int_saturating(a, b, lo, hi, out):
    """out[i, j] = sum_k a[i, k] * b[k, j], every partial sum clamped to [lo, hi], k ascending."""
    m, k_size = a.shape
    n = b.shape[1]
    for i in prange(m):
        for j in range(n):
            acc = np.int64(0)
            for k in range(k_size):
                acc += np.int64(a[i, k]) * np.int64(b[k, j])
                if acc > hi:
                    acc = hi
                elif acc < lo:
                    acc = lo
            out[i, j] = acc


@njit(parallel=True, cache=True)
def int_wrapping64(a, b, out):
    """out[i, j] = sum_k a[i, k] * b[k, j] modulo 2^64 (int64 arithmetic wraps)."""
    m, k_size = a.shape
    n = b.shape[1]
    for i in prange(m):
        for j in range(n):
            acc = np.int64(0)
            for k in range(k_size):
                acc += np.int64(a[i, k]) * np.int64(b[k, j])
            out[i, j] = acc


# ---- float32 adds ---------------------------------------------------------------------------------------------
@njit(parallel=True, cache=True)
def float32_sequential(a, b, out):
    """acc = f32(acc + f32(a * b)) for k ascending, acc starting at +0 (ml_dtypes' np.dot)."""
    m, k_size = a.shape
    n = b.shape[1]
    for i in prange(m):
        for j in range(n):
            acc = np.float32(0.0)
            for k in range(k_size):
                acc = np.float32(acc + np.float32(a[i, k] * b[k, j]))
            out[i, j] = acc


@njit(parallel=True, cache=True)
def float32_pairwise(a, b, out):
    """Bottom-up pairwise sums: neighbours (0+1, 2+3, ...) added in float32, an odd last term carried up."""
    m, k_size = a.shape
    n = b.shape[1]
    for i in prange(m):
        buf = np.empty(max(k_size, 1), dtype=np.float32)
        for j in range(n):
            for k in range(k_size):
                buf[k] = np.float32(a[i, k] * b[k, j])
            count = k_size
            while count > 1:
                half = count // 2
                for t in range(half):
                    buf[t] = np.float32(buf[2 * t] + buf[2 * t + 1])
                if count % 2:
                    buf[half] = buf[count - 1]
                    count = half + 1
                else:
                    count = half
            out[i, j] = buf[0] if k_size else np.float32(0.0)


# ---- tensor cores ---------------------------------------------------------------------------------------------
@njit(cache=True)
def floor_log2(x):
    """floor(log2 |x|) of a nonzero, normal float64 (every value a tensor core of <= 16-bit operands forms)."""
    return ((float64_bits(x) >> 52) & 0x7FF) - 1023


@njit(cache=True)
def pow2(e):
    """2.0 ** e for -1022 <= e <= 1023."""
    return bits_float64(np.int64(e + 1023) << 52)


@njit(cache=True)
def truncate_mantissa(v, mbits):
    """v truncated toward zero to `mbits` mantissa bits, with float32's exponent range below (e8m<mbits>).
    Branch-free (both roundings computed, one kept), so that a loop of it over columns vectorizes."""
    # normal in e8m<mbits>: clear the low mantissa bits (sign and magnitude: toward zero); below 2^-126 the
    # quantum stays 2^(-126 - mbits); zero gives zero either way
    cleared = bits_float64(float64_bits(v) & ~((np.int64(1) << (52 - mbits)) - 1))
    q = -126 - mbits
    fixed = np.trunc(v * pow2(-q)) * pow2(q)
    return cleared if floor_log2(v) >= -126 else fixed


COLUMNS = 256  # outputs of one row computed side by side: every per-column step below vectorizes across them
ROWS = 16  # rows that share one slab of a (K x COLUMNS) panel of b while it is in cache
SLAB = 256  # products per output taken per visit of a panel (whole chunks: 256 x 256 operands, 0.5 MB, in L2)


@njit(cache=True)
def _mma_chunk(a, ea, b, eb, i, j0, width, kc, kend, fraction_bits, mbits, lowest, highest, acc, top, up, summed):
    """One MMA chunk for out[i, j0:j0 + width]: the products aligned to the largest exponent (the running sum's
    included), truncated to `fraction_bits` below it and summed, the sum truncated to e8m<mbits> into acc.

    The aligned terms are whole numbers below 2^(fraction_bits + 2), summed in a's float type, which the caller
    chose to hold every chunk's sum exactly (float32 for FP8, float64 for 16-bit operands); the scaling powers
    of two stay within [2^lowest, 2^highest] of that type. A chunk without a nonzero product (its exponent sum
    stays near NO_SUM) leaves the running sum as it is: every step then computes zeros."""
    for c in range(width):
        top[c] = floor_log2(acc[c]) if acc[c] != 0.0 else NO_SUM
    for k in range(kc, kend):
        e = ea[i, k]  # zero operands carry ZERO_EXPONENT: their products never lead
        ek = eb[k][j0:j0 + width]
        for c in range(width):
            top[c] = max(top[c], e + ek[c])
    for c in range(width):
        up[c] = pow2(min(max(fraction_bits - np.int64(top[c]), lowest), highest))
        summed[c] = np.trunc(acc[c] * up[c])
    for k in range(kc, kend):
        x = a[i, k]
        bk = b[k][j0:j0 + width]
        for c in range(width):  # exact: a * b is exact in a's type, and so is the scaling by up
            summed[c] += np.trunc(x * bk[c] * up[c])
    for c in range(width):
        down = pow2(min(max(np.int64(top[c]) - fraction_bits, -1022), 1023))
        acc[c] = truncate_mantissa(np.float64(summed[c]) * down, mbits)


@njit(parallel=True, cache=True)
def tensor_core(a, ea, b, eb, chunk, fraction_bits, mbits, promote_every, bounds, lowest, highest, out):
    """a (M, K), b (K, N): exact operand values (see _mma_chunk for their float type); ea, eb: their exponents
    (float32 whole numbers; emin for subnormals, ZERO_EXPONENT for zeros). Per output and split of K: MMA chunks (_mma_chunk),
    promoted into float32 every `promote_every` products; the splits added in float32."""
    m = a.shape[0]
    n = b.shape[1]
    slab = chunk * max(1, SLAB // chunk)
    for block in prange((m + ROWS - 1) // ROWS):
        rows = min(ROWS, m - block * ROWS)
        acc = np.zeros((ROWS, COLUMNS))
        register = np.zeros((ROWS, COLUMNS), dtype=np.float32)
        total = np.zeros((ROWS, COLUMNS), dtype=np.float32)
        top = np.empty(COLUMNS, dtype=np.float32)
        up = np.empty(COLUMNS, dtype=a.dtype)
        summed = np.empty(COLUMNS, dtype=a.dtype)
        for j0 in range(0, n, COLUMNS):
            width = min(COLUMNS, n - j0)
            for s in range(bounds.size - 1):
                k0, k1 = bounds[s], bounds[s + 1]
                acc[:] = 0.0
                register[:] = 0.0
                for start in range(k0, k1, slab):
                    for r in range(rows):
                        i = block * ROWS + r
                        for kc in range(start, min(start + slab, k1), chunk):
                            kend = min(kc + chunk, k1)
                            _mma_chunk(a, ea, b, eb, i, j0, width, kc, kend, fraction_bits, mbits, lowest, highest,
                                       acc[r], top, up, summed)
                            if promote_every and (kend - k0) % promote_every == 0:
                                for c in range(width):
                                    register[r, c] = np.float32(register[r, c] + np.float32(acc[r, c]))
                                    acc[r, c] = 0.0
                for r in range(rows):
                    for c in range(width):
                        # the float32 register starts at +0: a sum that underflows float32 (negative products
                        # below 2^-149) is +0, not -0 (H200: tests/data/tensor_cores/zero_signs.json)
                        part = np.float32(register[r, c] + np.float32(acc[r, c]))
                        total[r, c] = part if s == 0 else np.float32(total[r, c] + part)
            for r in range(rows):
                for c in range(width):
                    out[block * ROWS + r, j0 + c] = total[r, c]


# ---- exact float sums (Kulisch accumulator) -------------------------------------------------------------------
LIMB = 32
LIMB_MASK = (1 << LIMB) - 1


@njit(cache=True)
def _add_product(limbs, p, quantum):
    """limbs += p / 2^quantum, an integer of at most 30 significant bits (p a product of two short floats)."""
    top = math.frexp(p)[1] - quantum  # |p / 2^quantum| < 2^top
    base = max(((top - 30) // LIMB) * LIMB, 0)
    v = np.int64(math.ldexp(p, -(quantum + base)))  # exact integer, |v| < 2^62
    index = base // LIMB
    limbs[index] += v & LIMB_MASK
    limbs[index + 1] += v >> LIMB


@njit(cache=True)
def _bit_length(x):
    n = 0
    while x:
        x >>= 1
        n += 1
    return n


@njit(cache=True)
def _bits(limbs, lo, count):
    """Bits lo .. lo + count - 1 (count <= 31) of the non-negative limb number."""
    index = lo // LIMB
    offset = lo % LIMB
    word = limbs[index] >> offset
    if offset + count > LIMB and index + 1 < limbs.size:
        word |= limbs[index + 1] << (LIMB - offset)
    return word & ((np.int64(1) << count) - 1)


@njit(cache=True)
def _any_below(limbs, lo):
    """Whether any bit below position lo is set."""
    index = lo // LIMB
    for t in range(index):
        if limbs[t]:
            return True
    return (limbs[index] & ((np.int64(1) << (lo % LIMB)) - 1)) != 0


@njit(cache=True)
def _round_limbs_to_float32(limbs, quantum):
    """The limb number times 2^quantum, rounded to nearest even float32 (limbs are overwritten)."""
    for t in range(limbs.size - 1):
        carry = limbs[t] >> LIMB
        limbs[t] -= carry << LIMB
        limbs[t + 1] += carry
    negative = limbs[limbs.size - 1] < 0
    if negative:
        for t in range(limbs.size):
            limbs[t] = -limbs[t]
        for t in range(limbs.size - 1):
            carry = limbs[t] >> LIMB
            limbs[t] -= carry << LIMB
            limbs[t + 1] += carry
    top_limb = -1
    for t in range(limbs.size - 1, -1, -1):
        if limbs[t]:
            top_limb = t
            break
    if top_limb < 0:
        return np.float32(0.0)
    msb = top_limb * LIMB + _bit_length(limbs[top_limb]) - 1
    lsb = max(msb - 23, -149 - quantum)  # float32 keeps 24 bits, none below 2^-149
    if lsb <= 0:  # the whole number fits float32's significand
        value = math.ldexp(float(_bits(limbs, 0, msb + 1)), quantum)
    else:
        mantissa = _bits(limbs, lsb, msb - lsb + 1) if msb >= lsb else np.int64(0)  # below half of 2^-149
        half = _bits(limbs, lsb - 1, 1)
        if half and (mantissa & 1 or _any_below(limbs, lsb - 1)):
            mantissa += 1
        value = math.ldexp(float(mantissa), lsb + quantum)
    return np.float32(-value if negative else value)


@njit(parallel=True, cache=True)
def exact_float(a, b, quantum, n_limbs, out):
    """out = float32(RNE(sum_k a[i, k] * b[k, j])) computed exactly; every product a multiple of 2^quantum."""
    m, k_size = a.shape
    n = b.shape[1]
    for i in prange(m):
        limbs = np.zeros(n_limbs, dtype=np.int64)
        for j in range(n):
            limbs[:] = 0
            for k in range(k_size):
                p = a[i, k] * b[k, j]
                if p != 0.0:
                    _add_product(limbs, p, quantum)
            out[i, j] = _round_limbs_to_float32(limbs, quantum)


# ---- integer GEMMs through BLAS -------------------------------------------------------------------------------
# Serial on purpose: these run between BLAS calls, whose OpenBLAS threads keep spinning afterwards; a parallel
# Numba loop there competes with them for the cores (a 0.3 ms decode took 7 ms, measured).
@njit(cache=True)
def int_code_values(codes, half, zero_point, out):
    """out[i] = float32(value of codes[i] - zero_point) (flat arrays); half = 2^(bits-1) sign-extends signed
    codes (0 for unsigned ones). Vectorizes, unlike a table lookup (0.21 against 0.32 ms per 2^20 codes)."""
    for i in range(codes.size):
        v = np.int32(codes[i])
        out[i] = np.float32((v ^ half) - half - zero_point)


@njit(cache=True)
def floats_to_ints(values, ints):
    """ints[i] = values[i] for integer-valued floats; `ints` may be a view of the same memory (same item size)."""
    for i in range(values.size):
        ints[i] = values[i]


@njit(cache=True)
def add_floats_to_ints(values, ints):
    for i in range(values.size):
        ints[i] += np.int64(values[i])


# ---- integer convolutions through BLAS, tap by tap ------------------------------------------------------------
@njit(cache=True)
def codes_to_padded_pixels(codes, half, zero_point, ph, pw, out):
    """out[n, (y + ph) * Wp + x + pw, c] = value of codes[n, c, y, x] - zero_point (float32); the rest of `out`
    (the padding, and the rows past the image) must already be 0: padded taps hold the zero point, value 0."""
    n_size, c_size, h, w = codes.shape
    wp = w + 2 * pw
    for n in range(n_size):
        for c in range(c_size):
            for y in range(h):
                row = (y + ph) * wp + pw
                for x in range(w):
                    v = np.int32(codes[n, c, y, x])
                    out[n, row + x, c] = np.float32((v ^ half) - half - zero_point)
