"""Packing of narrow codes into bytes and words, least significant bit first.

Element i of a `bits`-wide code stream occupies bits [i*bits, (i+1)*bits) of a little-endian bit
stream, and byte j holds stream bits [8j, 8j+8). So 4-bit codes pack two per byte with the even
element in the low nibble; 6-bit codes pack four per three bytes (element 0 in bits 0..5 of byte 0);
1-bit codes pack eight per byte with element 0 in bit 0. pack_bits64 puts 64 one-bit codes in a
uint64, element 0 in bit 0, which on a little-endian machine is the byte packing viewed as uint64.
The last byte (or word) is padded with zero bits.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .arguments import integer, numeric_array, shown
from .codec import check_codes

PACKABLE_WIDTHS = tuple(range(1, 9))


def _check_width(bits):
    integer(bits, "pack width bits", PACKABLE_WIDTHS[0], PACKABLE_WIDTHS[-1])


@njit(parallel=True, cache=True)
def _pack(codes, bits, out):
    # each output byte gathers the stream bits of the (at most 9) codes that overlap it
    n = codes.size
    for j in prange(out.size):
        byte = 0
        first = (8 * j) // bits
        last = min((8 * j + 7) // bits, n - 1)
        for i in range(first, last + 1):
            offset = i * bits - 8 * j
            value = np.int64(codes[i])
            byte |= (value << offset) if offset >= 0 else (value >> (-offset))
        out[j] = byte & 0xFF


@njit(parallel=True, cache=True)
def _unpack(packed, bits, out):
    mask = (1 << bits) - 1
    for i in prange(out.size):
        start = i * bits
        j = start >> 3
        word = np.int64(packed[j])
        if j + 1 < packed.size:
            word |= np.int64(packed[j + 1]) << 8
        out[i] = (word >> (start & 7)) & mask


def pack(codes, bits: int) -> np.ndarray:
    """Pack the low `bits` bits of each code (1-D) into a uint8 stream."""
    _check_width(bits)
    arr = np.ascontiguousarray(check_codes(codes, _Width(bits))).reshape(-1)
    out = np.empty((arr.size * bits + 7) // 8, dtype=np.uint8)
    _pack(arr, bits, out)
    return out


def unpack(packed, bits: int, count: int) -> np.ndarray:
    """The first `count` codes of a uint8 stream made by pack()."""
    _check_width(bits)
    count = integer(count, "count", 0)
    packed = numeric_array(packed, "packed")
    if packed.dtype != np.uint8 and packed.size and (packed.dtype.kind not in "iu" or packed.min() < 0 or
                                                     packed.max() > 255):
        raise ValueError(f"packed must hold bytes (integers 0..255), got {packed.dtype} values from "
                         f"{shown(packed.min())} to {shown(packed.max())}")
    packed = np.ascontiguousarray(packed.astype(np.uint8)).reshape(-1)
    if count * bits > packed.size * 8:
        raise ValueError(f"{packed.size} bytes hold at most {packed.size * 8 // bits} codes of {bits} bits, asked for {count}")
    out = np.empty(count, dtype=np.uint8)
    _unpack(packed, bits, out)
    return out


def pack_bits64(bits01) -> np.ndarray:
    """Pack 0/1 codes, 64 per uint64, element 0 in bit 0."""
    packed = pack(bits01, 1)
    padded = np.zeros(-(-packed.size // 8) * 8, dtype=np.uint8)
    padded[: packed.size] = packed
    return padded.view("<u8").astype(np.uint64)


def unpack_bits64(words, count: int) -> np.ndarray:
    words = numeric_array(words, "words")
    if words.dtype.kind not in "iu" or (words.size and words.dtype.kind == "i" and words.min() < 0):
        raise ValueError(f"words must be non-negative 64-bit integers, got {words.dtype}")
    return unpack(np.ascontiguousarray(np.asarray(words, dtype=np.uint64)).astype("<u8").view(np.uint8), 1, count)


class _Width:
    """Stands in for a format in check_codes: codes must fit `bits` bits."""

    def __init__(self, bits):
        self.bits = bits
        self.name = f"{bits}-bit codes"


def reference_pack(codes, bits: int) -> bytes:
    """Plain reference: build the bit stream as one Python integer."""
    stream = 0
    for i, code in enumerate(codes):
        stream |= int(code) << (i * bits)
    return stream.to_bytes((len(codes) * bits + 7) // 8, "little")
