"""encode / decode: float arrays <-> format codes, element by element."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .arguments import flag
from ._kernels import codec as kernels
from .formats import BinaryFormat, BlockFormat, FloatFormat, IntFormat, ResidualBinaryFormat, get_format
from .rounding import DEFAULT_SR_BITS, RNE, rounding_code
from ._kernels.scalar import OVERFLOW_INF, OVERFLOW_NAN, OVERFLOW_SATURATE, decode_minifloat_bits

_OVERFLOW_CODES = {"saturate": OVERFLOW_SATURATE, "nan": OVERFLOW_NAN, "inf": OVERFLOW_INF}
_SPECIAL_CODES = {"ieee": 0, "fn": 1, "fnuz": 2, "finite": 3}


def code_dtype(bits: int) -> np.dtype:
    """The narrowest unsigned dtype that holds `bits`-bit codes."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if bits <= np.iinfo(dtype).bits:
            return np.dtype(dtype)
    raise ValueError(f"codes of {bits} bits do not fit 32 bits")


def float_input(x, what="x") -> np.ndarray:
    """x as an array, which must be float32 or float64 (Python floats become float64)."""
    arr = np.asarray(x)
    if arr.dtype not in (np.float32, np.float64):
        raise ValueError(f"{what} must be float32 or float64, got {arr.dtype}: cast it explicitly first")
    return arr


def minifloat_kernel_args(fmt: FloatFormat) -> tuple:
    return (
        fmt.mbits,
        fmt.emin,
        0 if fmt.has_zero else 1,
        fmt.max_code_magnitude,
        fmt.sign_mask,
        0 if fmt.signed else 1,
        0 if (fmt.subnormals or not fmt.has_zero) else 1,
        fmt.nan_code,
        1 if fmt.special in ("ieee", "fn") and fmt.signed else 0,
        fmt.inf_code,
        _OVERFLOW_CODES[fmt.overflow],
        1 if fmt.on_nan == "zero" else 0,
        1 if fmt.has_negative_zero else 0,
    )


def _reject_nans(arr: np.ndarray, fmt) -> None:
    # max propagates NaN: one pass without the temporary boolean array of isnan(arr).any()
    if arr.size and np.isnan(np.max(arr)):
        hint = " (pass on_nan='zero' for ml_dtypes' behaviour)" if isinstance(fmt, FloatFormat) else ""
        raise ValueError(f"{int(np.isnan(arr).sum())} NaN value(s) cannot be encoded as {fmt.name}, which has no NaN{hint}")


def _fast_path_args(flat: np.ndarray, fmt: FloatFormat, mode: int):
    """Arguments of the float32 RNE kernel (same results as the general kernel), or None where the
    general kernel must run."""
    if not (flat.dtype == np.float32 and mode == RNE and fmt.signed and fmt.has_zero and fmt.subnormals
            and 1 <= fmt.mbits <= 22 and fmt.emin >= -126 and fmt.emin - fmt.mbits >= -149):
        return None
    mask = lambda keep: 0xFFFFFFFF if keep else 0  # noqa: E731
    signed_nan = fmt.special in ("ieee", "fn")
    overflow = {"saturate": fmt.max_code_magnitude, "inf": fmt.inf_code, "nan": fmt.nan_code}[fmt.overflow]
    if fmt.nan_code >= 0:
        nan, nan_mask = fmt.nan_code, mask(signed_nan)
    else:  # NaN-less formats get here only with on_nan="zero": +NaN -> code 0x80.., -NaN -> 0
        nan, nan_mask = fmt.sign_mask, mask(True)
    return (fmt.mbits, fmt.emin, fmt.max_code_magnitude, 32 - fmt.bits, mask(fmt.has_negative_zero),
            overflow, mask(fmt.overflow != "nan" or signed_nan), nan, nan_mask)


def input_bits(flat: np.ndarray, fmt: FloatFormat) -> tuple:
    """(bit view, mantissa bits, bias) of a float array for the minifloat kernel."""
    if flat.dtype == np.float32 and fmt.emin >= -126:
        return flat.view(np.uint32), 23, 127
    return flat.astype(np.float64, copy=False).view(np.uint64), 52, 1023


def encode(x, fmt, *, rounding: str = "rne", seed=None, sr_bits: int = DEFAULT_SR_BITS,
           via_float32: bool = False) -> np.ndarray:
    """Codes of x in `fmt`, in the narrowest unsigned dtype, same shape as x.

    float64 input is rounded once, correctly; via_float32=True first rounds it to float32 (RNE), as
    ml_dtypes and torch casts do. rounding: rne (default), rtz, rna, rtp, rtn or stochastic (needs
    `seed`; sr_bits random bits per element). Integer formats round then saturate. NaN raises
    ValueError for formats without NaN (integers, and minifloats with on_nan="raise").
    """
    fmt = get_format(fmt)
    if isinstance(fmt, BlockFormat):
        raise ValueError(f"{fmt.name} is block-scaled: use emulator.block_encode")
    if isinstance(fmt, ResidualBinaryFormat):
        raise ValueError(f"{fmt.name} codes need their channels' scales: use emulator.residual_binarize")
    mode, key = rounding_code(rounding, seed, sr_bits)
    arr = float_input(x)
    if flag(via_float32, "via_float32"):
        arr = arr.astype(np.float32)
    flat = np.ascontiguousarray(arr).reshape(-1)
    out = np.empty(flat.size, dtype=code_dtype(fmt.bits))
    if isinstance(fmt, BinaryFormat):
        kernels.encode_binary_array(flat, out, fmt.zero == "-1")
    elif isinstance(fmt, IntFormat):
        _reject_nans(flat, fmt)
        kernels.encode_int_array(flat, out, fmt.qmin, fmt.qmax, (1 << fmt.bits) - 1, mode, key, sr_bits)
    else:
        if not fmt.has_nan and fmt.on_nan == "raise":
            _reject_nans(flat, fmt)
        fast = _fast_path_args(flat, fmt, mode)
        if fast is not None:
            kernels.encode_minifloat_f32_rne(flat.view(np.uint32), out, *fast)
        else:
            kernels.encode_minifloat_array(*input_bits(flat, fmt), out, *minifloat_kernel_args(fmt), mode, key,
                                           sr_bits)
    return out.reshape(arr.shape)


@lru_cache(maxsize=64)
def decode_table(fmt) -> np.ndarray:
    """float32 value of every code of a (non-block) format, indexed by code."""
    if isinstance(fmt, BinaryFormat):
        return np.array([1.0, -1.0], dtype=np.float32)
    if isinstance(fmt, IntFormat):
        codes = np.arange(1 << fmt.bits, dtype=np.int64)
        values = np.where(fmt.signed & (codes >= (1 << (fmt.bits - 1))), codes - (1 << fmt.bits), codes)
        return values.astype(np.float32)
    special = _SPECIAL_CODES[fmt.special]
    bits = np.array(
        [
            decode_minifloat_bits(c, fmt.ebits, fmt.mbits, fmt.bias, special, fmt.signed, fmt.has_zero, fmt.subnormals)
            for c in range(1 << fmt.bits)
        ],
        dtype=np.uint32,
    )
    table = bits.view(np.float32)
    table.flags.writeable = False
    return table


def check_codes(codes, fmt) -> np.ndarray:
    arr = np.asarray(codes)
    if arr.dtype.kind not in "ui":
        raise ValueError(f"codes must be an integer array, got {arr.dtype}")
    if arr.size and (arr.min() < 0 or int(arr.max()) >= (1 << fmt.bits)):
        raise ValueError(f"codes of {fmt.name} must lie in 0..{(1 << fmt.bits) - 1}")
    return arr


def decode(codes, fmt) -> np.ndarray:
    """float32 values of `codes` (any integer array) in `fmt`, same shape."""
    fmt = get_format(fmt)
    if isinstance(fmt, BlockFormat):
        raise ValueError(f"{fmt.name} is block-scaled: use emulator.block_decode")
    if isinstance(fmt, ResidualBinaryFormat):
        raise ValueError(f"{fmt.name} codes need their channels' scales: use emulator.residual_dequantize")
    arr = check_codes(codes, fmt)
    flat = np.ascontiguousarray(arr).reshape(-1)
    out = np.empty(flat.size, dtype=np.float32)
    if isinstance(fmt, IntFormat) and fmt.bits > 16:
        values = np.empty(flat.size, dtype=np.int64)
        kernels.decode_int_array(flat, fmt.bits, fmt.signed, values)
        out[:] = values  # float32 rounding of wide integers is the documented result
    else:
        kernels.lookup(flat, decode_table(fmt), out)
    return out.reshape(arr.shape)
