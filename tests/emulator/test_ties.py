"""Exact ties and exact stochastic-rounding boundaries, drawn on purpose (a random float almost never is one).

Expected codes are worked out by hand from the format's value grid; the Numba kernels and the plain
Fraction reference must both give them.
"""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import emulator as em
from emulator.reference.codec import reference_decode_minifloat, reference_encode
from emulator.rounding import random_bits_reference, seed_key

TIE_FORMATS = ["e2m1", "e4m3fn", "e5m2", "e3m2", "e2m3", "e4m3fnuz"]


def grid(fmt):
    """The format's finite non-negative values, ascending, each with its code."""
    values = {}
    for code in range(1 << fmt.bits):
        value = reference_decode_minifloat(fmt, code)
        if isinstance(value, Fraction) and value >= 0 and value not in values:
            values[value] = code
    return sorted(values.items())


def both(x, fmt, **options):
    fmt = em.get_format(fmt)
    kernel = em.encode(x, fmt, **options).tolist()
    reference = reference_encode(fmt, x, options.get("rounding", "rne"), options.get("seed"),
                                 options.get("sr_bits", 32))
    return kernel, reference


@pytest.mark.parametrize("name", TIE_FORMATS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_midpoint_rounds_to_the_even_code(name, dtype):
    fmt = em.get_format(name)
    values = grid(fmt)
    ties, expected = [], []
    for (low, low_code), (high, high_code) in zip(values, values[1:]):
        ties.append(float((low + high) / 2))
        expected.append(low_code if low_code % 2 == 0 else high_code)  # adjacent codes: one of them is even
    kernel, reference = both(np.array(ties, dtype), fmt)
    assert kernel == expected
    assert reference == expected
    # ties away from zero pick the larger magnitude every time
    kernel, reference = both(np.array(ties, dtype), fmt, rounding="rna")
    assert kernel == reference == [high for (_, _), (_, high) in zip(values, values[1:])]


def test_e2m1_ties_by_hand():
    # e2m1 magnitudes 0, 0.5, 1, 1.5, 2, 3, 4, 6 are codes 0..7; a tie goes to the even code
    ties = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, -0.75, -5.0], np.float32)
    expected = [0, 2, 2, 4, 4, 6, 6, 0b1010, 0b1110]
    kernel, reference = both(ties, "e2m1")
    assert kernel == reference == expected


def test_integer_halves_round_to_even():
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 6.5, 7.5], np.float64)
    expected = [-2, -2, 0, 0, 2, 2, 6, 7]  # 7.5 -> 8 saturates to int4's 7
    kernel, reference = both(x, "int4")
    as_signed = [c - 16 if c >= 8 else c for c in kernel]
    assert as_signed == expected
    assert reference == kernel


@st.composite
def ties(draw):
    """A format and an exact midpoint between two of its neighbouring values (either sign)."""
    fmt = em.get_format(draw(st.sampled_from(TIE_FORMATS)))
    values = grid(fmt)
    i = draw(st.integers(0, len(values) - 2))
    tie = (values[i][0] + values[i + 1][0]) / 2
    return fmt, float(tie) * draw(st.sampled_from([1, -1]))


@given(case=ties(), rounding=st.sampled_from(["rne", "rna", "rtz", "rtp", "rtn"]))
def test_kernels_equal_reference_on_drawn_ties(case, rounding):
    fmt, tie = case
    kernel, reference = both(np.array([tie], np.float64), fmt, rounding=rounding)
    assert kernel == reference


@pytest.mark.parametrize("sr_bits", [1, 2, 3])
@pytest.mark.parametrize("name", ["e2m1", "int4"])
def test_stochastic_rounding_boundary_is_inclusive(sr_bits, name):
    """Away from zero exactly when r + floor(delta * 2^bits) >= 2^bits (r: the element's random bits), so a
    value j/2^bits of the way up rounds up for the last j of the 2^bits random draws."""
    fmt, seed = em.get_format(name), 7
    low, high = (Fraction(1), Fraction(3, 2)) if name == "e2m1" else (Fraction(2), Fraction(3))
    low_code, high_code = em.encode(np.array([float(low), float(high)]), fmt).tolist()
    steps = 1 << sr_bits
    x, expected = [], []
    for index in range(512):
        j = index % steps
        x.append(float(low + (high - low) * Fraction(j, steps)))
        r = random_bits_reference(seed_key(seed), index, sr_bits)
        expected.append(high_code if r + j >= steps else low_code)
    kernel, reference = both(np.array(x), fmt, rounding="stochastic", seed=seed, sr_bits=sr_bits)
    assert kernel == expected
    assert reference == expected
