"""simdq's bit-accurate number emulator: formats, rounding, encode/decode, quantization, packing.

Depends on numpy and numba only.
"""

from .affine import dequantize, fake_quantize, quantize
from .block import BlockEncoded, block_decode, block_encode
from .codec import decode, encode
from .formats import PRESETS, BinaryFormat, BlockFormat, FloatFormat, IntFormat, get_format, list_formats
from .packing import pack, pack_bits64, unpack, unpack_bits64
from .rounding import ROUNDING_MODES

__all__ = [
    "PRESETS", "ROUNDING_MODES", "BinaryFormat", "BlockEncoded", "BlockFormat", "FloatFormat", "IntFormat",
    "block_decode", "block_encode", "decode", "dequantize", "encode", "fake_quantize", "get_format",
    "list_formats", "pack", "pack_bits64", "quantize", "unpack", "unpack_bits64",
]
