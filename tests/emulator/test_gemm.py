"""GEMM, convolution and XNOR kernels against their plain twins (emulator/reference/gemm.py) and exact arithmetic.

Hypothesis draws the boundaries on purpose: integer partial sums landing exactly on 2^(P-1), products whose
alignment shift passes the fraction bits, equal exponents, zeros and subnormals.
"""

from fractions import Fraction

import numba
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import emulator as em
from emulator.gemm import operand, split_bounds
from emulator.reference.gemm import exponents, reference_dot, round_to_float32

FLOAT_FORMATS = ["e4m3fn", "e5m2", "e2m1", "e3m2", "bf16", "fp16"]
FLOAT_ACCUMULATORS = ["exact", "fp32", "fp32_pairwise", "sm90_fp8", "sm90_fp8_fast", "sm90_bf16", "sm80_fp16"]


def int_values(fmt):
    f = em.get_format(fmt)
    edges = [f.qmin, f.qmax, 0, 1, -1 if f.signed else 2, f.qmin + 1, f.qmax - 1]
    return st.one_of(st.sampled_from(edges), st.integers(f.qmin, f.qmax))


def codes_of(values, fmt):
    return em.encode(np.asarray(values, dtype=np.float64), fmt)


@st.composite
def int_case(draw):
    fmt = draw(st.sampled_from(["int8", "uint8", "int4", "int2"]))
    m, k, n = draw(st.integers(1, 3)), draw(st.integers(0, 40)), draw(st.integers(1, 3))
    a = draw(st.lists(st.lists(int_values(fmt), min_size=k, max_size=k), min_size=m, max_size=m))
    b = draw(st.lists(st.lists(int_values(fmt), min_size=n, max_size=n), min_size=k, max_size=k))
    return fmt, np.array(a, dtype=np.int64).reshape(m, k), np.array(b, dtype=np.int64).reshape(k, n)


@given(case=int_case(), bits=st.integers(8, 20), overflow=st.sampled_from(["wrap", "saturate"]))
def test_integer_accumulators_match_the_reference(case, bits, overflow):
    fmt, a, b = case
    acc = em.get_accumulator(f"int{bits}_{overflow}")
    got = em.matmul(codes_of(a, fmt), codes_of(b, fmt), a_format=fmt, b_format=fmt, accumulator=acc)
    expected = [[reference_dot(a[i], b[:, j], acc) for j in range(b.shape[1])] for i in range(a.shape[0])]
    np.testing.assert_array_equal(got, np.array(expected, dtype=np.int64).reshape(got.shape))
    assert got.dtype == np.int32


@pytest.mark.parametrize("bits", [8, 12, 16, 20, 32])
def test_saturation_at_exactly_two_to_the_p_minus_one(bits):
    """Partial sums reach 2^(P-1) - 1 exactly, then one more: saturate holds it, wrap turns negative."""
    top = (1 << (bits - 1)) - 1
    whole, rest = divmod(top, 32767)
    a = np.array([[32767] * whole + [rest, 1, -1]], dtype=np.int64)
    b = np.ones((a.shape[1], 1), dtype=np.int64)
    codes_a, codes_b = codes_of(a, "int16"), codes_of(b, "int16")

    def run(accumulator):
        return em.matmul(codes_a, codes_b, a_format="int16", b_format="int16", accumulator=accumulator)[0, 0]

    assert run(f"int{bits}_saturate") == top - 1  # held at the top, then one down
    assert run(f"int{bits}_wrap") == top  # modular arithmetic: the overflow and the -1 cancel
    assert run("exact") == top


def float_values(fmt):
    f = em.get_format(fmt)
    finite = [c for c in range(1 << f.bits) if np.isfinite(em.decode(np.array([c]), f)[0])]
    edges = [0, f.sign_mask, 1, f.max_code_magnitude, f.sign_mask | f.max_code_magnitude,
             1 << f.mbits, (1 << f.mbits) - 1]  # zero, -0, smallest subnormal, max, -max, min normal, top subnormal
    return st.one_of(st.sampled_from([c for c in edges if c in finite]), st.sampled_from(finite))


@st.composite
def float_case(draw):
    fmt = draw(st.sampled_from(FLOAT_FORMATS))
    m, k, n = draw(st.integers(1, 2)), draw(st.integers(0, 300)), draw(st.integers(1, 2))
    if draw(st.booleans()):  # all-equal exponents: one binade, only the mantissas vary
        f = em.get_format(fmt)
        exponent = draw(st.integers(1, (f.max_code_magnitude >> f.mbits) - 1))
        codes = st.builds(lambda s, mant: (s << (f.bits - 1)) | (exponent << f.mbits) | mant,
                          st.integers(0, 1), st.integers(0, (1 << f.mbits) - 1))
    else:
        codes = float_values(fmt)
    a = np.array(draw(st.lists(codes, min_size=m * k, max_size=m * k)), dtype=np.int64).reshape(m, k)
    b = np.array(draw(st.lists(codes, min_size=k * n, max_size=k * n)), dtype=np.int64).reshape(k, n)
    dtype = np.uint16 if em.get_format(fmt).bits > 8 else np.uint8
    return fmt, a.astype(dtype), b.astype(dtype)


@given(case=float_case(), accumulator=st.sampled_from(FLOAT_ACCUMULATORS), split=st.integers(1, 3))
def test_float_accumulators_match_the_reference(case, accumulator, split):
    fmt, a, b = case
    acc = em.get_accumulator(accumulator, split_k=split, split_tile=32) if accumulator.startswith("sm") and split > 1 \
        else em.get_accumulator(accumulator)
    got = em.matmul(a, b, a_format=fmt, b_format=fmt, accumulator=acc)
    oa, ob = operand(a, fmt), operand(b, fmt)
    tensor_core = acc.kind == "tensor_core"
    emin = em.get_format(fmt).emin
    bounds = split_bounds(a.shape[1], acc.split_k, acc.split_tile)
    for i in range(a.shape[0]):
        for j in range(b.shape[1]):
            row, column = oa.values[i], ob.values[:, j]
            expected = reference_dot(row, column, acc, exponents(row, emin) if tensor_core else None,
                                     exponents(column, emin) if tensor_core else None, bounds)
            assert got[i, j].tobytes() == np.float32(expected).tobytes(), (i, j, got[i, j], expected)


def test_alignment_past_the_fraction_bits_drops_small_products():
    """One big product and many small ones: the tensor core truncates the small ones away, exact keeps them."""
    a = codes_of([[448.0] + [2.0**-6] * 31], "e4m3fn")
    b = codes_of([[448.0]] + [[2.0**-6]] * 31, "e4m3fn")
    exact = em.matmul(a, b, a_format="e4m3fn", b_format="e4m3fn")
    tensor = em.matmul(a, b, a_format="e4m3fn", b_format="e4m3fn", accumulator="sm90_fp8")
    assert exact[0, 0] == np.float32(448.0**2 + 31 * 2.0**-12)
    assert tensor[0, 0] == np.float32(448.0**2)  # 2^-12 lies 29 binades below 448^2, past 13 fraction bits


def test_exact_float_sums_round_once():
    """Terms whose float32 running sum loses bits: exact keeps them until the one rounding at the end."""
    big, small = 2.0**10, 2.0**-14  # e5m2 values; 2^20 + 2^-28 ... are not float32-exact partial sums
    a = codes_of([[big, small, small, small, small, -big]], "e5m2")
    b = codes_of([[big], [small], [small], [small], [small], [big]], "e5m2")
    assert em.matmul(a, b, a_format="e5m2", b_format="e5m2")[0, 0] == np.float32(4 * small * small)
    assert em.matmul(a, b, a_format="e5m2", b_format="e5m2", accumulator="fp32")[0, 0] == 0.0


@given(numerator=st.integers(-(2**80), 2**80), shift=st.integers(-200, 160))
def test_round_to_float32_reference_matches_numpy_on_doubles(numerator, shift):
    """The twin's rounding against numpy's float64 -> float32 cast where the rational is a double."""
    x = Fraction(numerator) * Fraction(2) ** shift
    if x != 0 and abs(float(x)) != 0 and Fraction(float(x)) == x:
        with np.errstate(over="ignore"):
            assert round_to_float32(x).tobytes() == np.float32(float(x)).tobytes()


def test_exact_integer_matches_numpy_int64_at_blas_sizes(rng):
    a = rng.integers(-128, 128, (70, 3000))
    b = rng.integers(-128, 128, (3000, 50))
    got = em.matmul(codes_of(a, "int8"), codes_of(b, "int8"), a_format="int8", b_format="int8")
    np.testing.assert_array_equal(got, a @ b)
    assert got.dtype == np.int64


def test_exact_refuses_what_int64_cannot_hold():
    wide = em.IntFormat("int32", 32)
    codes = np.full((1, 4), 1 << 31, dtype=np.uint32)  # -2^31 each
    with pytest.raises(ValueError, match="could overflow"):
        em.matmul(codes, codes.T, a_format=wide, b_format=wide)
    wrapped = em.matmul(codes, codes.T, a_format=wide, b_format=wide, accumulator="int64")
    assert wrapped[0, 0] == 0  # 4 * 2^62 = 2^64: zero modulo 2^64


@pytest.mark.parametrize("geometry", [dict(stride=1, padding=1), dict(stride=2, padding=0, dilation=2),
                                      dict(stride=(2, 1), padding=(1, 2), groups=2)])
def test_conv2d_matches_float64_torch_with_zero_points(rng, geometry):
    x = rng.integers(0, 256, (2, 4, 9, 8))
    w = rng.integers(-128, 128, (6, 4 // geometry.get("groups", 1), 3, 3))
    zx, zw = 131, np.array([0, 3, -2, 5, 1, -7])
    got = em.conv2d(codes_of(x, "uint8"), codes_of(w, "int8"), x_format="uint8", w_format="int8",
                    x_zero_point=zx, w_zero_point=zw, **geometry)
    expected = torch.nn.functional.conv2d(torch.tensor(x - zx, dtype=torch.float64),
                                          torch.tensor(w - zw[:, None, None, None], dtype=torch.float64),
                                          **geometry).numpy()
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("accumulator", ["int32", "sm90_fp8", "fp32_pairwise", "int16_saturate"])
def test_results_do_not_depend_on_the_number_of_threads(rng, accumulator):
    fmt = "int8" if accumulator.startswith("int") else "e4m3fn"
    a = codes_of(rng.integers(-100, 100, (33, 500)) if fmt == "int8" else rng.standard_normal((33, 500)) * 30, fmt)
    b = codes_of(rng.integers(-100, 100, (500, 17)) if fmt == "int8" else rng.standard_normal((500, 17)), fmt)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = em.matmul(a, b, a_format=fmt, b_format=fmt, accumulator=accumulator)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = em.matmul(a, b, a_format=fmt, b_format=fmt, accumulator=accumulator)
    finally:
        numba.set_num_threads(before)
    assert one.tobytes() == many.tobytes()


# ---- binary ----------------------------------------------------------------------------------------------------
def pm1(bits):
    return 1 - 2 * np.asarray(bits, dtype=np.int64)


@given(m=st.integers(1, 4), k=st.integers(0, 200), n=st.integers(1, 4), seed=st.integers(0, 2**32 - 1))
def test_xnor_popcount_equals_the_integer_dot_of_plus_minus_one(m, k, n, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 2, (m, k)).astype(np.uint8), rng.integers(0, 2, (k, n)).astype(np.uint8)
    got = em.matmul(a, b, a_format="binary", b_format="binary")
    np.testing.assert_array_equal(got, pm1(a) @ pm1(b))


@pytest.mark.parametrize("padding_value", [None, 1, -1])
@pytest.mark.parametrize("geometry", [dict(padding=1), dict(padding=2, stride=2, dilation=2), dict(padding=1, groups=2)])
def test_binary_conv_padding_modes_match_float64_convolution(rng, padding_value, geometry):
    x = rng.integers(0, 2, (2, 4, 7, 6)).astype(np.uint8)
    w = rng.integers(0, 2, (6, 4 // geometry.get("groups", 1), 3, 3)).astype(np.uint8)
    got = em.conv2d(x, w, x_format="binary", w_format="binary", padding_value=padding_value, **geometry)
    pad = geometry["padding"]
    xs = torch.tensor(pm1(x), dtype=torch.float64)
    if padding_value is not None:
        xs = torch.nn.functional.pad(xs, (pad, pad, pad, pad), value=float(padding_value))
    conv = {k: v for k, v in geometry.items() if k != "padding"}
    expected = torch.nn.functional.conv2d(xs, torch.tensor(pm1(w), dtype=torch.float64),
                                          padding=pad if padding_value is None else 0, **conv).numpy()
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("fmt", ["uint4", "int4", "uint2"])
def test_bitplanes_equal_the_direct_integer_result(rng, fmt):
    f = em.get_format(fmt)
    x = rng.integers(f.qmin, f.qmax + 1, (2, 5, 8, 8))
    w = rng.integers(0, 2, (3, 5, 3, 3)).astype(np.uint8)
    planes = em.conv2d(codes_of(x, fmt), w, x_format=fmt, w_format="binary", padding=1)  # bit-planes
    direct = em.conv2d(codes_of(x, fmt), w, x_format=fmt, w_format="binary", padding=1, accumulator="int64")
    np.testing.assert_array_equal(planes, direct)
    expected = torch.nn.functional.conv2d(torch.tensor(x, dtype=torch.float64), torch.tensor(pm1(w), dtype=torch.float64),
                                          padding=1).numpy()
    np.testing.assert_array_equal(planes, expected)


# ---- block formats ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mxfp8_e4m3", "mxfp4", "mxfp6_e3m2", "mxint8", "nvfp4"])
def test_block_formats_exact_equals_float64_of_decoded_blocks(rng, name):
    x = rng.standard_normal((8, 128)) * np.exp2(rng.integers(-8, 8, (8, 1)))
    y = rng.standard_normal((128, 6))
    options = {"tensor_scale": "amax"} if name == "nvfp4" else {}
    ea, eb = em.block_encode(x, name, axis=1, **options), em.block_encode(y, name, axis=0, **options)
    got = em.matmul(ea, eb, a_format=name, b_format=name)
    da = em.block_decode(ea, name, axis=1).astype(np.float64)
    db = em.block_decode(eb, name, axis=0).astype(np.float64)
    if name == "nvfp4":  # element * block scale summed exactly; the tensor scales join in the float32 epilogue
        import ml_dtypes

        def values(encoded, axis):
            elements = np.moveaxis(encoded.elements, axis, -1).view(ml_dtypes.float4_e2m1fn).astype(np.float64)
            scales = encoded.scales.view(ml_dtypes.float8_e4m3fn).astype(np.float64)
            blocks = elements.reshape(*elements.shape[:-1], -1, 16) * scales[..., None]
            return np.moveaxis(blocks.reshape(elements.shape), -1, axis)

        tensor = np.float32(np.float32(ea.tensor_scale) * np.float32(eb.tensor_scale))
        expected = (values(ea, 1) @ values(eb, 0)).astype(np.float32) * tensor
    else:
        expected = (da @ db).astype(np.float32)
    np.testing.assert_array_equal(got, expected)


def test_fp8_conv2d_with_per_filter_scales_matches_torch_and_the_cublas_epilogue(rng):
    """e4m3 NCHW x OIHW, exact accumulation: float64 torch convolution of the decoded values (exact: e4m3
    products sum exactly in float64 at this K), rounded once to float32, then the row-wise epilogue
    f32(f32(acc * w_scale[o]) * x_scale); groups take their filters' scales."""
    x = em.encode(rng.standard_normal((2, 4, 7, 7)) * 8, "e4m3fn")
    w = em.encode(rng.standard_normal((6, 2, 3, 3)), "e4m3fn")
    w_scale = rng.uniform(0.5, 2.0, 6).astype(np.float32)
    got = em.conv2d(x, w, x_format="e4m3fn", w_format="e4m3fn", padding=1, groups=2, x_scale=0.37, w_scale=w_scale)
    xs = torch.tensor(em.decode(x, "e4m3fn").astype(np.float64))
    ws = torch.tensor(em.decode(w, "e4m3fn").astype(np.float64))
    acc = torch.nn.functional.conv2d(xs, ws, padding=1, groups=2).numpy().astype(np.float32)
    expected = (acc * w_scale[None, :, None, None]).astype(np.float32) * np.float32(0.37)
    np.testing.assert_array_equal(got, expected)
    tensor_core = em.conv2d(x, w, x_format="e4m3fn", w_format="e4m3fn", padding=1, groups=2,
                            accumulator="sm90_fp8")
    assert tensor_core.shape == got.shape and np.abs(tensor_core - acc).max() <= np.abs(acc).max() * 2.0**-10
