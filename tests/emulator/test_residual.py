"""Residual (two-basis) binarization: the numpy implementation against its plain twin bit for bit, worked by hand,
and the properties that make it a binarizer worth its second plane."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import emulator as em
from emulator.reference.residual import reference_residual_binarize, reference_residual_value

# values that put residuals exactly on zero (equal magnitudes), signed zeros, and the float32 extremes
BOUNDARY = st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 3.0, -3.0, 2.0**-149, -(2.0**-149),
                            3.4028234663852886e38, -3.4028234663852886e38, 1e-30])
VALUES = st.one_of(BOUNDARY, st.floats(-1e6, 1e6, width=32, allow_nan=False))


@st.composite
def weights(draw):
    channels, per_channel = draw(st.integers(1, 4)), draw(st.integers(1, 9))
    values = draw(st.lists(VALUES, min_size=channels * per_channel, max_size=channels * per_channel))
    return np.array(values, dtype=np.float32).reshape(channels, per_channel)


@pytest.mark.parametrize("name, zero", [("binary2", "+1"), ("binary3", "+1"), ("binary2", "-1")])
@given(w=weights())
def test_binarize_and_dequantize_equal_the_plain_twin_bit_for_bit(name, zero, w):
    fmt = em.get_format(name, zero=zero)
    encoded = em.residual_binarize(w, fmt)
    values = em.residual_dequantize(encoded.codes, encoded.scales, fmt)
    for c, channel in enumerate(w):
        codes, scales = reference_residual_binarize(channel.tolist(), fmt.bases, zero)
        assert encoded.codes[c].tolist() == codes
        assert encoded.scales[c].tobytes() == np.array(scales, dtype=np.float64).tobytes()
        want = np.array([reference_residual_value(code, scales) for code in codes], dtype=np.float32)
        assert values[c].tobytes() == want.tobytes()


def test_worked_by_hand():
    # alpha1 = mean(1, 3) = 2, s1 = (+1, -1); residual (-1, -1): alpha2 = 1, s2 = (-1, -1); 2 - 1 = 1, -2 - 1 = -3
    encoded = em.residual_binarize(np.array([[1.0, -3.0]], dtype=np.float32), "binary2")
    assert encoded.scales.tolist() == [[2.0, 1.0]]
    assert encoded.codes.tolist() == [[0b10, 0b11]]  # bit j: plane j is -1
    assert em.residual_dequantize(encoded.codes, encoded.scales, "binary2").tolist() == [[1.0, -3.0]]


@pytest.mark.parametrize("zero, second_plane", [("+1", 0), ("-1", 1)])
def test_a_zero_residual_takes_the_formats_zero_rule(zero, second_plane):
    encoded = em.residual_binarize(np.array([[2.0, 2.0]], dtype=np.float32), em.get_format("binary2", zero=zero))
    assert encoded.scales.tolist() == [[2.0, 0.0]]  # the first plane leaves nothing
    assert encoded.codes.tolist() == [[second_plane << 1] * 2]


def test_channels_run_along_any_axis():
    w = np.random.default_rng(5).standard_normal((3, 4, 2, 2)).astype(np.float32)
    moved = em.residual_binarize(np.moveaxis(w, 0, 2), "binary2", axis=2)
    direct = em.residual_binarize(w, "binary2")
    assert np.array_equal(np.moveaxis(moved.codes, 2, 0), direct.codes)
    assert np.array_equal(moved.scales, direct.scales)
    values = em.residual_dequantize(moved.codes, moved.scales, "binary2", axis=2)
    assert np.array_equal(np.moveaxis(values, 2, 0), em.residual_dequantize(direct.codes, direct.scales, "binary2"))


@given(w=weights())
def test_each_plane_lowers_the_squared_error(w):
    """sum (|r| - mean|r|)^2 = sum r^2 - n mean|r|^2: a plane scaled by the mean magnitude never adds error."""
    previous = energy = float((w.astype(np.float64) ** 2).sum())
    for bases in (2, 3, 4):
        encoded = em.residual_binarize(w, f"binary{bases}")
        signs = [1 - 2 * plane.astype(np.float64) for plane in em.residual_planes(encoded.codes, f"binary{bases}")]
        approx = sum(signs[j] * encoded.scales[:, j:j + 1] for j in range(bases))
        error = float(((w - approx) ** 2).sum())
        assert error <= previous + 1e-12 * energy  # exact in real arithmetic; float64 rounding aside
        previous = error


def test_the_planes_are_binary_codes_whose_scaled_sum_is_the_weight():
    w = np.random.default_rng(6).standard_normal((8, 27)).astype(np.float32)
    encoded = em.residual_binarize(w, "binary2")
    planes = em.residual_planes(encoded.codes, "binary2")
    total = sum(em.decode(plane, "binary").astype(np.float64) * encoded.scales[:, j:j + 1]
                for j, plane in enumerate(planes))
    assert np.array_equal(total.astype(np.float32), em.residual_dequantize(encoded.codes, encoded.scales, "binary2"))
    assert em.pack(encoded.codes, 2).size == w.size // 4  # two bits a weight


@pytest.mark.parametrize("call, message", [
    (lambda: em.residual_binarize(np.array([[np.nan, 1.0]]), "binary2"), "finite"),
    (lambda: em.residual_binarize(np.ones((2, 2)), "binary"), "not a residual binary format"),
    (lambda: em.residual_binarize(np.ones((2, 0)), "binary2"), "at least one element"),
    (lambda: em.residual_binarize(np.float32(1.0), "binary2"), "1-D"),
    (lambda: em.residual_dequantize(np.zeros((2, 3), np.uint8), np.ones((2, 3)), "binary2"), "(channels, bases)"),
    (lambda: em.residual_dequantize(np.full((2, 3), 4, np.uint8), np.ones((2, 2)), "binary2"), "0..3"),
    (lambda: em.encode(np.ones(3, np.float32), "binary2"), "residual_binarize"),
    (lambda: em.decode(np.zeros(3, np.uint8), "binary2"), "residual_dequantize"),
    (lambda: em.get_format("binary1"), "from 2 to 8"),
    (lambda: em.get_format("binary9"), "from 2 to 8"),
])
def test_bad_arguments_say_what_is_allowed(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        call()


@given(values=st.lists(st.one_of(st.floats(-1e300, 1e300), st.sampled_from([1.0, 1e100, -1e100, 2.0**-1074, 0.5,
                                                                              1.0 + 2.0**-52, 2.0**53, -0.0])),
                       max_size=40))
def test_the_kernels_sum_is_math_fsum_bit_for_bit(values):
    """The Numba sum behind each mean against CPython's math.fsum (the twin): cancellation, half-way cases and
    partials spread over the whole exponent range."""
    import math

    from emulator._kernels.residual import fsum

    got = fsum(np.array(values, dtype=np.float64))
    assert np.float64(got).tobytes() == np.float64(math.fsum(values)).tobytes()
