"""encode/decode against ml_dtypes and torch 2.13, compared as bit patterns."""

import ml_dtypes
import numpy as np
import pytest
import torch
from oracles import (HEAVY, ML_DTYPES, SPECIALS, TORCH_DTYPES, binade, deciding_mantissas, ml_dtypes_codes,
                     sweep_exponents, table_convention, torch_codes)

import emulator as em
from emulator.codec import code_dtype

FLOAT_PRESETS_IN_ML_DTYPES = ["e4m3fn", "e5m2", "e4m3fnuz", "e5m2fnuz", "e4m3b11fnuz", "e3m4", "e4m3",
                              "e2m3", "e3m2", "e2m1", "e8m0", "bf16", "fp16"]
# ml_dtypes maps NaN into the NaN-less OCP formats as zero and rounds E8M0 ties away from zero.
ML_DTYPES_OPTIONS = {"e2m3": {"on_nan": "zero"}, "e3m2": {"on_nan": "zero"}, "e2m1": {"on_nan": "zero"}}
ML_DTYPES_ROUNDING = {"e8m0": "rna"}


def as_ml_dtypes(name):
    return em.get_format(name, **ML_DTYPES_OPTIONS.get(name, {}))


@pytest.mark.parametrize("name", FLOAT_PRESETS_IN_ML_DTYPES + ["int2", "int4", "uint2", "uint4", "int8", "uint8"])
def test_decode_every_code_matches_ml_dtypes_bits(name):
    fmt = em.get_format(name)
    codes = np.arange(1 << fmt.bits, dtype=code_dtype(fmt.bits))
    expected = codes.view(ML_DTYPES[name]).astype(np.float32)
    got = em.decode(codes, fmt)
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


@pytest.mark.parametrize("mbits", range(11))
def test_the_sampled_sweep_holds_every_value_and_tie_of_the_format_and_their_neighbours(mbits):
    chosen = set(deciding_mantissas(mbits).tolist())
    for precision in range(mbits + 1):  # a subnormal of the format keeps fewer mantissa bits
        half_step = 1 << (22 - precision)
        for point in range(0, 1 << 23, half_step):
            assert {m for m in range(point - 2, point + 3) if 0 <= m < 1 << 23} <= chosen, (precision, point)
    assert 1 / 70 < len(chosen) / (1 << 23) < 1 / 50 or HEAVY  # the rest at a stride, not whole
    assert set(binade(3, mbits=mbits).view(np.uint32) & 0x7FFFFF) == (set(range(1 << 23)) if HEAVY else chosen)


@pytest.mark.parametrize("name", [n for n in FLOAT_PRESETS_IN_ML_DTYPES if n not in ("e8m0", "bf16")])
def test_encode_matches_ml_dtypes_at_every_rounding_boundary_in_range(name):
    fmt = as_ml_dtypes(name)
    for exponent in sweep_exponents(fmt):
        for negative in (False, True):
            x = binade(exponent, negative, fmt.mbits)
            got = em.encode(x, fmt)
            expected = ml_dtypes_codes(x, ML_DTYPES[name])
            mismatch = np.nonzero(got != expected)[0]
            assert mismatch.size == 0, (name, exponent, x[mismatch[:3]], got[mismatch[:3]], expected[mismatch[:3]])


def test_encode_bf16_matches_ml_dtypes_at_every_rounding_boundary():
    # bf16 spans the whole float32 range: sweep a stride of the mantissas in every binade, and
    # every mantissa in the binades around the rounding boundaries.
    fmt = em.get_format("bf16")
    for exponent in range(-127, 128):
        x = binade(exponent, mbits=None if exponent in (-127, -126, -125, 126, 127) else fmt.mbits)
        x = np.concatenate([x, -x])
        np.testing.assert_array_equal(em.encode(x, fmt), ml_dtypes_codes(x, ml_dtypes.bfloat16))


def test_encode_e8m0_matches_ml_dtypes_in_every_normal_binade():
    # ml_dtypes and torch read a float32 subnormal's mantissa field as if it were 1.m, so they send
    # (2^-127, 1.5 * 2^-127) to 2^-126; we round to nearest (2^-127), as gfloat does (test_gfloat).
    fmt = em.get_format("e8m0")
    for exponent in range(-126, 128):
        x = binade(exponent, mbits=None if exponent in (-126, 0, 1, 126, 127) else fmt.mbits)
        np.testing.assert_array_equal(em.encode(x, fmt, rounding="rna"), ml_dtypes_codes(x, ml_dtypes.float8_e8m0fnu))


@pytest.mark.parametrize("name", FLOAT_PRESETS_IN_ML_DTYPES)
def test_encode_special_values_match_ml_dtypes(name):
    fmt = as_ml_dtypes(name)
    edge = [fmt.max_finite, fmt.min_normal, fmt.min_subnormal or fmt.min_normal]
    x = np.concatenate([SPECIALS, np.array(edge, np.float32), -np.array(edge, np.float32),
                        np.array([v * f for v in edge for f in (0.5, 0.75, 1.0625, 1.5, 2.0)], np.float32)])
    if name == "e8m0":  # see test_encode_e8m0_matches_ml_dtypes_in_every_normal_binade
        x = x[~((np.abs(x) > 0) & (np.abs(x) < 2.0**-126))]
    got = em.encode(x, fmt, rounding=ML_DTYPES_ROUNDING.get(name, "rne"))
    np.testing.assert_array_equal(got, ml_dtypes_codes(x, ML_DTYPES[name]))


@pytest.mark.parametrize("name, options", [
    ("e4m3fn", {"overflow": "saturate"}),  # torch >= 2.13 saturates e4m3fn, +-inf included
    ("e5m2", {}),
    ("e4m3fnuz", {}),
    ("e5m2fnuz", {}),
    ("fp16", {}),
])
def test_encode_matches_torch_at_every_rounding_boundary_in_range(name, options):
    fmt = em.get_format(name, **options)
    for exponent in sweep_exponents(fmt):
        x = binade(exponent, mbits=fmt.mbits)
        x = np.concatenate([x, -x])
        got = em.encode(x, fmt)
        np.testing.assert_array_equal(got, torch_codes(x, TORCH_DTYPES[name]), err_msg=f"binade 2^{exponent}")
    not_nan = SPECIALS[~np.isnan(SPECIALS)]
    np.testing.assert_array_equal(em.encode(not_nan, fmt), torch_codes(not_nan, TORCH_DTYPES[name]))
    # torch's NaN codes may carry another payload (e5m2: 0x7F where ml_dtypes gives 0x7E): compare classes
    nans = np.array([np.nan], np.float32)
    ours = em.decode(em.encode(nans, fmt), fmt)
    theirs = torch.from_numpy(torch_codes(nans, TORCH_DTYPES[name])).view(TORCH_DTYPES[name]).float().numpy()
    assert np.isnan(ours).all() and np.isnan(theirs).all()
    if fmt.special != "fnuz":  # fnuz has one NaN code; ml_dtypes and torch give it opposite signs
        np.testing.assert_array_equal(np.signbit(ours), np.signbit(theirs))


def test_encode_bf16_and_e8m0_match_torch_on_positive_values(rng):
    x = np.abs(rng.standard_normal(1 << 20).astype(np.float32)) * np.exp2(rng.integers(-120, 120, 1 << 20)).astype(np.float32)
    np.testing.assert_array_equal(em.encode(x, "bf16"), torch_codes(x, torch.bfloat16))
    signed = np.concatenate([-x, SPECIALS[~np.isnan(SPECIALS)]])  # torch's bf16 NaN is 0xFFFF
    np.testing.assert_array_equal(em.encode(signed, "bf16"), torch_codes(signed, torch.bfloat16))
    x = x[np.isfinite(x) & (x >= 2.0**-126)]
    np.testing.assert_array_equal(em.encode(x, "e8m0", rounding="rna"), torch_codes(x, torch.float8_e8m0fnu))


def test_torch_decode_agrees_on_every_non_nan_code():
    for name in ("e4m3fn", "e5m2", "e4m3fnuz", "e5m2fnuz", "e8m0"):
        fmt = em.get_format(name)
        codes = np.arange(256, dtype=np.uint8)
        expected = torch.from_numpy(codes).view(TORCH_DTYPES[name]).float().numpy()
        got = em.decode(codes, fmt)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
        finite = ~np.isnan(got)
        np.testing.assert_array_equal(got[finite].view(np.uint32), expected[finite].view(np.uint32))


def test_float64_input_is_rounded_once_unless_asked_to_mimic_the_casts():
    # ml_dtypes 0.6 casts float64 through float32, 0.7 rounds once: the table says which one is installed
    fmt = em.get_format("e4m3fn")
    # 1 + 2^-4 + 2^-30 lies just above the e4m3 tie 1.0625: correctly rounded it goes up to 1.125, but
    # float64 -> float32 first lands exactly on the tie, which then rounds to even (1.0).
    x = np.array([1 + 2**-4 + 2**-30, -(1 + 2**-4 + 2**-30)])
    once = em.decode(em.encode(x, fmt), fmt)
    twice = em.decode(em.encode(x, fmt, via_float32=True), fmt)
    np.testing.assert_array_equal(once, [1.125, -1.125])
    np.testing.assert_array_equal(twice, [1.0, -1.0])
    route = table_convention("ml_dtypes: astype(float8_e4m3fn) from float64").get("float64")
    installed = em.encode(x, fmt, via_float32=route == "via_float32")
    np.testing.assert_array_equal(installed, ml_dtypes_codes(x, ml_dtypes.float8_e4m3fn))


def test_integer_encode_rounds_and_saturates_like_float64_numpy(rng):
    x = np.concatenate([rng.standard_normal(100_000) * 40, np.arange(-300, 300) + 0.5, [np.inf, -np.inf, -0.0]])
    for name in ("int8", "uint8", "int4", "uint3", "int1", "int16", "int32"):
        fmt = em.get_format(name)
        expected = np.clip(np.round(x), fmt.qmin, fmt.qmax).astype(np.int64) & ((1 << fmt.bits) - 1)
        np.testing.assert_array_equal(em.encode(x, fmt), expected)
        np.testing.assert_array_equal(em.encode(x.astype(np.float32), fmt),
                                      np.clip(np.round(x.astype(np.float32).astype(np.float64)), fmt.qmin, fmt.qmax).astype(np.int64) & ((1 << fmt.bits) - 1))
    narrow = em.get_format("int8", narrow=True)
    assert em.decode(em.encode(np.array([-1000.0]), narrow), narrow)[0] == -127
