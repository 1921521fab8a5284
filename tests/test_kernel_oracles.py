"""The kernels and requantization conventions against libraries we did not write: onnxruntime (MatMulInteger,
ConvInteger, QLinearMatMul, QLinearConv), onnx.reference, torch.ops.quantized (fbgemm, qnnpack), and the
plain twin of each convention (emulator/reference/requant.py) on drawn ties and near-ties.

u8 x s8 products saturate in pairs on x86 CPUs without VNNI (oracles.md): these tests use s8 x s8 and u8 x u8,
and u8 x s8 only where /proc/cpuinfo lists a VNNI flag.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import emulator as em
from emulator.reference.requant import reference_requantize

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

CPUINFO = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
HAS_VNNI = "avx512_vnni" in CPUINFO or "avx_vnni" in CPUINFO
ONNX_TYPES = {np.int8: TensorProto.INT8, np.uint8: TensorProto.UINT8, np.int32: TensorProto.INT32,
              np.float32: TensorProto.FLOAT}
PAIRS = [(np.int8, np.int8), (np.uint8, np.uint8)] + ([(np.uint8, np.int8)] if HAS_VNNI else [])


def run_onnx(op, inputs, attrs=None, out_type=TensorProto.INT32, evaluator="ort"):
    names = [f"i{n}" for n in range(len(inputs))]
    info = [helper.make_tensor_value_info(n, ONNX_TYPES[v.dtype.type], v.shape) for n, v in zip(names, inputs)]
    node = helper.make_node(op, names, ["y"], **(attrs or {}))
    graph = helper.make_graph([node], "g", info, [helper.make_tensor_value_info("y", out_type, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    feeds = dict(zip(names, inputs))
    if evaluator == "reference":
        return ReferenceEvaluator(model).run(None, feeds)[0]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def fmt_of(dtype):
    return "int8" if dtype == np.int8 else "uint8"


def codes(values):
    return values.view(np.uint8)


@pytest.mark.parametrize("a_type, b_type", PAIRS)
def test_matmul_integer_matches_onnxruntime(rng, a_type, b_type):
    a = rng.integers(np.iinfo(a_type).min, np.iinfo(a_type).max + 1, (37, 300)).astype(a_type)
    b = rng.integers(np.iinfo(b_type).min, np.iinfo(b_type).max + 1, (300, 23)).astype(b_type)
    za, zb = np.array(a_type(3)), np.array(b_type(5 if b_type == np.uint8 else -2))
    expected = run_onnx("MatMulInteger", [a, b, za, zb])
    got = em.matmul(codes(a), codes(b), a_format=fmt_of(a_type), b_format=fmt_of(b_type), accumulator="int32",
                    a_zero_point=int(za), b_zero_point=int(zb))
    np.testing.assert_array_equal(got, expected)


def test_int32_wraps_as_onnxruntime_does():
    k = 140000
    a = np.full((1, k), 127, dtype=np.int8)
    b = np.full((k, 1), 127, dtype=np.int8)
    expected = run_onnx("MatMulInteger", [a, b])
    got = em.matmul(codes(a), codes(b), a_format="int8", b_format="int8", accumulator="int32")
    assert expected[0, 0] == 127 * 127 * k - 2**32  # onnxruntime wraps
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("a_type, b_type", PAIRS)
@pytest.mark.parametrize("attrs", [dict(pads=[1, 1, 1, 1]), dict(strides=[2, 2], dilations=[2, 1], pads=[0, 1, 2, 1]),
                                   dict(group=2, pads=[1, 0, 1, 0])])
def test_conv_integer_matches_onnxruntime(rng, a_type, b_type, attrs):
    groups = attrs.get("group", 1)
    x = rng.integers(np.iinfo(a_type).min, np.iinfo(a_type).max + 1, (2, 4, 9, 8)).astype(a_type)
    w = rng.integers(np.iinfo(b_type).min, np.iinfo(b_type).max + 1, (6, 4 // groups, 3, 3)).astype(b_type)
    zx = np.array(a_type(7))
    expected = run_onnx("ConvInteger", [x, w, zx], attrs)
    pads = attrs["pads"]
    if pads[0] != pads[2] or pads[1] != pads[3]:  # asymmetric: emulate by padding with the zero point first
        padded = np.full((2, 4, 9 + pads[0] + pads[2], 8 + pads[1] + pads[3]), zx, dtype=a_type)
        padded[:, :, pads[0]:pads[0] + 9, pads[1]:pads[1] + 8] = x
        x, padding = padded, 0
    else:
        padding = (pads[0], pads[1])
    got = em.conv2d(codes(x), codes(w), x_format=fmt_of(a_type), w_format=fmt_of(b_type), accumulator="int32",
                    x_zero_point=int(zx), padding=padding, stride=tuple(attrs.get("strides", [1, 1])),
                    dilation=tuple(attrs.get("dilations", [1, 1])), groups=groups)
    np.testing.assert_array_equal(got, expected)


def test_w1a4_conv_matches_conv_integer_with_plus_minus_one_weights(rng):
    x = rng.integers(0, 16, (1, 8, 10, 10)).astype(np.uint8)
    w_bits = rng.integers(0, 2, (5, 8, 3, 3)).astype(np.uint8)
    w = (1 - 2 * w_bits.astype(np.int64)).astype(np.int8)
    expected = run_onnx("ConvInteger", [x, w], dict(pads=[1, 1, 1, 1]))
    got = em.conv2d(x, w_bits, x_format="uint4", w_format="binary", padding=1)  # bit-planes
    np.testing.assert_array_equal(got, expected)


def qlinear_inputs(rng, a_type, b_type, shape_a, shape_b, per_channel):
    a = rng.integers(np.iinfo(a_type).min, np.iinfo(a_type).max + 1, shape_a).astype(a_type)
    b = rng.integers(np.iinfo(b_type).min, np.iinfo(b_type).max + 1, shape_b).astype(b_type)
    sa = np.array(0.0173, dtype=np.float32)
    n_out = shape_b[0] if len(shape_b) == 4 else shape_b[1]
    sb = (rng.uniform(0.001, 0.01, n_out) if per_channel else np.array(0.0041)).astype(np.float32)
    return a, b, sa, sb, np.array(a_type(9)), np.array(b_type(0 if b_type == np.int8 else 128))


@pytest.mark.parametrize("a_type, b_type", PAIRS)
@pytest.mark.parametrize("evaluator, convention", [("ort", "onnxruntime"), ("reference", "onnx_reference")])
def test_qlinear_matmul_matches_its_convention(rng, a_type, b_type, evaluator, convention):
    a, b, sa, sb, za, zb = qlinear_inputs(rng, a_type, b_type, (40, 200), (200, 30), per_channel=False)
    sy, zy = np.array(0.21, dtype=np.float32), np.array(a_type(11))
    expected = run_onnx("QLinearMatMul", [a, sa, za, b, sb, zb, sy, zy], out_type=ONNX_TYPES[a_type],
                        evaluator=evaluator)
    acc = em.matmul(codes(a), codes(b), a_format=fmt_of(a_type), b_format=fmt_of(b_type), accumulator="int32",
                    a_zero_point=int(za), b_zero_point=int(zb))
    got = em.requantize(acc, sa, sb, sy, output_zero_point=int(zy), out_format=fmt_of(a_type), convention=convention)
    np.testing.assert_array_equal(got.view(a_type), expected)


@pytest.mark.parametrize("a_type, b_type", PAIRS)
def test_qlinear_conv_per_channel_with_bias_matches_onnxruntime(rng, a_type, b_type):
    x, w, sx, sw, zx, zw = qlinear_inputs(rng, a_type, b_type, (1, 6, 8, 8), (5, 6, 3, 3), per_channel=True)
    if b_type == np.uint8:
        zw = np.array(b_type(128))
    bias = rng.integers(-5000, 5000, 5).astype(np.int32)
    sy, zy = np.array(0.9, dtype=np.float32), np.array(a_type(3))
    expected = run_onnx("QLinearConv", [x, sx, zx, w, sw, zw, sy, zy, bias], dict(pads=[1, 1, 1, 1]),
                        out_type=ONNX_TYPES[a_type])
    acc = em.conv2d(codes(x), codes(w), x_format=fmt_of(a_type), w_format=fmt_of(b_type), accumulator="int32",
                    x_zero_point=int(zx), w_zero_point=int(zw), padding=1)
    got = em.requantize(acc, sx, sw, sy, output_zero_point=int(zy), bias=bias, out_format=fmt_of(a_type))
    np.testing.assert_array_equal(got.view(a_type), expected)


# fbgemm and x86 multiply u8 x s8 with vpmaddubsw unless the CPU has AVX512-VNNI: adjacent pairs of products are
# summed with int16 saturation, which full-range activations overflow (2 x 255 x 127 > 32767). PyTorch's x86
# observers default to reduce_range=True (7-bit activations) for that reason; those tests draw 7-bit codes, so
# the exact int32 convention holds on every x86 CPU (the saturating rule is pinned down in the next test).
ACTIVATION_CODES = {"fbgemm": 128, "x86": 128, "qnnpack": 256}
FBGEMM_SATURATES_PAIRS = "avx512_vnni" not in CPUINFO.split()  # fbgemm has VNNI kernels for AVX-512 only


def test_fbgemm_sums_full_range_products_in_int16_pairs_without_vnni(rng):
    """Full-range uint8 activations through torch's fbgemm linear: exact int32 with AVX512-VNNI; without it,
    sum over pairs (2i, 2i+1) of sat16(x w + x w) on the raw codes, minus zx times each row's weight sum."""
    if "fbgemm" not in torch.backends.quantized.supported_engines or not CPUINFO:
        pytest.skip("torch has no fbgemm engine here, or /proc/cpuinfo does not say whether the CPU has VNNI")
    torch.backends.quantized.engine = "fbgemm"
    sx, zx, sw, sy, zy = 0.0371, 3, 0.0123, 0.1637, 7
    x, w = rng.integers(200, 256, (8, 64)), rng.choice([-127, 127], (12, 64))  # same-sign pairs overflow int16
    qx = torch._make_per_tensor_quantized_tensor(torch.tensor(x, dtype=torch.uint8), sx, zx)
    qw = torch._make_per_tensor_quantized_tensor(torch.tensor(w, dtype=torch.int8), sw, 0)
    expected = torch.ops.quantized.linear(qx, torch.ops.quantized.linear_prepack(qw, None), sy, zy).int_repr().numpy()
    products = x[:, None, :] * w[None, :, :]
    if FBGEMM_SATURATES_PAIRS:
        acc = np.clip(products[..., 0::2] + products[..., 1::2], -2**15, 2**15 - 1).sum(-1)
    else:
        acc = products.sum(-1)
    acc = acc - zx * w.sum(1)[None, :]
    got = em.requantize(acc.astype(np.int32), sx, sw, sy, output_zero_point=zy, out_format="uint8",
                        convention="onnxruntime")
    np.testing.assert_array_equal(got, expected)
    exact = em.requantize((products.sum(-1) - zx * w.sum(1)[None, :]).astype(np.int32), sx, sw, sy,
                          output_zero_point=zy, out_format="uint8", convention="onnxruntime")
    assert np.array_equal(exact, expected) != FBGEMM_SATURATES_PAIRS  # the inputs tell the two rules apart


@pytest.mark.parametrize("engine, convention", [("fbgemm", "onnxruntime"), ("x86", "onnxruntime"),
                                                ("qnnpack", "qnnpack")])
def test_torch_quantized_linear_and_conv_match_their_convention(rng, engine, convention):
    if engine not in torch.backends.quantized.supported_engines:
        pytest.skip(f"torch has no {engine} engine here")
    torch.backends.quantized.engine = engine
    sx, zx, sw, sy, zy = 0.0371, 3, 0.0123, 0.1637, 7
    x = rng.integers(0, ACTIVATION_CODES[engine], (16, 96))
    w = rng.integers(-127, 128, (24, 96))
    qx = torch._make_per_tensor_quantized_tensor(torch.tensor(x, dtype=torch.uint8), sx, zx)
    qw = torch._make_per_tensor_quantized_tensor(torch.tensor(w, dtype=torch.int8), sw, 0)
    expected = torch.ops.quantized.linear(qx, torch.ops.quantized.linear_prepack(qw, None), sy, zy).int_repr().numpy()
    acc = em.matmul(codes(x.astype(np.uint8)), codes(w.T.astype(np.int8)), a_format="uint8", b_format="int8",
                    accumulator="int32", a_zero_point=zx)
    got = em.requantize(acc, sx, sw, sy, output_zero_point=zy, out_format="uint8", convention=convention)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("engine, convention", [("fbgemm", "onnxruntime"), ("qnnpack", "qnnpack")])
def test_torch_quantized_conv2d_matches_its_convention(rng, engine, convention):
    if engine not in torch.backends.quantized.supported_engines:
        pytest.skip(f"torch has no {engine} engine here")
    torch.backends.quantized.engine = engine
    sx, zx, sw, sy, zy = 0.02, 5, 0.007, 0.31, 120
    x = rng.integers(0, ACTIVATION_CODES[engine], (1, 8, 9, 9))
    w = rng.integers(-127, 128, (6, 8, 3, 3))
    qx = torch._make_per_tensor_quantized_tensor(torch.tensor(x, dtype=torch.uint8), sx, zx)
    qw = torch._make_per_tensor_quantized_tensor(torch.tensor(w, dtype=torch.int8), sw, 0)
    packed = torch.ops.quantized.conv2d_prepack(qw, None, [1, 1], [1, 1], [1, 1], 1)
    expected = torch.ops.quantized.conv2d(qx, packed, sy, zy).int_repr().numpy()
    acc = em.conv2d(codes(x.astype(np.uint8)), codes(w.astype(np.int8)), x_format="uint8", w_format="int8",
                    accumulator="int32", x_zero_point=zx, padding=1)
    got = em.requantize(acc, sx, sw, sy, output_zero_point=zy, out_format="uint8", convention=convention)
    np.testing.assert_array_equal(got, expected)


def near_ties():
    """Accumulators whose scaled value lands on or next to a .5: the cases conventions disagree on."""
    return st.tuples(st.integers(-(2**20), 2**20), st.sampled_from([0.5, 0.25, 0.125, 1 / 3, 0.1, 0.75]),
                     st.integers(-2, 2))


@given(case=near_ties(), convention=st.sampled_from(em.REQUANT_CONVENTIONS), zp=st.integers(-20, 20),
       bias=st.integers(-1000, 1000))
def test_each_convention_matches_its_plain_twin(case, convention, zp, bias):
    acc, m, nudge = case
    acc_value = acc * 2 + nudge
    sx, sw, sy = 0.5, m, 1.0 if nudge else 0.999
    got = em.requantize(np.array([acc_value]), sx, sw, sy, output_zero_point=zp, bias=np.array(bias),
                        convention=convention).view(np.int8)[0]
    assert got == reference_requantize(acc_value, sx, sw, sy, zp, -128, 127, convention, bias)


def test_conventions_disagree_on_ties_as_their_formulas_say():
    """acc * 0.25 for acc = 1, 2, 3, 6, -1, -2, -6 (0.25, 0.5, 0.75, 1.5, -0.25, -0.5, -1.5), worked by hand:
    onnxruntime rounds half to even; TFLite's single rounding adds 2^(30-e) then shifts (half up); its reference
    kernels round the float64 product half away from zero; gemmlowp
    rounds a/2 half up in the doubling high multiply, then halves again rounding half away from zero."""
    acc = np.array([1, 2, 3, 6, -1, -2, -6])

    def run(convention):
        return em.requantize(acc, 0.25, 1.0, 1.0, convention=convention).view(np.int8).tolist()

    assert run("onnxruntime") == [0, 0, 1, 2, 0, 0, -2]
    assert run("tflite_single_rounding") == [0, 1, 1, 2, 0, 0, -1]
    assert run("tflite_reference") == [0, 1, 1, 2, 0, -1, -2]  # float64, half away from zero
    assert run("gemmlowp") == [1, 1, 1, 2, 0, -1, -2]


@pytest.mark.parametrize("name", ["mxfp8_e4m3", "mxfp4"])
def test_mx_matmul_on_torchao_quantized_operands_is_the_exact_sum_of_torchao_values(rng, name):
    """Operands quantized by torchao's to_mx; the exact accumulator against Fractions of torchao's own
    dequantization (to_dtype), rounded once to float32."""
    from torchao.prototype.mx_formats.mx_tensor import to_dtype, to_mx

    from emulator.accumulators import get_accumulator
    from emulator.reference.gemm import reference_dot

    torch_dtype = torch.float8_e4m3fn if name == "mxfp8_e4m3" else torch.float4_e2m1fn_x2
    a = (rng.standard_normal((6, 128)) * np.exp2(rng.integers(-8, 8, (6, 1)))).astype(np.float32)
    bt = rng.standard_normal((5, 128)).astype(np.float32)  # b^T: blocks of 32 along K, as to_mx blocks rows

    def quantized(x):
        scales, data = to_mx(torch.from_numpy(x), torch_dtype, 32)
        values = to_dtype(data, scales, torch_dtype, 32, torch.float32).numpy().astype(np.float64)
        codes = data.view(torch.uint8).numpy()
        if name == "mxfp4":
            codes = em.unpack(codes.reshape(-1), 4, x.size).reshape(x.shape)
        return em.BlockEncoded(codes, scales.view(torch.uint8).numpy()), values

    ea, va = quantized(a)
    eb_t, vb_t = quantized(bt)
    eb = em.BlockEncoded(eb_t.elements.T, eb_t.scales)  # b is K x N; its scales keep the blocks' axis last
    got = em.matmul(ea, eb, a_format=name, b_format=name)
    exact = get_accumulator("exact")
    expected = [[reference_dot(va[i], vb_t[j], exact) for j in range(5)] for i in range(6)]
    np.testing.assert_array_equal(got, np.array(expected, dtype=np.float32))


def test_nvfp4_matmul_on_torchao_quantized_operands(rng):
    """NVFP4 operands from torchao's nvfp4_quantize (with per-tensor scales): the exact block sums, from torchao's
    own element and scale values, then the tensor scales in the float32 epilogue."""
    from torchao.prototype.mx_formats.nvfp4_tensor import f4_unpacked_to_f32, nvfp4_quantize, per_tensor_amax_to_scale

    from emulator.accumulators import get_accumulator
    from emulator.reference.gemm import reference_dot

    a = (rng.standard_normal((4, 64)) * 3).astype(np.float32)
    bt = rng.standard_normal((3, 64)).astype(np.float32)

    def quantized(x):
        tensor_scale = per_tensor_amax_to_scale(torch.from_numpy(x).abs().max())
        scales, data = nvfp4_quantize(torch.from_numpy(x), 16, tensor_scale)
        codes = em.unpack(data.view(torch.uint8).numpy().reshape(-1), 4, x.size).reshape(x.shape)
        elements = f4_unpacked_to_f32(torch.from_numpy(codes)).numpy().astype(np.float64)
        block_scales = scales.float().numpy().astype(np.float64).reshape(x.shape[0], -1)
        values = (elements.reshape(x.shape[0], -1, 16) * block_scales[..., None]).reshape(x.shape)
        return em.BlockEncoded(codes, scales.view(torch.uint8).numpy().reshape(x.shape[0], -1),
                               float(tensor_scale)), values

    ea, va = quantized(a)
    eb_t, vb_t = quantized(bt)
    eb = em.BlockEncoded(eb_t.elements.T, eb_t.scales, eb_t.tensor_scale)
    got = em.matmul(ea, eb, a_format="nvfp4", b_format="nvfp4")
    exact = get_accumulator("exact")
    sums = np.array([[reference_dot(va[i], vb_t[j], exact) for j in range(3)] for i in range(4)], dtype=np.float32)
    tensor = np.float32(np.float32(ea.tensor_scale) * np.float32(eb.tensor_scale))
    np.testing.assert_array_equal(got, sums * tensor)
