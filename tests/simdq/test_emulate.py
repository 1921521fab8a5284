"""A calibrated tiny UNet run on the emulator: per layer equal to float64 arithmetic on the same codes, within
the derived float32 bound of torch fake-quant, equal to onnxruntime's integer convolution, thread-count free,
and the device's accumulators where --hw names them."""

import math
from functools import lru_cache

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from unet_fixtures import TINY_UNET, reseal

import emulator
from emulator import BinaryFormat, get_format
from simdq.calibrate.persist import save_artifact
from simdq.calibrate.pipeline import calibrate_unet
from simdq.config import parse_config
from simdq.emulate.modules import EmulatedGemm
from simdq.emulate.runtime import load_emulated

SCHEMES = {  # name -> (weights, activations, attention quantized)
    "w8a8-int8": ("int8", "int8", True),
    "w4a4-int4": ("int4", "int4", False),
    "w1a4": ("binary", "int4", False),
    "w1a1": ("binary", "binary", False),
    "w1.1a4": ("binary2", "int4", False),
    "w8a8-e4m3": ("e4m3fn", "e4m3fn", True),
    "nvfp4": ("nvfp4", "nvfp4", False),
    "mxfp4-weights": ("mxfp4", "e4m3fn", False),
}
INPUTS = {"sample": torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(3)),
          "timestep": torch.tensor([500])}


def model_document(weights, activations, attention):
    return {"model": {"diffusers": {"class": "UNet2DModel", "config": TINY_UNET}},
            "quant": {"weights": weights, "activations": activations, "attention": {"quantize": attention}}}


@lru_cache(maxsize=None)
def artifact(scheme: str, root: str) -> str:
    """A calibrated artifact of the tiny UNet (seeded weights, 2 DDIM steps: timesteps 500 and 0)."""
    from diffusers import UNet2DModel

    document = model_document(*SCHEMES[scheme])
    config = parse_config(document, "test")
    torch.manual_seed(0)
    unet = UNet2DModel(**TINY_UNET).eval()
    quantized, _ = calibrate_unet(unet, config.quant, samples=1, steps=2, batch=1, progress=False)
    directory = f"{root}/{scheme}"
    save_artifact(directory, quantized, {"model": document["model"], "quant": config.quant.model_dump(
        by_alias=True, exclude_none=True), "settings": {"steps": 2, "seed": 0, "timestep_groups": "per_step"}})
    return directory


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("emulate"))


def products_of(model, inputs=INPUTS):
    seen = []
    model.observe(seen.append)
    try:
        output = model(**inputs)
    finally:
        model.observe(None)
    return output, seen


def parity_rows(model, samples: int) -> list:
    """One emulated forward of INPUTS observed by simdq parity model's per-layer checks."""
    from simdq.emulate.parity.model import ModelParity

    parity = ModelParity(samples=samples)
    model.observe(parity)
    try:
        model(**INPUTS)
    finally:
        model.observe(None)
    return list(parity.layers.values())


def float64_product(product):
    """The same quantized GEMM in torch float64 on the operands' exact values (the emulator not involved
    beyond decoding codes, which the format oracles check)."""
    from simdq.emulate.operands import operand_values

    a, b = (torch.from_numpy(operand_values(e)) for e in (product.activation, product.weight))
    if product.conv is not None:
        conv = product.conv
        return F.conv2d(a, b, None, conv.stride, conv.padding, conv.dilation, conv.groups).numpy()
    return (a @ b).numpy()


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_every_exact_layer_equals_float64_arithmetic_on_its_codes(scheme, root):
    model = load_emulated(artifact(scheme, root))
    _, products = products_of(model)
    planes = {name: get_format(a.weight_format).bits if "weight planes" in a.kernel else 0
              for name, a in model.plan.items() if a.emulated}
    assert {p.name for p in products} == {f"{name}.plane{j}" if count else name
                                          for name, count in planes.items() for j in range(max(count, 1))}
    for product in products:
        reference = float64_product(product)
        raw = product.accumulator
        if raw.dtype.kind in "iu":
            assert np.array_equal(raw.astype(np.int64), reference.astype(np.int64)), product.name
            assert np.all(np.abs(reference) < 2**53)  # so the float64 reference itself is exact
        else:  # an exact sum rounded once: float64's sum is exact at these widths, then rounded alike
            assert np.array_equal(raw, reference.astype(np.float32)), product.name


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_emulated_layers_meet_fake_quant_within_the_float32_bound(scheme, root):
    """|fake - emulated| <= (K + 8) u (sum |x w| + |b|) on every output of every layer (the bound of
    simdq.emulate.parity.model's docstring), and the bound is not vacuous: the two differ somewhere."""
    model = load_emulated(artifact(scheme, root))
    rows = parity_rows(model, samples=0)
    emulated = model(**INPUTS)
    assert rows and all(row.fake_outside == 0 for row in rows)
    assert max(row.fake_max_ratio for row in rows) > 0.001
    with model.emulating(False):
        fake = model(**INPUTS)
    # through the whole UNet the last-bit differences flip codes downstream, so only closeness remains
    assert not torch.equal(fake, emulated)
    assert F.cosine_similarity(fake.flatten(), emulated.flatten(), dim=0) > 0.95


def test_binary_activations_use_the_calibrated_thresholds(root):
    """W1A1 activation codes are sign(x - threshold_c) (BiDM-style), not sign(x): checked on a layer's own input."""
    model = load_emulated(artifact("w1a1", root))
    name = "down_blocks.1.resnets.0.conv1"
    module = model.modules[name]
    seen = {}
    handle = module.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0].detach().clone()))
    try:
        _, products = products_of(model)
    finally:
        handle.remove()
    product = next(p for p in products if p.name == name)
    quantizer = module.fake.input_quantizer
    assert isinstance(quantizer.fmt, BinaryFormat) and product.arithmetic.kernel == "binary x binary"
    thresholds = quantizer.thresholds.reshape(1, -1, 1, 1).float()
    expected = ((seen["x"] - thresholds) < 0).numpy().astype(np.uint8)
    assert np.array_equal(product.activation.data, expected)
    assert not np.array_equal(product.activation.data, (seen["x"] < 0).numpy().astype(np.uint8))


def run_onnx(nodes, inputs, output_type, feeds):
    """The one output "y" of an ONNX graph of `nodes` on onnxruntime's CPU provider."""
    import onnxruntime as ort
    from onnx import helper

    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, t, None) for n, t in inputs],
                              [helper.make_tensor_value_info("y", output_type, None)])
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    onnx_model.ir_version = 10
    session = ort.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def test_int8_conv_equals_onnxruntime(root):
    """One emulated int8 convolution against onnxruntime: ConvInteger gives the int32 accumulators, and
    QLinearConv the requantized codes, which emulator.requantize(convention="onnxruntime") must reproduce."""
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    model = load_emulated(artifact("w8a8-int8", root))
    _, products = products_of(model)
    product = next(p for p in products if p.name == "down_blocks.0.resnets.0.conv1")
    x, w = product.activation.data.view(np.int8), product.weight.data.view(np.int8)
    conv = product.conv
    attributes = dict(pads=list(conv.padding) * 2, strides=list(conv.stride), dilations=list(conv.dilation),
                      group=conv.groups)

    def run(op, inputs, output_type, feeds):
        node = helper.make_node(op, [n for n, _ in inputs], ["y"], **attributes)
        return run_onnx([node], inputs, output_type, feeds)

    i8, f32 = TensorProto.INT8, TensorProto.FLOAT
    accumulators = run("ConvInteger", [("x", i8), ("w", i8)], TensorProto.INT32, {"x": x, "w": w})
    assert np.array_equal(accumulators, product.accumulator)
    sx, sw = np.float32(product.activation.scale), np.asarray(product.weight.scale, np.float32)
    sy = np.float32(np.abs(product.output.numpy()).max() / 127)
    codes = run("QLinearConv", [("x", i8), ("sx", f32), ("zx", i8), ("w", i8), ("sw", f32), ("zw", i8),
                                ("sy", f32), ("zy", i8)], i8,
                {"x": x, "sx": np.array(sx), "zx": np.array(0, np.int8), "w": w, "sw": sw,
                 "zw": np.zeros(len(sw), np.int8), "sy": np.array(sy), "zy": np.array(0, np.int8)})
    ours = emulator.requantize(product.accumulator, sx, sw, sy, convention="onnxruntime").view(np.int8)
    assert np.array_equal(codes, ours)
    assert len(np.unique(codes)) > 50  # a real spread of codes, not a saturated or zero layer


def test_results_do_not_depend_on_the_thread_count(root):
    import numba

    model = load_emulated(artifact("w8a8-e4m3", root), accumulator="sm90_fp8")
    outputs = []
    torch_threads, numba_threads = torch.get_num_threads(), numba.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            outputs.append(model(**INPUTS))
    finally:
        torch.set_num_threads(torch_threads)
        numba.set_num_threads(numba_threads)
    assert torch.equal(outputs[0], outputs[1])


def test_devices_name_the_accumulators(root):
    from hw_models import load_device

    from simdq.cli.estimate import run_estimate
    from simdq.emulate.runtime import artifact_config
    from simdq.artifact import read_metadata

    def plan(scheme, device_name):
        directory = artifact(scheme, root)
        device = load_device(device_name)
        estimate = run_estimate(artifact_config(directory, read_metadata(directory)), device, batch=1)
        layers = {r.layer.name: r.device for r in estimate.layers if r.device is not None}
        return load_emulated(directory, device=device, device_layers=layers).plan

    fp8 = plan("w8a8-e4m3", "h100")
    assert {a.accumulator for a in fp8.values()} == {"sm90_fp8"}
    assert fp8["down_blocks.1.attentions.0.qk"].precision == "fp8"
    assert {a.accumulator for a in plan("w8a8-int8", "h100").values()} == {"int32_saturate"}
    binary = plan("w1a1", "xne")  # the XNOR array: exact popcounts
    assert {(a.accumulator, a.engine) for a in binary.values()} == {("exact", "xnor")}
    nvfp4 = plan("nvfp4", "h100")  # no block-scaled MMA before sm100: said, and fp32 instead
    assert all(a.accumulator == "fp32" and "sm100" in a.source for a in nvfp4.values())


def test_hopper_fp8_departs_from_exact_yet_matches_its_plain_reference(root):
    rows = parity_rows(load_emulated(artifact("w8a8-e4m3", root), accumulator="sm90_fp8"), samples=3)
    assert sum(row.checked for row in rows) >= 3 * len(rows) and all(row.mismatched == 0 for row in rows)
    assert any(row.noise > 0 for row in rows)  # 13-bit alignment moves some outputs
    assert all(row.sqnr_db > 40 for row in rows)
    assert all(math.isinf(row.sqnr_db) == (row.noise == 0) for row in rows)


def test_a_wrong_accumulator_is_caught_by_the_reference(root):
    """The (a) check can fail: sums taken with fp32 but labelled sm90_fp8 disagree with sm90_fp8's reference."""
    model = load_emulated(artifact("w8a8-e4m3", root), accumulator="sm90_fp8")
    for module in model.modules.values():
        if isinstance(module, EmulatedGemm):
            module.accumulator = "fp32"  # the plan still says sm90_fp8
    assert sum(row.mismatched for row in parity_rows(model, samples=8)) > 0


def test_requantized_int8_conv_equals_qlinearconv_with_bias(root):
    """--requant onnxruntime: the layer writes what onnxruntime's QLinearConv writes (int8 codes at the calibrated
    output scale, the bias quantized to int32 as onnxruntime.quantization does), dequantized as DequantizeLinear."""
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    model = load_emulated(artifact("w8a8-int8", root), requant="onnxruntime")
    requants = {name.rsplit(".", 1)[-1] in ("qk", "av"): a.requant for name, a in model.plan.items()}
    assert requants == {False: "onnxruntime", True: None}  # attention matmuls keep the float epilogue
    _, products = products_of(model)
    product = next(p for p in products if p.name == "down_blocks.0.resnets.0.conv2")
    assert product.output_scale is not None and product.bias is not None
    x, w = product.activation.data.view(np.int8), product.weight.data.view(np.int8)
    sx, sw = np.float32(product.activation.scale), np.asarray(product.weight.scale, np.float32)
    sy = np.float32(product.output_scale)
    bias = np.rint(product.bias.detach().numpy().astype(np.float32) / (sx * sw).astype(np.float32)).astype(np.int32)
    conv = product.conv
    names = ["x", "sx", "zx", "w", "sw", "zw", "sy", "zy", "b"]
    types = [TensorProto.INT8, TensorProto.FLOAT, TensorProto.INT8, TensorProto.INT8, TensorProto.FLOAT,
             TensorProto.INT8, TensorProto.FLOAT, TensorProto.INT8, TensorProto.INT32]
    nodes = [helper.make_node("QLinearConv", names, ["q"], pads=list(conv.padding) * 2, strides=list(conv.stride)),
             helper.make_node("DequantizeLinear", ["q", "sy", "zy"], ["y"])]
    feeds = {"x": x, "sx": np.array(sx), "zx": np.array(0, np.int8), "w": w, "sw": sw,
             "zw": np.zeros(len(sw), np.int8), "sy": np.array(sy), "zy": np.array(0, np.int8), "b": bias}
    theirs = run_onnx(nodes, list(zip(names, types)), TensorProto.FLOAT, feeds)
    ours = product.output.numpy()
    assert np.array_equal(theirs.view(np.uint32), ours.view(np.uint32))
    assert len(np.unique(theirs)) > 50


def test_requantized_layers_stay_within_one_code_of_fake_quant(root):
    rows = parity_rows(load_emulated(artifact("w4a4-int4", root), requant="tflite_reference"), samples=0)
    assert rows and all(row.fake_outside == 0 and row.mismatched == 0 for row in rows)
    assert max(row.fake_max_ratio for row in rows) > 0  # the integer rounding moves some outputs by one code


def test_requant_needs_the_output_ranges(root, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from simdq.errors import SimdqError

    source = artifact("w8a8-int8", root)
    old = tmp_path / "old"
    shutil.copytree(source, old)
    tensors = load_file(str(old / "model.safetensors"))
    save_file({k: v for k, v in tensors.items() if ".output_range." not in k}, str(old / "model.safetensors"))
    metadata = yaml.safe_load((old / "quant.yaml").read_text())
    metadata["outputs"] = {}
    (old / "quant.yaml").write_text(yaml.safe_dump(metadata, sort_keys=False))
    reseal(old)  # an artifact that records no output ranges
    load_emulated(old)  # without --requant it still runs
    with pytest.raises(SimdqError, match="recalibrate"):
        load_emulated(old, requant="onnxruntime")


def test_two_basis_layers_keep_the_float_epilogue_under_requant(root):
    """Each plane carries its own scales, so no one int8 requantization applies: the plan says so and the
    layers compute exactly what they compute without --requant."""
    requantized = load_emulated(artifact("w1.1a4", root), requant="onnxruntime")
    planned = [a for a in requantized.plan.values() if "weight planes" in a.kernel]
    assert planned and all(a.requant is None and "planes carry their own scales" in a.source for a in planned)
    plain = load_emulated(artifact("w1.1a4", root))
    assert torch.equal(requantized(**INPUTS), plain(**INPUTS))
