"""Fast kernels against the plain references, stochastic rounding, thread independence, errors, CLI."""

import subprocess
import sys

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import emulator as em
from emulator.reference.codec import reference_decode_minifloat, reference_encode
from simdq.cli import main
from simdq.cli.formats import formats_table

MODES = ["rne", "rtz", "rna", "rtp", "rtn", "stochastic"]


@st.composite
def float_formats(draw):
    ebits, mbits = draw(st.integers(1, 5)), draw(st.integers(0, 4))
    special = draw(st.sampled_from(["fn", "fnuz", "finite"] + (["ieee"] if mbits else [])))
    try:
        fmt = em.get_format(f"e{ebits}m{mbits}{special}")
    except ValueError:
        fmt = em.get_format("e2m1")
    overflow = draw(st.sampled_from(["saturate", {"ieee": "inf", "fn": "nan", "fnuz": "nan", "finite": "saturate"}[fmt.special]]))
    return em.get_format(fmt, overflow=overflow, subnormals=draw(st.booleans()), on_nan="zero")


@given(fmt=st.one_of(float_formats(), st.sampled_from(["e8m0", "int4", "uint3", "int8", "binary"]).map(em.get_format)),
       rounding=st.sampled_from(MODES), seed=st.integers(0, 2**40),
       values=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=1, max_size=30),
       exponent=st.integers(-12, 12), as_float64=st.booleans())
def test_kernels_equal_plain_reference(fmt, rounding, seed, values, exponent, as_float64):
    x = np.array(values, np.float64) * 2.0**exponent
    x = x if as_float64 else x.astype(np.float32)
    if fmt.kind in ("int",):
        x = x[~np.isnan(x)]
    seed = seed if rounding == "stochastic" else None
    got = em.encode(x, fmt, rounding=rounding, seed=seed)
    assert got.tolist() == reference_encode(fmt, x, rounding, seed)


@pytest.mark.parametrize("spec", ["e4m3fn", "e5m2", "e4m3fnuz", "e3m2", "e8m0", "e2m2fn", "e3m3ieee", "e2m1"])
def test_decode_table_equals_reference_for_every_code(spec):
    fmt = em.get_format(spec)
    got = em.decode(np.arange(1 << fmt.bits), fmt)
    for code, value in enumerate(got):
        expected = reference_decode_minifloat(fmt, code)
        if expected == "nan":
            assert np.isnan(value)
        else:
            assert value == float(expected)


def test_stochastic_rounding_is_unbiased_reproducible_and_thread_independent():
    x = np.full(400_000, 1.0 + 2.0**-5, np.float32)  # a quarter of the way from 1.0 to 1.125 in e4m3
    codes = em.encode(x, "e4m3fn", rounding="stochastic", seed=11)
    values = em.decode(codes, "e4m3fn")
    assert set(np.unique(values)) == {1.0, 1.125}
    mean = values.mean(dtype=np.float64)
    assert abs(mean - (1.0 + 2.0**-5)) < 4 * 0.125 * np.sqrt(0.25 * 0.75 / x.size)
    np.testing.assert_array_equal(codes, em.encode(x, "e4m3fn", rounding="stochastic", seed=11))
    assert (codes != em.encode(x, "e4m3fn", rounding="stochastic", seed=12)).any()
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        single = em.encode(x, "e4m3fn", rounding="stochastic", seed=11)
        single_int = em.quantize(x, "int4", 0.3, rounding="stochastic", seed=5)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(single, codes)
    np.testing.assert_array_equal(single_int, em.quantize(x, "int4", 0.3, rounding="stochastic", seed=5))


@pytest.mark.parametrize("call, message", [
    (lambda: em.get_format("e9m2"), "exponent bits must be 1..8"),
    (lambda: em.get_format("e4m11"), "mantissa bits must be 0..10"),
    (lambda: em.get_format("fp7"), "unknown format"),
    (lambda: em.get_format("e4m3fm"), r"unknown format 'e4m3fm' \(did you mean 'e4m3fn'\?\): use a preset"),
    (lambda: em.get_format("int33"), "integer width must be 1..32"),
    (lambda: em.get_format("e4m3fn", overflow="inf"), "overflow policy"),
    (lambda: em.get_format("e4m3fn", colour="red"), "has no option colour"),
    (lambda: em.get_format("e5m0ieee"), "at least 1 mantissa bit"),
    (lambda: em.get_format("e8m7fn"), "outside float32"),
    (lambda: em.encode(np.arange(3), "e4m3fn"), "must be float32 or float64"),
    (lambda: em.encode(np.ones(3, np.float16), "e4m3fn"), "must be float32 or float64"),
    (lambda: em.encode(np.array([np.nan]), "e2m1"), "cannot be encoded as e2m1"),
    (lambda: em.encode(np.array([np.nan]), "int8"), "as int8, which has no NaN"),
    (lambda: em.encode(np.ones(2), "e4m3fn", rounding="up"), "rounding must be one of"),
    (lambda: em.encode(np.ones(2), "e4m3fn", rounding="stochastic"), "needs an integer seed"),
    (lambda: em.encode(np.ones(2), "e4m3fn", rounding="stochastic", seed=1, sr_bits=70), "sr_bits"),
    (lambda: em.encode(np.ones(2), "mxfp4"), "block_encode"),
    (lambda: em.decode(np.array([16]), "e2m1"), "must lie in 0..15"),
    (lambda: em.decode(np.array([1.0]), "e2m1"), "integer array"),
    (lambda: em.quantize(np.ones(4), "int8", 0.0), "scale must be finite and > 0"),
    (lambda: em.quantize(np.ones(4), "int8", -1.0), "scale must be finite and > 0"),
    (lambda: em.quantize(np.ones(4), "int8", np.nan), "scale must be finite and > 0"),
    (lambda: em.quantize(np.ones(4), "int8", 1.0, 200), "zero_point must lie in -128..127"),
    (lambda: em.quantize(np.ones(4), "e4m3fn", 1.0, 1), "zero_point must be 0"),
    (lambda: em.quantize(np.ones((2, 4)), "int8", np.ones(3), axis=0), "per-channel scale must have shape"),
    (lambda: em.quantize(np.ones((2, 6)), "int8", np.ones(2), axis=1, group_size=4), "group_size must be a positive divisor"),
    (lambda: em.quantize(np.array([np.nan]), "int8", 1.0), "contains NaN"),
    (lambda: em.quantize(np.ones(4), "int8", 1.0, scale_op="mul"), "scale_op must be one of"),
    (lambda: em.block_encode(np.ones(33), "mxfp4"), "multiple of the block size 32"),
    (lambda: em.block_encode(np.ones(32), "mxfp4", scale_rule="round"), "MX scale rule"),
    (lambda: em.pack(np.array([4]), 2), "must lie in 0..3"),
    (lambda: em.pack(np.array([1]), 9), "pack width bits must be an integer from 1 to 8"),
    (lambda: em.unpack(np.zeros(1, np.uint8), 4, 3), "hold at most 2 codes"),
])
def test_errors_say_what_is_allowed(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_formats_command_lists_every_preset_with_its_range():
    table = formats_table()
    for name, fmt in em.PRESETS.items():
        assert any(line.split()[0] == name for line in table.splitlines()), name
    e4m3 = next(line for line in table.splitlines() if line.startswith("e4m3fn "))
    assert "448" in e4m3 and "0.015625" in e4m3 and "0.00195312" in e4m3 and e4m3.rstrip().endswith("nan")
    out = subprocess.run([sys.executable, "-m", "simdq.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "simdq 0.1.0"
    assert main(["formats"]) == 0


def test_format_properties_match_their_definitions():
    assert em.get_format("e4m3fn").max_finite == 448 and em.get_format("e5m2").max_finite == 57344
    assert em.get_format("e4m3fnuz").max_finite == 240 and em.get_format("e2m1").max_finite == 6
    assert em.get_format("e8m0").max_finite == 2.0**127 and em.get_format("e8m0").min_normal == 2.0**-127
    fmt = em.get_format("e4m3fn", overflow="saturate")
    assert fmt.overflow == "saturate" and fmt.name == "e4m3fn[overflow=saturate]"
    assert em.get_format("int8", narrow=True).qmin == -127
    assert em.get_format("e5m2b16fnuz").bias == 16 and em.get_format("e3m3").special == "ieee"
    assert em.get_format("nvfp4").bits_per_element == 4.5


@pytest.mark.parametrize("name, expected", [
    # max = (2 - 2^-M) x 2^emax, except where the top codes are NaN (fn: 1.75 x 2^8) or inf
    ("e4m3fn", ("float", 8, 1.75 * 2**8, -1.75 * 2**8, 2.0**-6, 2.0**-9, "NaN, -0", "nan")),
    ("e5m2", ("float", 8, 1.75 * 2**15, -1.75 * 2**15, 2.0**-14, 2.0**-16, "+-inf, NaN, -0", "inf")),
    ("e4m3fnuz", ("float", 8, 1.875 * 2**7, -1.875 * 2**7, 2.0**-7, 2.0**-10, "NaN=0x80", "nan")),
    ("e2m1", ("float", 4, 6.0, -6.0, 1.0, 0.5, "-0", "saturate")),
    ("e8m0", ("float", 8, 2.0**127, 2.0**-127, 2.0**-127, None, "NaN, no zero, unsigned", "nan")),
    ("int4", ("int", 4, 7, -8, None, None, "none", "saturate")),
    ("uint3", ("int", 3, 7, 0, None, None, "none", "saturate")),
    ("binary", ("binary", 1, 1.0, -1.0, None, None, "0 -> +1", "sign")),
    # element bits plus the scale's bits shared by the block
    ("mxfp4", ("block", 4, 6.0, None, None, None, "e2m1 x 32 + e8m0 scale; 4.25 bits/element", "saturate")),
    ("nvfp4", ("block", 4, 6.0, None, None, None,
               "e2m1 x 16 + e4m3fn scale + fp32 tensor scale; 4.5 bits/element", "saturate")),
    ("mxint8", ("block", 8, 127 / 64, None, None, None, "int8 x 32 + e8m0 scale; 8.25 bits/element", "saturate")),
])
def test_describe_by_hand(name, expected):
    keys = ("kind", "bits", "max_finite", "min_value", "min_normal", "min_subnormal", "specials", "overflow")
    description = em.get_format(name).describe()
    assert description["name"] == name
    assert tuple(description[key] for key in keys) == expected
