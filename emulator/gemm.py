"""Matrix products and convolutions on encoded operands, with a named accumulator (emulator/accumulators.py).

matmul(a, b): `a` (M x K) and `b` (K x N) are codes as `encode` makes them (BlockEncoded for MX / NVFP4, blocked
along K: axis 1 of a, axis 0 of b).
- Integer and binary operands return the accumulator: int32 for int<P> with P <= 32, else int64. Zero points
  are subtracted exactly first (onnxruntime's MatMulInteger / ConvInteger). Binary x binary runs bit-packed
  (emulator.xnor); binary x integer as bit-planes under `exact`.
- Float operands (minifloats, bf16, fp16, MX, NVFP4) return float32: the accumulator, times the scales, rounded
  once to `out_format` (fp32, bf16 or fp16; None is fp32), as cuBLAS's epilogue does, measured on an H200:
    scalar scales (tensor-wise):   out = round(f32(acc) * f32(f32(a_scale) * f32(b_scale)))
    vector scales (row-wise):      out = round(f32(f32(acc) * b_scale[n]) * a_scale[m])
  bf16 and fp16 results are returned as float32 holding the rounded (nearest even) value. NVFP4's tensor
  scales join the scalar scales.
conv2d(x, w): NCHW codes and OIHW codes, lowered to matmul by im2col (the accumulation order along K is
  (c, kh, kw), as an im2col GEMM sums it); padding takes the zero point (value 0) unless `padding_value` says
  otherwise (binary: None is exact zero padding, +1 / -1 pad with that value, as Larq's two modes / dabnn).
  Either operand may also be an Operand (`operand(...)`'s decoded values, NCHW / OIHW): how block-scaled
  operands enter, since their blocks run along channels (x) and along the filters' flattened taps (w).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from . import xnor
from .arguments import shown
from ._kernels import gemm as kernels
from .accumulators import Accumulator, get_accumulator
from .block import BlockEncoded
from .codec import check_codes, decode, decode_table, encode
from .formats import BinaryFormat, BlockFormat, FloatFormat, IntFormat, get_format
from .im2col import conv_geometry, conv_groups, conv_shape, to_nchw

OUT_FORMATS = ("fp32", "bf16", "fp16")
_F32_EXACT = 2.0**24
_F64_EXACT = 2.0**53


@dataclass(frozen=True)
class Operand:
    """Exact values of one operand: int64 for integer formats, float64 for the rest, plus what accumulators need."""

    values: np.ndarray
    integer: bool
    fmt: object
    tensor_scale: float = 1.0
    significand_bits: int = 0


def _int_values(codes, fmt: IntFormat, zero_point) -> np.ndarray:
    arr = check_codes(codes, fmt).astype(np.int64)
    if fmt.signed:
        arr = np.where(arr >= 1 << (fmt.bits - 1), arr - (1 << fmt.bits), arr)
    zero_point = np.asarray(zero_point, dtype=np.int64)
    return arr - zero_point


def operand(codes, fmt, *, zero_point=0, block_axis=None, what="a") -> Operand:
    """Decode one operand's codes into exact values (block formats blocked along `block_axis`)."""
    fmt = get_format(fmt)
    if isinstance(fmt, BlockFormat):
        if not isinstance(codes, BlockEncoded):
            raise ValueError(f"{what}: {fmt.name} operands are BlockEncoded (emulator.block_encode along K)")
        values = _block_values(codes, fmt, block_axis)
        element_bits = 1 + (fmt.element.mbits if isinstance(fmt.element, FloatFormat) else fmt.element.bits)
        scale_bits = 1 + fmt.scale.mbits
        return Operand(values, False, fmt, float(np.float32(codes.tensor_scale or 1.0)), element_bits + scale_bits)
    if np.any(np.asarray(zero_point) != 0) and not isinstance(fmt, IntFormat):
        raise ValueError(f"{what}: zero points apply to integer formats, not {fmt.name}")
    if isinstance(fmt, IntFormat):
        return Operand(_int_values(codes, fmt, zero_point), True, fmt)
    if isinstance(fmt, BinaryFormat):
        bits = check_codes(codes, fmt).astype(np.int64)
        return Operand(1 - 2 * bits, True, fmt)
    values = decode(codes, fmt).astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"{what} holds NaN or infinite codes of {fmt.name}: a GEMM of them is not modelled")
    return Operand(values, False, fmt, significand_bits=fmt.mbits + 1)


def _block_values(encoded: BlockEncoded, fmt: BlockFormat, axis: int) -> np.ndarray:
    """element * block scale in float64 (exact); the tensor scale stays apart, for the epilogue."""
    elements = np.moveaxis(np.asarray(encoded.elements), axis, -1)
    shape = elements.shape
    if shape[-1] % fmt.block_size:
        raise ValueError(f"K = {shape[-1]} is not a multiple of {fmt.name}'s block size {fmt.block_size}")
    blocks = elements.reshape(*shape[:-1], shape[-1] // fmt.block_size, fmt.block_size)
    scales = np.asarray(encoded.scales)  # block_encode keeps the blocks' axis last
    if scales.shape != blocks.shape[:-1]:
        raise ValueError(f"{fmt.name} scales must have shape {blocks.shape[:-1]} (blocks along K), got {scales.shape}")
    values = decode(blocks, fmt.element).astype(np.float64)
    if isinstance(fmt.element, IntFormat):
        values = values / 64.0
    scale_values = decode(scales, fmt.scale).astype(np.float64)
    if not np.isfinite(scale_values).all():
        raise ValueError(f"{fmt.name} operand has NaN block scales")
    return np.moveaxis((values * scale_values[..., None]).reshape(shape), -1, axis)


# ---- accumulation on values ----------------------------------------------------------------------------------
def _blas_sum(a: np.ndarray, b: np.ndarray, peak_product: float, dtype) -> np.ndarray | None:
    """sum_k a*b of integer-valued operands through BLAS, exactly: K-chunks whose partial sums stay below 2^24
    (float32) or 2^53 (float64), so every order BLAS sums in is exact; chunks added in `dtype`. None when even
    float64 chunks would be shorter than 64."""
    k = a.shape[1]
    for ftype, limit in ((np.float32, _F32_EXACT), (np.float64, _F64_EXACT)):
        chunk = int(limit // max(peak_product, 1.0))
        if chunk >= min(k, 64):
            af, bf = a.astype(ftype, copy=False), b.astype(ftype, copy=False)
            out = _as_integers(af[:, :chunk] @ bf[:chunk], dtype)
            for k0 in range(chunk, k, chunk):
                kernels.add_floats_to_ints((af[:, k0:k0 + chunk] @ bf[k0:k0 + chunk]).reshape(-1), out.reshape(-1))
            return out
    return None


def _as_integers(values: np.ndarray, dtype) -> np.ndarray:
    """Integer-valued floats as `dtype`, in place when the item sizes match (no new pages to fault in)."""
    if values.dtype.itemsize != np.dtype(dtype).itemsize:
        return values.astype(dtype)
    ints = values.view(dtype)
    kernels.floats_to_ints(values.reshape(-1), ints.reshape(-1))
    return ints


def _int_exact(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sum_k a*b in int64, exactly (int64 operand values)."""
    peak = float(np.abs(a).max(initial=0)) * float(np.abs(b).max(initial=0))
    if peak * a.shape[1] >= 2.0**63:
        raise ValueError(f"an exact int64 accumulator could overflow: K = {a.shape[1]} products up to {peak:.3g}; "
                         f"use int64 (wrapping) or a narrower operand")
    out = _blas_sum(a, b, peak, np.int64)
    if out is None:  # operands too wide for BLAS; the bound above makes the wrapping kernel exact
        out = np.empty((a.shape[0], b.shape[1]), dtype=np.int64)
        kernels.int_wrapping64(a, b, out)
    return out


def _small_int_blas(a, b, a_fmt, b_fmt, a_zero_point, b_zero_point, acc: Accumulator):
    """The common case, straight from the codes: integer formats of <= 16 bits with scalar zero points, whose
    own ranges bound every result within the accumulator's limits (so no wrap or saturation can act).
    None when that does not hold."""
    if not (isinstance(a_fmt, IntFormat) and isinstance(b_fmt, IntFormat) and a_fmt.bits <= 16 and b_fmt.bits <= 16
            and np.ndim(a_zero_point) == 0 and np.ndim(b_zero_point) == 0 and acc.kind in ("exact", "int")):
        return None
    za, zb = int(a_zero_point), int(b_zero_point)
    peak = max(abs(a_fmt.qmin - za), abs(a_fmt.qmax - za)) * max(abs(b_fmt.qmin - zb), abs(b_fmt.qmax - zb))
    limit = 2**63 - 1 if acc.kind == "exact" else acc.max_value
    if peak * np.shape(a)[1] > limit or int(_F32_EXACT) // peak < min(np.shape(a)[1], 256):
        return None
    av, bv = _small_int_values(a, a_fmt, za), _small_int_values(b, b_fmt, zb)
    return _blas_sum(av, bv, peak, _int_dtype(acc))


def _int_conv_by_taps(x, w, x_fmt, w_fmt, x_zero_point, w_zero_point, acc: Accumulator, padding, dilation):
    """A stride-1, ungrouped integer convolution as one BLAS product per kernel tap, without im2col: on the
    zero-padded NHWC image flattened to rows, tap (i, j) of every output is the same row range shifted by
    i * dh * Wp + j * dw, so each tap is (O x C) @ (C x OH * Wp); the Wp - OW extra columns per row are computed
    and dropped. Taps add in float32 while every partial sum stays below 2^24 (exact in any order), then in
    integers. None when the formats' ranges do not bound the sums that way (the general path then runs)."""
    if not (isinstance(x_fmt, IntFormat) and isinstance(w_fmt, IntFormat) and x_fmt.bits <= 16 and w_fmt.bits <= 16
            and np.ndim(x_zero_point) == 0 and np.ndim(w_zero_point) == 0 and acc.kind in ("exact", "int")):
        return None
    zx, zw = int(x_zero_point), int(w_zero_point)
    peak = max(abs(x_fmt.qmin - zx), abs(x_fmt.qmax - zx)) * max(abs(w_fmt.qmin - zw), abs(w_fmt.qmax - zw))
    n, c, h, width = x.shape
    o, _, kh, kw = w.shape
    limit = 2**63 - 1 if acc.kind == "exact" else acc.max_value
    taps_per_sum = int(_F32_EXACT) // max(peak * c, 1)  # taps whose sum float32 holds exactly
    if peak * c * kh * kw > limit or taps_per_sum < 1:
        return None
    (ph, pw), (dh, dw) = padding, dilation
    hp, wp = h + 2 * ph, width + 2 * pw
    oh, ow = hp - (kh - 1) * dh, wp - (kw - 1) * dw
    pixels = np.zeros((n, hp * wp + (kw - 1) * dw, c), dtype=np.float32)
    kernels.codes_to_padded_pixels(np.ascontiguousarray(check_codes(x, x_fmt)),
                                   np.int32(1 << (x_fmt.bits - 1) if x_fmt.signed else 0), np.int32(zx), ph, pw, pixels)
    filters = _small_int_values(np.ascontiguousarray(np.transpose(check_codes(w, w_fmt), (2, 3, 0, 1))), w_fmt, zw)
    out = np.empty((n, o, oh, ow), dtype=_int_dtype(acc))
    wide = np.empty((o, oh * wp), dtype=np.float32)  # channel-major: each output row is a slice of a wide row
    part = np.empty_like(wide)
    taps = [(i, j) for i in range(kh) for j in range(kw)]
    for image in range(n):
        for start in range(0, len(taps), taps_per_sum):
            for t, (i, j) in enumerate(taps[start:start + taps_per_sum]):
                offset = i * dh * wp + j * dw
                np.matmul(filters[i, j], pixels[image, offset:offset + oh * wp].T, out=wide if t == 0 else part)
                if t:
                    wide += part
            kept = wide.reshape(o, oh, wp)[:, :, :ow]
            if start == 0:
                out[image] = kept
            else:
                out[image] += kept.astype(out.dtype)
    return out


def _int_dtype(acc: Accumulator):
    """What an integer GEMM returns: int64 for exact and int<P> with P > 32, else int32."""
    return np.int64 if acc.kind == "exact" or acc.bits > 32 else np.int32


def _small_int_values(codes, fmt: IntFormat, zero_point: int) -> np.ndarray:
    """float32 values minus the zero point of <= 16-bit integer codes, in one serial pass."""
    arr = np.ascontiguousarray(check_codes(codes, fmt))
    out = np.empty(arr.shape, dtype=np.float32)
    half = 1 << (fmt.bits - 1) if fmt.signed else 0
    kernels.int_code_values(arr.reshape(-1), np.int32(half), np.int32(zero_point), out.reshape(-1))
    return out


def _wrap(x: np.ndarray, bits: int) -> np.ndarray:
    if bits == 64:
        return x
    half = np.int64(1) << (bits - 1)
    return ((x + half) & ((np.int64(1) << bits) - 1)) - half


def _int_accumulate(a: np.ndarray, b: np.ndarray, acc: Accumulator) -> np.ndarray:
    """exact (int64) or int<P> sums of int64 operand values."""
    if acc.kind not in ("exact", "int"):
        raise ValueError(f"integer operands take an integer accumulator (exact, int<P>), not {acc.name}")
    peak = _peak(a, b)
    if acc.kind == "exact" or peak <= acc.max_value:  # no partial sum can reach the limits
        return _int_exact(a, b).astype(_int_dtype(acc), copy=False)
    out = np.empty((a.shape[0], b.shape[1]), dtype=np.int64)
    if acc.overflow == "saturate":
        kernels.int_saturating(a, b, np.int64(acc.min_value), np.int64(acc.max_value), out)
        return out.astype(_int_dtype(acc))
    if peak < 2.0**63:
        out = _int_exact(a, b)
    else:  # the products themselves could pass int64: wrap while summing
        kernels.int_wrapping64(a, b, out)
    return _wrap(out, acc.bits).astype(_int_dtype(acc))


def _peak(a: np.ndarray, b: np.ndarray) -> float:
    """A bound on every partial sum's magnitude: K * max|a| * max|b|."""
    return float(np.abs(a).max(initial=0)) * float(np.abs(b).max(initial=0)) * a.shape[1]


def _lowest_bit_exponent(values: np.ndarray) -> int:
    """The exponent of the lowest set bit over all nonzero values (all are exact dyadic rationals)."""
    nonzero = np.abs(values[values != 0])
    if nonzero.size == 0:
        return 0
    mantissa, exponent = np.frexp(nonzero)
    integers = (mantissa * 2.0**53).astype(np.int64)
    lowest = np.frexp((integers & -integers).astype(np.float64))[1] - 1
    return int((exponent - 53 + lowest).min())


def _top_exponent(values: np.ndarray) -> int:
    peak = float(np.abs(values).max(initial=0))
    return int(np.frexp(peak)[1]) if peak else 0


def float64_sums_exact(a: np.ndarray, b: np.ndarray, k: int) -> bool:
    """Whether float64 holds exactly, in any order, every partial sum of k products of a value of `a` and one
    of `b` (float64 values that are exact dyadic rationals: a GEMM's or a convolution's operands): every product
    is a multiple of 2^quantum, and k of them stay below 2^53 of those."""
    quantum = _lowest_bit_exponent(a) + _lowest_bit_exponent(b)
    peak = float(np.abs(a).max(initial=0)) * float(np.abs(b).max(initial=0)) * k
    return peak < np.ldexp(1.0, 53 + quantum)


def _float_exact(a: Operand, b: Operand) -> np.ndarray:
    av, bv = a.values, b.values
    k = av.shape[1]
    out = np.empty((av.shape[0], bv.shape[1]), dtype=np.float32)
    if k == 0:
        out[:] = 0
        return out
    if float64_sums_exact(av, bv, k):
        return (av @ bv).astype(np.float32)
    quantum = _lowest_bit_exponent(av) + _lowest_bit_exponent(bv)
    if a.significand_bits + b.significand_bits > 30:
        raise ValueError("exact float accumulation needs products of at most 30 significant bits")
    top = _top_exponent(av) + _top_exponent(bv) + int(np.ceil(np.log2(k + 1)))
    n_limbs = (top - quantum) // kernels.LIMB + 3
    kernels.exact_float(np.ascontiguousarray(av), np.ascontiguousarray(bv), quantum, n_limbs, out)
    return out


def _exponents(values32: np.ndarray, fmt) -> np.ndarray:
    """Each operand's exponent as the MMA aligns it: floor(log2 |x|), subnormals at the format's emin (as float32
    whole numbers: what the kernel compares fastest).
    Read from the float32 bits (every <= 16-bit minifloat is a float32); float32 subnormals read -127, which
    the clamp at emin (>= -126) takes care of."""
    if not isinstance(fmt, FloatFormat):
        raise ValueError(f"tensor-core accumulators take minifloat operands (fp8, bf16, fp16, ...), not {fmt.name}")
    exponent = ((values32.view(np.int32) >> 23) & 0xFF).astype(np.float32) - np.float32(127)
    np.maximum(exponent, np.float32(fmt.emin), out=exponent)
    exponent[values32 == 0] = kernels.ZERO_EXPONENT
    return exponent


def _tensor_core(a32, ea, a_fmt, b32, eb, b_fmt, acc: Accumulator) -> np.ndarray:
    """The tensor-core kernel on float32 operand values and their exponents (float32 result)."""
    dtype, lowest, highest = _tensor_core_sum_type(a_fmt, b_fmt, acc)
    out = np.empty((a32.shape[0], b32.shape[1]), dtype=np.float32)
    kernels.tensor_core(a32.astype(dtype, copy=False), ea, b32.astype(dtype, copy=False), eb, acc.chunk,
                        acc.fraction_bits, acc.accumulator_mbits, acc.promote_every,
                        split_bounds(a32.shape[1], acc.split_k, acc.split_tile), lowest, highest, out)
    return out


@lru_cache(maxsize=32)
def _code_tables(fmt: FloatFormat):
    """(float32 value, exponent, finite) of every code of a minifloat of <= 16 bits: tensor-core operands
    straight from their codes by table lookup (NaN and infinite codes, marked not finite, take the checked path)."""
    with np.errstate(invalid="ignore"):
        values = decode_table(fmt).astype(np.float32)
    finite = np.isfinite(values)
    return values, _exponents(np.where(finite, values, 0).astype(np.float32), fmt), finite


def _tensor_core_codes(a_codes, a_fmt, b_codes, b_fmt, acc: Accumulator):
    """The tensor-core product of minifloat codes, through their tables; None if a code is not finite."""
    operands = []
    for codes, fmt in ((a_codes, a_fmt), (b_codes, b_fmt)):
        values, exponents, finite = _code_tables(fmt)
        codes = check_codes(codes, fmt)
        if not finite[codes].all():
            return None
        operands += [np.ascontiguousarray(values[codes]), np.ascontiguousarray(exponents[codes]), fmt]
    return _tensor_core(*operands, acc)


def _tensor_core_sum_type(fa, fb, acc: Accumulator):
    """(dtype, lowest, highest): float32 where it holds the products, their alignment and a chunk's sum exactly
    (FP8: twice the speed of float64), else float64; the alignment's power of two is kept within the type's
    normal range (a chunk needing more has only products that truncate to zero, or none)."""
    product_bits = fa.mbits + fb.mbits + 2
    smallest = fa.emin - fa.mbits + fb.emin - fb.mbits  # the lowest product's exponent
    largest = fa.emax + fb.emax + 2
    chunk_sum_bits = acc.fraction_bits + 2 + int(np.ceil(np.log2(acc.chunk + 1)))
    if product_bits <= 24 and chunk_sum_bits <= 24 and smallest >= -126 and largest <= 127 and \
            acc.fraction_bits - smallest <= 126:
        return np.float32, -126, 127
    return np.float64, -1022, 1023


def split_bounds(k: int, split_k: int, split_tile: int) -> np.ndarray:
    """Where cuBLAS's split-K cuts K: ceil(tiles / S) tiles of `split_tile` per part, the last part shorter."""
    tiles = -(-k // split_tile)
    per_part = -(-tiles // split_k)
    bounds = sorted({min(s * per_part * split_tile, k) for s in range(split_k)} | {k})
    return np.array(bounds if k else [0, 0], dtype=np.int64)


def _float_accumulate(a: Operand, b: Operand, acc: Accumulator) -> np.ndarray:
    if acc.kind == "exact":
        return _float_exact(a, b)
    out = np.empty((a.values.shape[0], b.values.shape[1]), dtype=np.float32)
    if acc.kind == "float32":
        kernel = kernels.float32_sequential if acc.order == "sequential" else kernels.float32_pairwise
        kernel(a.values.astype(np.float32), b.values.astype(np.float32), out)
        return out
    if acc.kind == "tensor_core":
        a32, b32 = (np.ascontiguousarray(op.values, dtype=np.float32) for op in (a, b))
        return _tensor_core(a32, _exponents(a32, a.fmt), a.fmt, b32, _exponents(b32, b.fmt), b.fmt, acc)
    raise ValueError(f"float operands take exact, fp32, fp32_pairwise or a tensor-core accumulator, not {acc.name}")


# ---- epilogue -------------------------------------------------------------------------------------------------
def _scale(scale, length, what) -> np.ndarray | None:
    if scale is None:
        return None
    arr = np.asarray(scale, dtype=np.float64)
    if arr.size == 1:
        return arr.reshape(()).astype(np.float32)
    arr = arr.reshape(-1)
    if arr.size != length:
        raise ValueError(f"{what} must be a scalar or have {length} entries (one per {'row' if what == 'a_scale' else 'column'}), "
                         f"got {arr.size}")
    return arr.astype(np.float32)


def epilogue(acc: np.ndarray, a_scale=None, b_scale=None, out_format=None, *, channel_axis=-1) -> np.ndarray:
    """What cuBLAS writes: the float32 accumulator times the scales, rounded once to out_format.

    acc is (M x N), a_scale per row or scalar, b_scale per column or scalar; or any N-D accumulator (a
    convolution's NCHW output) with a scalar a_scale and b_scale per channel along `channel_axis`."""
    out_format = "fp32" if out_format is None else str(out_format).lower()
    if out_format not in OUT_FORMATS:
        raise ValueError(f"out_format must be one of {', '.join(OUT_FORMATS)}, got {shown(out_format)}")
    axis = channel_axis % acc.ndim
    n = acc.shape[axis]
    sa = _scale(a_scale, acc.shape[0] if acc.ndim == 2 and axis == 1 else 1, "a_scale")
    sb = _scale(b_scale, n, "b_scale")
    view = [1] * acc.ndim
    view[axis] = -1
    with np.errstate(over="ignore", invalid="ignore"):
        if sa is None and sb is None:
            out = acc.astype(np.float32)
        elif (sa is None or sa.ndim == 0) and (sb is None or sb.ndim == 0):
            one = np.float32(1.0)
            out = acc.astype(np.float32) * np.float32((one if sa is None else sa) * (one if sb is None else sb))
        else:
            cols = np.float32(1.0) if sb is None else sb.reshape(view) if sb.ndim else sb
            out = acc.astype(np.float32) * cols
            if sa is not None:
                out *= sa.reshape(-1, 1) if sa.ndim else sa
    out = out.astype(np.float32, copy=False)
    if out_format == "fp32":
        return out
    fmt = get_format(out_format)
    return decode(encode(out, fmt), fmt)


# ---- public API ----------------------------------------------------------------------------------------------
def _check_2d(x, what):
    shape = x.elements.shape if isinstance(x, BlockEncoded) else np.shape(x)
    if len(shape) != 2:
        raise ValueError(f"{what} must be a 2-D array of codes, got shape {tuple(shape)}")
    return shape


def matmul(a, b, *, a_format, b_format, accumulator="exact", a_scale=None, b_scale=None, out_format=None,
           a_zero_point=0, b_zero_point=0) -> np.ndarray:
    """a @ b on codes, summed by `accumulator`; see the module docstring for what comes back."""
    (m, k), (k_b, n) = _check_2d(a, "a"), _check_2d(b, "b")
    if k != k_b:
        raise ValueError(f"inner dimensions differ: a is {m} x {k}, b is {k_b} x {n}")
    acc = get_accumulator(accumulator)
    a_fmt, b_fmt = get_format(a_format), get_format(b_format)
    fast = _small_int_blas(a, b, a_fmt, b_fmt, a_zero_point, b_zero_point, acc)
    if fast is not None:
        return fast
    if (isinstance(a_fmt, BinaryFormat) and isinstance(b_fmt, BinaryFormat) and acc.kind in ("exact", "int")
            and (acc.kind == "exact" or k <= acc.max_value)
            and not (np.any(np.asarray(a_zero_point)) or np.any(np.asarray(b_zero_point)))):  # |every partial sum| <= K: nothing to wrap or clamp
        return xnor.binary_matmul(a, b).astype(_int_dtype(acc), copy=False)  # bit-packed XNOR-popcount
    if _minifloat_pair(a_fmt, b_fmt, acc) and not (np.any(np.asarray(a_zero_point)) or np.any(np.asarray(b_zero_point))):
        raw = _tensor_core_codes(a, a_fmt, b, b_fmt, acc)
        if raw is not None:
            return epilogue(raw, a_scale, b_scale, out_format)
    ops = (operand(a, a_fmt, zero_point=a_zero_point, block_axis=1, what="a"),
           operand(b, b_fmt, zero_point=b_zero_point, block_axis=0, what="b"))
    return accumulate(*ops, acc, a_scale=a_scale, b_scale=b_scale, out_format=out_format)


def _minifloat_pair(a_fmt, b_fmt, acc: Accumulator) -> bool:
    """Tensor-core operands that can run from their codes' tables (minifloats of <= 16 bits whose code 0 is +0,
    so that im2col may pad with it)."""
    return acc.kind == "tensor_core" and all(isinstance(f, FloatFormat) and f.bits <= 16 and f.has_zero
                                             for f in (a_fmt, b_fmt))


def accumulate(a: Operand, b: Operand, accumulator, *, a_scale=None, b_scale=None, out_format=None) -> np.ndarray:
    """The accumulated product of two decoded operands (matmul and conv2d both end here)."""
    acc = get_accumulator(accumulator)
    if a.integer != b.integer:
        raise ValueError(f"mixed integer and float operands ({a.fmt.name} x {b.fmt.name}) are not a GEMM "
                         "any device runs: decode one side or quantize both alike")
    if a.integer:
        if a_scale is not None or b_scale is not None or out_format is not None:
            raise ValueError("integer GEMMs return the accumulator: requantize it with emulator.requantize")
        return _int_accumulate(a.values, b.values, acc)
    if isinstance(a.fmt, BlockFormat) or isinstance(b.fmt, BlockFormat):
        if acc.kind == "tensor_core":
            raise ValueError("block-scaled tensor-core MMA (sm100) is not modelled: use exact, fp32 or fp32_pairwise")
        if a.tensor_scale != 1.0 or b.tensor_scale != 1.0:
            a_scale = np.float32(a.tensor_scale) * (np.float32(1.0) if a_scale is None else np.asarray(a_scale, np.float32))
            b_scale = np.float32(b.tensor_scale) * (np.float32(1.0) if b_scale is None else np.asarray(b_scale, np.float32))
    return epilogue(_float_accumulate(a, b, acc), a_scale, b_scale, out_format)


def conv2d(x, w, *, x_format=None, w_format=None, stride=1, padding=0, dilation=1, groups=1, accumulator="exact",
           x_zero_point=0, w_zero_point=0, padding_value=None, x_scale=None, w_scale=None,
           out_format=None) -> np.ndarray:
    """NCHW codes x OIHW codes -> NCHW accumulators (float formats: float32 after the epilogue, w_scale per filter).

    padding_value is the value padded taps hold: None is 0 (the zero point, as ConvInteger pads); binary
    activations also take +1 or -1 (Larq's +1 padding, dabnn's -1).
    """
    decoded = isinstance(x, Operand) or isinstance(w, Operand)
    x_fmt = x.fmt if isinstance(x, Operand) else get_format(x_format)
    w_fmt = w.fmt if isinstance(w, Operand) else get_format(w_format)
    acc = get_accumulator(accumulator)
    geometry = dict(stride=stride, padding=padding, dilation=dilation)
    n, _, oh, ow = conv_shape(np.shape(x.values if isinstance(x, Operand) else x),
                              np.shape(w.values if isinstance(w, Operand) else w), groups, **geometry)
    if not decoded and isinstance(w_fmt, BinaryFormat) and acc.kind == "exact" and not np.any(
            np.asarray(x_zero_point)) and (isinstance(x_fmt, BinaryFormat) or (isinstance(x_fmt, IntFormat)
                                                                                and padding_value is None)):
        return xnor.binary_conv2d(x, w, groups=groups, padding_value=padding_value,
                                  x_format=None if isinstance(x_fmt, BinaryFormat) else x_fmt, **geometry)
    if padding_value is not None and not isinstance(x_fmt, BinaryFormat):
        raise ValueError("padding_value applies to binary activations; integer padding is the zero point")
    if padding_value not in xnor.BINARY_PADDING:
        raise ValueError(f"binary padding_value must be None (zero padding), 1 or -1, got {shown(padding_value)}")
    if not decoded and groups == 1 and conv_geometry((1, 1), **geometry)[1] == (1, 1):
        by_taps = _int_conv_by_taps(x, w, x_fmt, w_fmt, x_zero_point, w_zero_point, acc,
                                    *conv_geometry((1, 1), **geometry)[2:])
        if by_taps is not None:
            return by_taps
    if (not decoded and isinstance(x_fmt, IntFormat) and isinstance(w_fmt, IntFormat)
            and np.ndim(x_zero_point) == 0 and np.ndim(w_zero_point) == 0):  # im2col on the codes, one BLAS call a group
        fill = int(x_zero_point) & ((1 << x_fmt.bits) - 1)  # padded taps hold the zero point's code
        results = []
        for cols, filters, _, _ in conv_groups(check_codes(x, x_fmt), check_codes(w, w_fmt), groups, fill=fill,
                                               **geometry):
            results.append(_small_int_blas(cols, filters, x_fmt, w_fmt, x_zero_point, w_zero_point, acc))
            if results[-1] is None:
                break
        else:
            return to_nchw(results, n, oh, ow)
    if not decoded and _minifloat_pair(x_fmt, w_fmt, acc) and padding_value is None and not (
            np.any(np.asarray(x_zero_point)) or np.any(np.asarray(w_zero_point))):  # im2col on the codes (code 0 is +0)
        results = []
        per_filter = w_scale is not None and np.size(w_scale) > 1
        for cols, filters, _, channels in conv_groups(check_codes(x, x_fmt), check_codes(w, w_fmt), groups, fill=0,
                                                       **geometry):
            raw = _tensor_core_codes(cols, x_fmt, filters, w_fmt, acc)
            if raw is None:
                break
            results.append(epilogue(raw, x_scale, np.asarray(w_scale).reshape(-1)[channels] if per_filter else w_scale,
                                    out_format))
        else:
            return to_nchw(results, n, oh, ow)
    xo = x if isinstance(x, Operand) else operand(x, x_fmt, zero_point=_per_channel(x_zero_point, 1), what="x")
    wo = w if isinstance(w, Operand) else operand(w, w_fmt, zero_point=_per_channel(w_zero_point, 0), what="w")
    per_filter = w_scale is not None and np.size(w_scale) > 1
    results = []
    for cols, filters, _, channels in conv_groups(xo.values, wo.values, groups, fill=padding_value or 0, **geometry):
        results.append(accumulate(dataclasses.replace(xo, values=cols), dataclasses.replace(wo, values=filters),
                                  acc, a_scale=x_scale, out_format=out_format,
                                  b_scale=np.asarray(w_scale).reshape(-1)[channels] if per_filter else w_scale))
    return to_nchw(results, n, oh, ow)


def _per_channel(zero_point, axis):
    """A zero point per tensor (scalar) or per channel (vector along `axis` of NCHW / OIHW), broadcastable."""
    arr = np.asarray(zero_point, dtype=np.int64)
    if arr.ndim == 0 or arr.size == 1:
        return arr.reshape(())
    shape = [1, 1, 1, 1]
    shape[axis] = arr.size
    return arr.reshape(shape)
