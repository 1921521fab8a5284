"""The torch quantizer against the emulator's Numba kernels, bit for bit, across formats and granularities."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import emulator as em
from emulator.codec import decode_table
from simdq.calibrate import torch_quant as tq
from simdq.errors import SimdqError

FORMATS = ["int8", "uint8", "int4", "int2", ("int8", {"narrow": True}), "e4m3fn", "e5m2", "e4m3fnuz", "e5m2fnuz",
           "e2m1", "e2m3", "e3m2", "fp16", "bf16", ("e4m3fn", {"overflow": "saturate"}),
           ("e5m2", {"overflow": "saturate"}), ("e5m2", {"overflow": "nan"}), ("e4m3fnuz", {"overflow": "saturate"})]


def _format(spec):
    return em.get_format(spec[0], **spec[1]) if isinstance(spec, tuple) else em.get_format(spec)


values = arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 24)),
                elements=st.floats(-1e6, 1e6, width=32, allow_nan=False) | st.sampled_from([np.inf, -np.inf, 0.0, -0.0]))


def with_ties(x, scale, fmt):
    """Add values exactly halfway between neighbouring codes (after scaling), where rounding is decided."""
    with np.errstate(invalid="ignore", over="ignore"):
        table = decode_table(fmt).astype(np.float64)
        finite = np.unique(table[np.isfinite(table)])
        mids = (finite[:-1] + finite[1:]) / 2
        picks = (mids[np.linspace(0, len(mids) - 1, x.shape[1]).astype(int)] * scale).astype(np.float32)
    return np.concatenate([x, picks[None, :]]).astype(np.float32)


@pytest.mark.parametrize("spec", FORMATS, ids=str)
@given(x=values, scale=st.floats(1e-3, 1e3))
def test_per_tensor_codes_equal_the_emulator(spec, x, scale):
    fmt = _format(spec)
    x = with_ties(x, scale, fmt) if fmt.kind == "float" else x
    expected = em.quantize(x, fmt, scale).astype(np.int64)
    got = tq.quantize(torch.from_numpy(x), fmt, scale)
    np.testing.assert_array_equal(got.numpy(), expected)
    np.testing.assert_array_equal(
        tq.dequantize(got, fmt, scale).numpy().view(np.uint32),
        em.dequantize(expected, fmt, scale).view(np.uint32))


@pytest.mark.parametrize("spec", ["int8", "uint4", "e4m3fn", "e2m1"], ids=str)
@given(data=st.data())
def test_per_channel_and_per_group_codes_equal_the_emulator(spec, data):
    fmt = _format(spec)
    channels, groups, group_size = 4, 3, 8
    x = data.draw(arrays(np.float32, (channels, groups * group_size),
                         elements=st.floats(-1e4, 1e4, width=32, allow_nan=False)))
    scales = np.array(data.draw(st.lists(st.floats(1e-2, 1e2), min_size=channels, max_size=channels)))
    zero_points = np.array(data.draw(st.lists(st.integers(fmt.qmin // 2, fmt.qmax // 2), min_size=channels,
                                              max_size=channels))) if fmt.kind == "int" else 0
    expected = em.quantize(x, fmt, scales, zero_points, axis=0).astype(np.int64)
    got = tq.quantize(torch.from_numpy(x), fmt, scales, zero_points, axis=0)
    np.testing.assert_array_equal(got.numpy(), expected)
    group_scales = np.array(data.draw(st.lists(st.floats(1e-2, 1e2), min_size=groups, max_size=groups)))
    expected = em.quantize(x, fmt, group_scales, axis=1, group_size=group_size).astype(np.int64)
    got = tq.quantize(torch.from_numpy(x), fmt, group_scales, axis=1, group_size=group_size)
    np.testing.assert_array_equal(got.numpy(), expected)


def test_fake_quantize_is_dequantize_of_quantize_and_idempotent(rng):
    x = torch.from_numpy((rng.standard_normal((16, 32)) * 3).astype(np.float32))
    once = tq.fake_quantize(x, "e4m3fn", 0.05)
    np.testing.assert_array_equal(once.numpy(), em.fake_quantize(x.numpy(), "e4m3fn", 0.05))
    assert torch.equal(tq.fake_quantize(once, "e4m3fn", 0.05), once)


@pytest.mark.parametrize("call, message", [
    (lambda: tq.quantize(torch.tensor([float("nan")]), "int8", 1.0), "contains NaN"),
    (lambda: tq.quantize(torch.ones(4), "int8", 0.0), "scale must be finite and > 0"),
    (lambda: tq.quantize(torch.ones(4), "e4m3fn", 1.0, 3), "zero_point must be 0"),
    (lambda: tq.quantize(torch.ones(4), "e8m0", 1.0), "covers signed minifloats"),
    (lambda: tq.quantize(torch.ones(4), "mxfp4", 1.0), "takes integer and minifloat formats"),
    (lambda: tq.quantize(torch.ones(2, 6), "int8", [1.0, 2.0, 3.0], axis=1, group_size=4), "does not divide"),
])
def test_errors(call, message):
    with pytest.raises(SimdqError, match=message):
        call()
