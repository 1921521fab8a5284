"""Scaled quantization vs torch, block formats vs torchao and gfloat, packing vs a bit-stream reference."""

import warnings

import numpy as np
import pytest
import torch
from gfloat import RoundMode, quantize_block
from gfloat.block import compute_scale_amax
from gfloat.formats import format_info_mxint8
from hypothesis import given
from hypothesis import strategies as st

import emulator as em
from emulator.packing import reference_pack
from oracles import table_convention

warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*deprecated")


def ties_and_noise(rng, scale, n=50_000):
    """Values that land exactly on half-way points of the quantization grid, plus noise."""
    grid = (rng.integers(-300, 300, n) + 0.5).astype(np.float32) * np.float32(scale)
    return np.concatenate([grid, (rng.standard_normal(n) * 60).astype(np.float32)])


def installed_scale_op(reference_id):
    """torch 2.13 and 2.14 quantize differently: the table in simdq/emulate/parity/expected.py says which op is installed."""
    return table_convention(reference_id).get("scale_op")


def another_scale_op(op):
    return "reciprocal_fma" if op != "reciprocal_fma" else "reciprocal"


@pytest.mark.parametrize("dtype, fmt, zero_point", [(torch.quint8, "uint8", 5), (torch.qint8, "int8", -3)])
def test_quantize_per_tensor_matches_torch_bit_for_bit(rng, dtype, fmt, zero_point):
    op = installed_scale_op(f"torch: quantize_per_tensor({str(dtype).replace('torch.', '')})")
    x = ties_and_noise(rng, 0.37)
    expected = torch.quantize_per_tensor(torch.from_numpy(x), 0.37, zero_point, dtype).int_repr().numpy().astype(np.int64)
    got = em.quantize(x, fmt, 0.37, zero_point, scale_op=op)
    np.testing.assert_array_equal(em.decode(got, fmt).astype(np.int64), expected)
    # the other definitions differ on some of these ties
    assert (em.quantize(x, fmt, 0.37, zero_point, scale_op=another_scale_op(op)) != got).any()


def test_quantize_to_qint32_matches_torch_bit_for_bit(rng):
    op = installed_scale_op("torch: quantize_per_tensor(qint32)")
    x = np.concatenate([ties_and_noise(rng, 0.37), (rng.standard_normal(20_000) * 1e6).astype(np.float32)])
    for zero_point in (0, 5, -7, 2**24 + 1):  # the last is not a float32: torch rounds it first
        expected = torch.quantize_per_tensor(torch.from_numpy(x), 0.37, zero_point, torch.qint32)
        got = em.quantize(x, "int32", 0.37, zero_point, scale_op=op)
        np.testing.assert_array_equal(got.view(np.int32), expected.int_repr().numpy())
        if zero_point:  # with z = 0 both add nothing to the float32 product
            assert (em.quantize(x, "int32", 0.37, zero_point, scale_op=another_scale_op(op)) != got).any()
    scales = np.array([0.37, 3.3, 1e-3])
    zps = np.array([5, 100, -7])
    rows = x[: 3 * 30_000].reshape(3, -1)
    expected = torch.quantize_per_channel(torch.from_numpy(rows), torch.from_numpy(scales), torch.from_numpy(zps), 0,
                                          torch.qint32)
    got = em.quantize(rows, "int32", scales, zps, axis=0, scale_op=installed_scale_op("torch: quantize_per_channel(qint32)"))
    np.testing.assert_array_equal(got.view(np.int32), expected.int_repr().numpy())


def test_quantize_per_channel_matches_torch(rng):
    x = np.concatenate([ties_and_noise(rng, 0.05, 12_000).reshape(6, -1), (rng.standard_normal((6, 4000)) * 20).astype(np.float32)], axis=1)
    scales = (rng.random(6) * 0.2 + 0.01).astype(np.float64)
    scales[0] = 0.05
    zps = rng.integers(-10, 10, 6)
    expected = torch.quantize_per_channel(torch.from_numpy(x), torch.from_numpy(scales), torch.from_numpy(zps), 0, torch.qint8)
    got = em.quantize(x, "int8", scales, zps, axis=0, scale_op=installed_scale_op("torch: quantize_per_channel(qint8)"))
    np.testing.assert_array_equal(em.decode(got, "int8").astype(np.int64), expected.int_repr().numpy())


def test_rounding_before_a_float32_zero_point_add_as_torch_214_qint32():
    x = np.array([1e9, -299.5, 2.5], np.float32)
    round_add = em.quantize(x, "int32", 1.0, 5, scale_op="reciprocal_round_add").view(np.int32)
    np.testing.assert_array_equal(round_add, [1_000_000_000, -295, 7])  # 1e9 + 5 rounds back to 1e9 in float32
    np.testing.assert_array_equal(em.quantize(x, "int32", 1.0, 5, scale_op="reciprocal").view(np.int32),
                                  [1_000_000_005, -295, 7])
    np.testing.assert_array_equal(em.quantize(x, "int32", 1.0, 5, scale_op="reciprocal_add").view(np.int32),
                                  [1_000_000_000, -294, 8])  # -299.5 + 5 = -294.5 is a tie: to even


@pytest.mark.parametrize("axis", [0, 1])
def test_fake_quantize_per_channel_matches_torch_bit_for_bit(rng, axis):
    x = np.concatenate([ties_and_noise(rng, 0.05, 4000).reshape(8, 1000), (rng.standard_normal((8, 1000)) * 3).astype(np.float32)])
    channels = x.shape[axis]
    scales = (rng.random(channels) * 0.1 + 0.01).astype(np.float32)
    scales[0] = 0.05
    zps = rng.integers(-5, 5, channels).astype(np.int32)
    expected = torch.fake_quantize_per_channel_affine(torch.from_numpy(x), torch.from_numpy(scales), torch.from_numpy(zps), axis, -128, 127).numpy()
    got = em.fake_quantize(x, "int8", scales, zps, axis=axis, scale_op="reciprocal")
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))
    tensor = torch.fake_quantize_per_tensor_affine(torch.from_numpy(x), 0.05, 3, 0, 255).numpy()
    np.testing.assert_array_equal(em.fake_quantize(x, "uint8", 0.05, 3, scale_op="reciprocal").view(np.uint32), tensor.view(np.uint32))


def test_divide_definition_equals_exact_float64_numpy_and_groups(rng):
    x = rng.standard_normal((4, 64)) * 10
    scale = rng.random((4, 8)) + 0.05
    codes = em.quantize(x, "int4", scale, axis=1, group_size=8)
    expanded = np.repeat(scale, 8, axis=1)
    np.testing.assert_array_equal(em.decode(codes, "int4"), np.clip(np.round(x / expanded), -8, 7))
    np.testing.assert_array_equal(em.dequantize(codes, "int4", scale, axis=1, group_size=8),
                                  (np.clip(np.round(x / expanded), -8, 7) * expanded).astype(np.float32))
    fp8 = em.quantize(x, "e4m3fn", 0.5)
    np.testing.assert_array_equal(fp8, em.encode(x / 0.5, "e4m3fn"))


MX_RULES = ["floor", "ceil", "even", "rceil"]


@pytest.mark.parametrize("rule", MX_RULES)
@pytest.mark.parametrize("name, torch_dtype", [("mxfp8_e4m3", torch.float8_e4m3fn), ("mxfp8_e5m2", torch.float8_e5m2),
                                               ("mxfp6_e2m3", "fp6_e2m3"), ("mxfp6_e3m2", "fp6_e3m2"), ("mxfp4", torch.float4_e2m1fn_x2)])
def test_mx_matches_torchao_bit_for_bit(rng, rule, name, torch_dtype):
    from torchao.prototype.mx_formats.config import ScaleCalculationMode
    from torchao.prototype.mx_formats.mx_tensor import to_mx

    x = (rng.standard_normal((32, 256)) * np.exp2(rng.integers(-20, 20, (32, 1)))).astype(np.float32)
    x[0, :32] = 0.0
    x[1, :32] = 957.0  # the OCP example: FLOOR clips the top binade
    scales, data = to_mx(torch.from_numpy(x), torch_dtype, 32, ScaleCalculationMode[rule.upper()])
    encoded = em.block_encode(x, name, scale_rule=rule)
    np.testing.assert_array_equal(encoded.scales, scales.view(torch.uint8).numpy())
    data = data.view(torch.uint8).numpy() if data.dtype != torch.uint8 else data.numpy()
    elements = em.pack(encoded.elements.reshape(-1), 4).reshape(data.shape) if name == "mxfp4" else encoded.elements
    np.testing.assert_array_equal(elements, data)


def test_mxint8_matches_gfloat(rng):
    x = rng.standard_normal((20, 32)) * np.exp2(rng.integers(-8, 8, (20, 1)))
    got = em.block_decode(em.block_encode(x, "mxint8"), "mxint8")
    for block, row in zip(x, got):
        expected = quantize_block(format_info_mxint8, block, compute_scale_amax, RoundMode.TiesToEven)
        np.testing.assert_array_equal(row, np.asarray(expected, dtype=np.float32))


@pytest.mark.parametrize("tensor_scale", [None, "amax", 0.003])
def test_nvfp4_matches_torchao(rng, tensor_scale):
    from torchao.prototype.mx_formats.nvfp4_tensor import nvfp4_quantize, per_tensor_amax_to_scale

    x = (rng.standard_normal((16, 128)) * np.exp2(rng.integers(-6, 6, (16, 1)))).astype(np.float32)
    if tensor_scale == "amax":
        torch_scale = per_tensor_amax_to_scale(torch.from_numpy(x).abs().max())
    else:
        torch_scale = None if tensor_scale is None else torch.tensor(tensor_scale, dtype=torch.float32)
    scales, data = nvfp4_quantize(torch.from_numpy(x), 16, torch_scale)
    encoded = em.block_encode(x, "nvfp4", tensor_scale=tensor_scale)
    np.testing.assert_array_equal(encoded.scales, scales.view(torch.uint8).numpy())
    np.testing.assert_array_equal(em.pack(encoded.elements.reshape(-1), 4), data.numpy().reshape(-1))
    import ml_dtypes

    elements = encoded.elements.view(ml_dtypes.float4_e2m1fn).astype(np.float64).reshape(16, -1, 16)
    block_scales = encoded.scales.view(ml_dtypes.float8_e4m3fn).astype(np.float64)[..., None]
    expected = elements * block_scales * (1.0 if encoded.tensor_scale is None else encoded.tensor_scale)
    np.testing.assert_array_equal(em.block_decode(encoded, "nvfp4"), expected.reshape(x.shape).astype(np.float32))


def test_block_nan_scale_and_axis(rng):
    x = rng.standard_normal((64, 4)).astype(np.float32)
    x[3, 1] = np.nan
    encoded = em.block_encode(x, "mxfp8_e4m3", axis=0)
    assert encoded.scales.shape == (4, 2) and encoded.scales[1, 0] == 0xFF
    decoded = em.block_decode(encoded, "mxfp8_e4m3", axis=0)
    assert np.isnan(decoded[:32, 1]).all() and not np.isnan(decoded[32:, 1]).any() and not np.isnan(decoded[:, 0]).any()


@given(bits=st.integers(1, 8), codes=st.lists(st.integers(0, 255), max_size=200))
def test_pack_matches_bit_stream_reference_and_round_trips(bits, codes):
    codes = np.array([c % (1 << bits) for c in codes], dtype=np.uint8)
    packed = em.pack(codes, bits)
    assert bytes(packed) == reference_pack(codes, bits)
    np.testing.assert_array_equal(em.unpack(packed, bits, codes.size), codes)


def test_documented_bit_orders():
    np.testing.assert_array_equal(em.pack(np.array([0x1, 0xA], np.uint8), 4), [0xA1])
    np.testing.assert_array_equal(em.pack(np.array([1, 2, 3, 4], np.uint8), 6), [0x81, 0x30, 0x10])
    np.testing.assert_array_equal(em.pack(np.array([1, 0, 0, 0, 0, 0, 0, 1, 1], np.uint8), 1), [0x81, 0x01])
    bits = np.zeros(130, np.uint8)
    bits[[0, 63, 64, 129]] = 1
    words = em.pack_bits64(bits)
    np.testing.assert_array_equal(words, np.array([1 | (1 << 63), 1, 2], dtype=np.uint64))
    np.testing.assert_array_equal(em.unpack_bits64(words, 130), bits)


def test_binary_dot_product_identity(rng):
    a, w = rng.standard_normal(1000), rng.standard_normal(1000)
    a[::50] = 0.0
    sa, sw = em.encode(a, "binary"), em.encode(w, "binary")
    pa, pw = em.pack_bits64(sa), em.pack_bits64(sw)
    mismatches = sum(bin(int(v)).count("1") for v in np.bitwise_xor(pa, pw))
    np.testing.assert_array_equal(em.decode(sa, "binary"), np.where(a < 0, -1.0, 1.0))
    assert 1000 - 2 * mismatches == int(np.dot(em.decode(sa, "binary"), em.decode(sw, "binary")))
    assert em.encode(np.array([0.0, -0.0]), em.get_format("binary", zero="-1")).tolist() == [1, 1]
