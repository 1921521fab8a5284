"""Plain scalar references, written for obviousness rather than speed (gfloat's style).

Minifloat encode enumerates every finite value of the format as an exact Fraction and picks the
neighbours of x by bisection; nothing here shares code with the Numba kernels, so the tests that
compare the two check one against an independent statement of the same rules.
"""

from __future__ import annotations

import bisect
import math
from fractions import Fraction
from functools import lru_cache

from ..formats import BinaryFormat, FloatFormat, IntFormat
from ..rounding import random_bits_reference, seed_key


def _is_odd(n: int) -> bool:
    return n % 2 == 1


def _rounds_away(magnitude: Fraction, low: Fraction, high: Fraction, low_code_odd: bool, rounding: str,
                 negative: bool, random_bits: int, sr_bits: int) -> bool:
    """True if a magnitude strictly between the magnitudes low and high rounds to high."""
    delta = (magnitude - low) / (high - low)
    if rounding == "rne":
        return delta > Fraction(1, 2) or (delta == Fraction(1, 2) and low_code_odd)
    if rounding == "rna":
        return delta >= Fraction(1, 2)
    if rounding == "stochastic":
        return random_bits + math.floor(delta * 2**sr_bits) >= 2**sr_bits
    return (rounding == "rtp" and not negative) or (rounding == "rtn" and negative)


@lru_cache(maxsize=None)
def _finite_values(fmt: FloatFormat) -> tuple:
    """Sorted finite values and, for each, the code that encodes it (zero: the +0 code)."""
    by_value = {}
    for code in range(1 << fmt.bits):
        value = reference_decode_minifloat(fmt, code)
        if isinstance(value, Fraction) and value not in by_value:
            by_value[value] = code
    values = sorted(by_value)
    return values, [by_value[v] for v in values]


def reference_decode_minifloat(fmt: FloatFormat, code: int):
    """Exact Fraction, or 'nan' / '+inf' / '-inf', of a code."""
    negative = fmt.signed and bool(code & fmt.sign_mask)
    mag = code & ((1 << fmt.magnitude_bits) - 1)
    exp_field, mantissa = mag >> fmt.mbits, mag & ((1 << fmt.mbits) - 1)
    if fmt.special == "fnuz" and negative and mag == 0:
        return "nan"
    if fmt.special == "ieee" and exp_field == (1 << fmt.ebits) - 1:
        return "nan" if mantissa else ("-inf" if negative else "+inf")
    if fmt.special == "fn" and mag == (1 << fmt.magnitude_bits) - 1:
        return "nan"
    value = fmt.magnitude_value(mag)
    return -value if negative else value


def reference_encode_minifloat(fmt: FloatFormat, x: float, rounding: str = "rne", random_bits: int = 0,
                               sr_bits: int = 32) -> int | None:
    """Code of float x; None where the format cannot take it (NaN into a NaN-less format)."""
    sign_mask = fmt.sign_mask
    negative = math.copysign(1.0, x) < 0
    positive_nan = fmt.nan_code
    if math.isnan(x):
        if fmt.has_nan:
            return positive_nan | sign_mask if (negative and fmt.special in ("ieee", "fn") and fmt.signed) else positive_nan
        if fmt.on_nan == "zero":
            return 0 if negative else sign_mask
        return None
    if not fmt.signed and (negative or (x == 0 and not fmt.has_zero)):
        return fmt.nan_code
    values, codes = _finite_values(fmt)
    largest = values[-1]

    def overflow_code(finite_input: bool):
        toward_zero = rounding == "rtz" or (rounding == "rtp" and negative) or (rounding == "rtn" and not negative)
        if fmt.overflow == "saturate" or (finite_input and toward_zero):
            return codes[-1] | (sign_mask if negative else 0)
        if fmt.overflow == "inf":
            return fmt.inf_code | (sign_mask if negative else 0)
        return positive_nan | sign_mask if (negative and fmt.special in ("ieee", "fn")) else positive_nan

    if math.isinf(x):
        return overflow_code(False)
    if x == 0:
        return sign_mask if (negative and fmt.has_negative_zero) else 0
    magnitude = abs(Fraction(x))
    sign = sign_mask if negative else 0
    if magnitude > largest:
        # beyond max finite: round as if the exponent range were unbounded
        next_up = largest + Fraction(2) ** (math.floor(math.log2(largest)) - fmt.mbits)
        if magnitude >= next_up or _rounds_away(magnitude, largest, next_up, _is_odd(codes[-1]), rounding,
                                                negative, random_bits, sr_bits):
            return overflow_code(True)
        return codes[-1] | sign
    i = bisect.bisect_left(values, magnitude)
    if values[i] == magnitude:
        code = codes[i]
    elif i == 0:  # below the smallest value of a format without zero
        code = codes[0]
    else:
        up = _rounds_away(magnitude, values[i - 1], values[i], _is_odd(codes[i - 1]), rounding, negative,
                          random_bits, sr_bits)
        code = codes[i] if up else codes[i - 1]
    if code == 0 and not fmt.has_negative_zero:
        return 0
    return code | sign


def reference_round_integer(x: float, rounding: str = "rne", random_bits: int = 0, sr_bits: int = 32) -> int:
    exact = Fraction(x)
    low = math.floor(abs(exact))
    if abs(exact) == low:
        magnitude = low
    else:
        magnitude = low + _rounds_away(abs(exact), Fraction(low), Fraction(low + 1), _is_odd(low), rounding,
                                       exact < 0, random_bits, sr_bits)
    return -magnitude if exact < 0 else magnitude


def reference_encode_int(fmt: IntFormat, x: float, rounding: str = "rne", random_bits: int = 0, sr_bits: int = 32) -> int:
    if math.isnan(x):
        raise ValueError("NaN")
    if math.isinf(x):
        value = fmt.qmax if x > 0 else fmt.qmin
    else:
        value = min(max(reference_round_integer(x, rounding, random_bits, sr_bits), fmt.qmin), fmt.qmax)
    return value & ((1 << fmt.bits) - 1)


def reference_encode_binary(fmt: BinaryFormat, x: float) -> int:
    return 1 if (x < 0 or (fmt.zero == "-1" and x == 0)) else 0


def reference_encode(fmt, values, rounding="rne", seed=None, sr_bits=32) -> list:
    """Encode a sequence element by element, drawing the same random bits as the kernels."""
    key = seed_key(seed) if rounding == "stochastic" else 0
    out = []
    for index, x in enumerate(values):
        bits = random_bits_reference(key, index, sr_bits) if rounding == "stochastic" else 0
        x = float(x)
        if isinstance(fmt, IntFormat):
            out.append(reference_encode_int(fmt, x, rounding, bits, sr_bits))
        elif isinstance(fmt, BinaryFormat):
            out.append(reference_encode_binary(fmt, x))
        else:
            out.append(reference_encode_minifloat(fmt, x, rounding, bits, sr_bits))
    return out

