"""simdq's bit-accurate number emulator: formats, rounding, encode/decode, quantization, packing.

Depends on numpy and numba only.
"""

from .codec import decode, encode
from .formats import (
    PRESETS,
    BinaryFormat,
    BlockFormat,
    FloatFormat,
    IntFormat,
    get_format,
    list_formats,
)
from .rounding import ROUNDING_MODES

__all__ = [
    "PRESETS", "ROUNDING_MODES", "BinaryFormat", "BlockFormat", "FloatFormat", "IntFormat",
    "decode", "encode", "get_format", "list_formats",
]
