"""simdq's bit-accurate number emulator: formats, rounding, encode/decode, quantization, packing, and the
arithmetic: accumulators, GEMM and convolution kernels, binary XNOR-popcount, requantization.

Depends on numpy and numba only. The formats load eagerly; the Numba kernels load on first use, so that
code needing only format descriptions (the cost model) does not pay for importing numba.
"""

import importlib

from .accumulators import ACCUMULATORS, Accumulator, get_accumulator, list_accumulators
from .formats import (PRESETS, BinaryFormat, BlockFormat, FloatFormat, IntFormat, ResidualBinaryFormat, get_format,
                      list_formats)

_LAZY = {
    "ROUNDING_MODES": "rounding",
    "BlockEncoded": "block", "block_decode": "block", "block_encode": "block",
    "decode": "codec", "encode": "codec",
    "dequantize": "affine", "fake_quantize": "affine", "quantize": "affine",
    "matmul": "gemm", "conv2d": "gemm",
    "binary_matmul": "xnor", "binary_conv2d": "xnor", "bitplane_matmul": "xnor",
    "REQUANT_CONVENTIONS": "requant", "requantize": "requant",
    "ResidualBinary": "residual", "residual_binarize": "residual", "residual_dequantize": "residual",
    "residual_planes": "residual",
    "pack": "packing", "pack_bits64": "packing", "unpack": "packing", "unpack_bits64": "packing",
}

__all__ = [
    "ACCUMULATORS", "Accumulator", "REQUANT_CONVENTIONS", "binary_conv2d", "binary_matmul", "bitplane_matmul",
    "conv2d", "get_accumulator", "list_accumulators", "matmul", "requantize",
    "PRESETS", "ROUNDING_MODES", "BinaryFormat", "BlockEncoded", "BlockFormat", "FloatFormat", "IntFormat",
    "block_decode", "block_encode", "decode", "dequantize", "encode", "fake_quantize", "get_format",
    "list_formats", "pack", "pack_bits64", "quantize", "unpack", "unpack_bits64",
    "ResidualBinary", "ResidualBinaryFormat", "residual_binarize", "residual_dequantize", "residual_planes",
]


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'emulator' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
