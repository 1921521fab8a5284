"""Numba kernels of the GEMM accumulators; emulator/gemm.py calls them, emulator/reference/gemm.py is their twin.

Every kernel computes each output element on its own (rows in parallel, a fixed K order inside), so results do
not depend on the number of threads.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

NO_EXPONENT = -(1 << 40)  # the exponent of a zero operand: below every real one


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
    """floor(log2 |x|) of a nonzero float64."""
    return math.frexp(x)[1] - 1


@njit(cache=True)
def truncate_mantissa(v, mbits):
    """v truncated toward zero to `mbits` mantissa bits, with float32's exponent range below (e8m<mbits>)."""
    if v == 0.0:
        return 0.0
    q = max(floor_log2(v) - mbits, -126 - mbits)
    return math.trunc(math.ldexp(v, -q)) * math.ldexp(1.0, q)


@njit(cache=True)
def _mma_part(a, b, ea, eb, i, j, k0, k1, chunk, fraction_bits, mbits, promote_every):
    """One split of K: MMA chunks aligned and truncated, promoted into float32 every `promote_every`."""
    register = np.float32(0.0)
    acc = 0.0
    done = 0
    for kc in range(k0, k1, chunk):
        kend = min(kc + chunk, k1)
        top = floor_log2(acc) if acc != 0.0 else NO_EXPONENT
        for k in range(kc, kend):
            if a[i, k] != 0.0 and b[k, j] != 0.0:
                top = max(top, ea[i, k] + eb[k, j])
        if top != NO_EXPONENT:
            up = math.ldexp(1.0, fraction_bits - top)
            total = math.trunc(acc * up)
            for k in range(kc, kend):
                total += math.trunc(a[i, k] * b[k, j] * up)  # exact: |a*b*up| < 2^(fraction_bits + 2)
            acc = truncate_mantissa(total * math.ldexp(1.0, top - fraction_bits), mbits)
        done += kend - kc
        if promote_every and done % promote_every == 0:
            register = np.float32(register + np.float32(acc))
            acc = 0.0
    if promote_every:
        return np.float32(register + np.float32(acc))
    return np.float32(acc)


@njit(parallel=True, cache=True)
def tensor_core(a, b, ea, eb, chunk, fraction_bits, mbits, promote_every, bounds, out):
    """a (M, K), b (K, N): exact float64 operand values; ea, eb: their exponents (emin for subnormals)."""
    m = a.shape[0]
    n = b.shape[1]
    for i in prange(m):
        for j in range(n):
            total = np.float32(0.0)
            for s in range(bounds.size - 1):
                part = _mma_part(a, b, ea, eb, i, j, bounds[s], bounds[s + 1], chunk, fraction_bits, mbits,
                                 promote_every)
                total = part if s == 0 else np.float32(total + part)
            out[i, j] = total


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
