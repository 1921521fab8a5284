"""The emulator's public functions take any argument and either work or raise ValueError saying what is
allowed: never a TypeError, an AttributeError, a Numba typing error or a silently wrapped value."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import emulator as em

X = np.linspace(-3, 3, 64, dtype=np.float32).reshape(2, 32)
CODES = np.arange(16, dtype=np.uint8)
ONES_INT = np.ones((2, 3), np.int64)
SIGNS = np.array([[0, 1, 1], [1, 0, 1]], np.uint8)

# name -> (positional arguments, keyword arguments) of one valid call
VALID_CALLS = {
    "pack": ((CODES, 4), {}),
    "unpack": ((em.pack(CODES, 4), 4, 16), {}),
    "pack_bits64": ((np.array([0, 1, 1, 0], np.uint8),), {}),
    "unpack_bits64": ((em.pack_bits64(np.array([0, 1, 1, 0], np.uint8)), 4), {}),
    "encode": ((X, "e4m3fn"), {"rounding": "rne", "seed": None, "sr_bits": 32, "via_float32": False}),
    "decode": ((np.arange(16), "e2m1"), {}),
    "quantize": ((X, "int8", 0.05), {"zero_point": 0, "axis": None, "group_size": None, "rounding": "rne",
                                       "sr_bits": 32, "scale_op": "divide"}),
    "dequantize": ((np.arange(16), "int8", 0.05), {"zero_point": 0, "axis": None, "scale_op": "divide"}),
    "fake_quantize": ((X, "int4", 0.5), {}),
    "block_encode": ((X, "mxfp4"), {"axis": 1, "rounding": "rne", "scale_rule": None}),
    "get_format": (("int8",), {"narrow": False, "signed": True}),
    "get_accumulator": (("int32",), {"split_k": 1}),
    "matmul": ((ONES_INT, ONES_INT.T), {"a_format": "int8", "b_format": "int8", "accumulator": "exact"}),
    "requantize": ((np.arange(6, dtype=np.int64).reshape(2, 3), 0.1, 0.1, 0.2),
                   {"output_zero_point": 0, "out_format": "int8", "convention": "onnxruntime"}),
    "binary_matmul": ((SIGNS, SIGNS.T.copy()), {}),
    "conv2d": ((np.ones((1, 2, 4, 4), np.int64), np.ones((3, 2, 3, 3), np.int64)),
               {"x_format": "int8", "w_format": "int8", "stride": 1, "padding": 0, "dilation": 1, "groups": 1}),
    "residual_binarize": ((X, "binary2"), {"axis": 0}),
    "residual_dequantize": ((np.array([[0, 3, 1], [2, 0, 1]], np.uint8), np.ones((2, 2)), "binary2"), {"axis": 0}),
    "residual_planes": ((np.array([[0, 3, 1], [2, 0, 1]], np.uint8), "binary2"), {}),
}
HOSTILE = [4.0, 3.5, "yes", "no", None, True, -1, 2**70, math.nan, math.inf, [1, "a"], np.ones((2, 2, 2, 2, 2)),
           object(), 0, np.array(["a", "b"]), 1 + 2j, np.array([256, -1])]


def _call(name, args, kwargs):
    return getattr(em, name)(*args, **kwargs)


# what each valid call returns: the property below starts from these, so they must work
RESULT_TYPES = {"get_format": em.IntFormat, "get_accumulator": em.Accumulator, "block_encode": em.BlockEncoded,
                "residual_binarize": em.ResidualBinary, "residual_planes": list}


@pytest.mark.parametrize("name", sorted(VALID_CALLS))
def test_the_valid_calls_work(name):
    result = _call(name, *VALID_CALLS[name])
    assert isinstance(result, RESULT_TYPES.get(name, np.ndarray)) and (not isinstance(result, np.ndarray) or
                                                                          result.size > 0)


@settings(max_examples=1000)
@given(data=st.data())
def test_any_argument_is_taken_or_refused_with_a_value_error(data):
    name = data.draw(st.sampled_from(sorted(VALID_CALLS)))
    args, kwargs = VALID_CALLS[name]
    args, kwargs = list(args), dict(kwargs)
    slot = data.draw(st.sampled_from([("arg", i) for i in range(len(args))] + [("kw", k) for k in kwargs]))
    value = data.draw(st.sampled_from(HOSTILE))
    if slot[0] == "arg":
        args[slot[1]] = value
    else:
        kwargs[slot[1]] = value
    try:
        _call(name, args, kwargs)
    except ValueError as err:
        assert str(err) and "\n" not in str(err).strip()


@pytest.mark.parametrize("call, message", [
    (lambda: em.pack(CODES, 4.0), "pack width bits must be an integer from 1 to 8, got 4.0"),
    (lambda: em.unpack(em.pack(CODES, 4), 4, 3.5), "count must be an integer >= 0, got 3.5"),
    (lambda: em.unpack(np.array([17, 300]), 8, 2), "packed must hold bytes (integers 0..255)"),
    (lambda: em.quantize(X, "int8", 0.05, axis=0.0), "axis must be an integer from -2 to 1, got 0.0"),
    (lambda: em.quantize(X, "int8", 0.05, group_size=8), "group_size needs an axis"),
    (lambda: em.block_encode(X, "mxfp4", axis=1.0), "axis must be an integer from -2 to 1, got 1.0"),
    (lambda: em.block_encode(X, "mxfp4", axis=1, tensor_scale=5.0), "mxfp4 has no tensor scale"),
    (lambda: em.get_format("int8", narrow="yes"), "IntFormat.narrow must be True or False, got 'yes'"),
    (lambda: em.get_format("uint8", signed="no"), "IntFormat.signed must be True or False, got 'no'"),
    (lambda: em.get_format("e0m3"), "'e0m3': exponent bits must be 1..8, got 0"),
    (lambda: em.get_format("e4m3", ebits=0), "ebits must be an integer from 1 to 8, got 0"),
    (lambda: em.get_accumulator("int32", split_k=2.0), "Accumulator.split_k must be an integer, got 2.0"),
    (lambda: em.encode(X, "e4m3fn", via_float32="no"), "via_float32 must be True or False, got 'no'"),
    (lambda: em.encode(X, "e4m3fn", sr_bits=4.0), "sr_bits must be an integer from 1 to"),
    (lambda: em.encode(X, "e4m3fn", rounding=["rne"]), "rounding must be one of"),
    (lambda: em.requantize(np.ones((2, 3), np.int64), 0.1, 0.1, 0.2, output_zero_point=1.5),
     "output_zero_point must be an integer"),
    (lambda: em.conv2d(np.ones((1, 2, 4, 4), np.int64), np.ones((3, 2, 3, 3), np.int64), x_format="int8",
                       w_format="int8", groups=True), "do not make True groups"),
])
def test_each_bad_argument_says_what_is_allowed(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value)


def test_unpack_no_longer_wraps_bytes_above_255():
    wrapped = em.unpack(np.array([0x21], np.uint8), 4, 2)
    assert wrapped.tolist() == [1, 2]
    with pytest.raises(ValueError):
        em.unpack(np.array([0x21 + 256]), 4, 2)  # 289 once wrapped to 0x21 and decoded as [1, 2]
