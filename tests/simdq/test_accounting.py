"""Cost accounting: conventions, layer policies, stored weight bytes, per-image totals."""

from fnmatch import fnmatchcase
from math import ceil

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from unet_fixtures import traced

from simdq.cost.accounting import weight_storage_bits
from simdq.cli.estimate import run_estimate
from simdq.model.layer import Layer
from simdq.config import parse_config
from simdq.scheme import quant_format

BEDROOMS = {"preset": "ldm4-lsun-bedrooms"}
BINARYDM_FULL_PRECISION = ("time_embedding.linear_1", "time_embedding.linear_2", "conv_in", "conv_out")


def estimate(quant=None, model=BEDROOMS, device="jetson", **sections):
    config = parse_config({"model": model, "quant": quant or {}, **sections}, "test.yaml")
    return run_estimate(config, device)


def _weight_modules(model):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]


def test_full_precision_bedrooms_matches_binarydm_table():
    totals = estimate().totals
    assert round(totals["size_mib"], 1) == 1045.4
    assert round(totals["ops"] / 1e9, 1) == 96.0
    assert totals["bops"] == 0 and totals["flops"] == totals["macs"] == totals["ops"]


@pytest.mark.parametrize("weights, bits", [("binary", 1), ("int2", 2), ("int4", 4)])
def test_binarydm_size_counts_quantized_weights_at_their_bits_and_the_rest_at_32(weights, bits):
    _, model, _, _ = traced("ldm4-lsun-bedrooms")
    expected_bits = 0
    for name, module in _weight_modules(model):
        if name not in BINARYDM_FULL_PRECISION:
            expected_bits += module.weight.numel() * (bits - 32)
    expected_bits += 32 * sum(p.numel() for p in model.parameters())
    totals = estimate({"weights": weights, "activations": "int4", "policy": "binarydm"}).totals
    assert totals["size_mib"] == pytest.approx(expected_bits / 8 / 2**20, rel=1e-12)


def test_binarydm_ops_are_bops_over_64_plus_full_precision_macs():
    _, model, inputs, _ = traced("ldm4-lsun-bedrooms")
    result = estimate({"weights": "binary", "activations": "int4", "policy": "binarydm"})
    by_name = {r.layer.name: r.layer.macs for r in result.layers}
    full = sum(by_name[n] for n in BINARYDM_FULL_PRECISION)
    quantized = sum(by_name[n] for n, _ in _weight_modules(model)) - full
    assert result.totals["bops"] == 1 * 4 * quantized
    assert result.totals["ops"] == pytest.approx(4 * quantized / 64 + full)


def test_bidm_as_published_reproduces_its_bops_and_leaves_skip_convs_out():
    result = estimate({"weights": "binary", "activations": "binary", "policy": "bidm-as-published"})
    assert round(result.totals["bops"] / 1e9, 1) == 92.1  # BiDM Table 4
    skips = [r for r in result.layers if r.layer.name.endswith("conv_shortcut")]
    assert skips and all(not r.cost.counted and r.cost.bops == 0 and r.cost.size_bytes > 0 for r in skips)
    assert result.uncounted["excluded_layer_macs"] == sum(r.layer.macs for r in skips)


def test_bidm_as_coded_adds_a_full_precision_shortcut_per_binary_conv_changing_channels():
    result = estimate({"weights": "binary", "activations": "binary", "policy": "bidm-as-coded"})
    _, model, _, _ = traced("ldm4-lsun-bedrooms")
    expected = {
        name for name, m in model.named_modules()
        if isinstance(m, torch.nn.Conv2d) and m.in_channels != m.out_channels
        and name not in ("conv_in", "conv_out") and not name.endswith("conv_shortcut")
    }
    extras = {r.layer.name.removesuffix(".bidm_shortcut"): r for r in result.layers
              if r.layer.name.endswith(".bidm_shortcut")}
    assert set(extras) == expected
    for name, r in extras.items():
        assert r.scheme.weight.name == "fp32" and r.cost.flops == r.layer.macs == r.layer.write * r.layer.in_channels


def test_bidm_as_coded_adds_the_scale_path_beside_every_binary_conv():
    result = estimate({"weights": "binary", "activations": "binary", "policy": "bidm-as-coded"})
    binary = {r.layer.name: r.layer for r in result.layers
              if r.layer.kind == "conv" and not r.layer.extra and r.scheme.weight.family == "binary"}
    paths = {}
    for r in result.layers:
        if ".bidm_scale." in r.layer.name:
            conv, part = r.layer.name.split(".bidm_scale.")
            paths.setdefault(conv, {})[part] = r
    assert set(paths) == set(binary) and len(binary) == 50  # LDM-4: every conv but the ends and skip convs
    for name, parts in paths.items():
        conv = binary[name]
        batch, channels, height, width = conv.input_shape
        out_height, out_width = conv.output_shape[2:]
        mean, k_conv, multiply = parts["mean_abs"], parts["k_conv"], parts["multiply"]
        # |x| and a sum per input element, a division per position
        assert mean.layer.vector_flops == 2 * batch * channels * height * width + batch * height * width
        # one k x k filter from the mean map to one channel, at the conv's output positions, at full precision
        assert k_conv.layer.macs == batch * out_height * out_width * conv.kernel_size[0] * conv.kernel_size[1]
        assert k_conv.scheme.weight.name == "fp32" and k_conv.cost.flops == k_conv.layer.macs
        # y * K: one product per output element
        assert multiply.layer.vector_flops == conv.write == batch * conv.out_channels * out_height * out_width
    published = estimate({"weights": "binary", "activations": "binary", "policy": "bidm-as-published"})
    assert not any(".bidm_scale." in r.layer.name for r in published.layers)


def test_efficientdm_as_coded_policy_formats():
    result = estimate({"weights": "int4", "activations": "int4", "policy": "efficientdm-as-coded"})
    formats = {r.layer.name: (r.scheme.weight.name, r.scheme.activation.name) for r in result.layers
               if r.layer.is_weight_layer}
    for name, pair in formats.items():
        if name in BINARYDM_FULL_PRECISION:
            assert pair == ("int8", "int8"), name
        elif name.endswith(("conv_shortcut", ".to_q", ".to_k", ".to_v", "to_out.0")) or ".downsamplers." in name:
            assert pair == ("fp32", "fp32"), name
        else:
            assert pair == ("int4", "int4"), name


def test_user_rules_come_before_the_policy_and_first_match_wins():
    result = estimate({
        "weights": "int4", "activations": "int4", "policy": "binarydm",
        "rules": [{"match": ["conv_in"], "weights": "int8", "activations": "int8"},
                  {"match": "conv_*", "weights": "e4m3fn"},
                  {"match": "*.conv1", "count_ops": False}],
    })
    schemes = {r.layer.name: r.scheme for r in result.layers}
    assert (schemes["conv_in"].weight.name, schemes["conv_in"].decided_by) == ("int8", "rules[0]")
    assert (schemes["conv_out"].weight.name, schemes["conv_out"].activation.name) == ("e4m3fn", "int4")
    assert schemes["time_embedding.linear_1"].decided_by == "policy binarydm"
    assert not schemes["down_blocks.0.resnets.0.conv1"].count_ops


def test_full_convention_counts_every_gemm_twice_plus_non_gemm_arithmetic():
    _, model, inputs, _ = traced("ldm4-lsun-bedrooms")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(**inputs)
    result = estimate(convention="full")
    vector = sum(r.layer.vector_flops for r in result.layers)
    assert result.totals["ops"] == counter.get_total_flops() + vector
    assert result.totals["flops"] == result.totals["ops"]  # all full precision
    assert result.uncounted == {"attention_macs": 0, "excluded_layer_macs": 0, "non_gemm_flops": 0}


def test_quantized_attention_counts_bops_under_full_only():
    attention = {"quantize": True, "activations": "int8"}
    full = estimate({"weights": "int8", "activations": "int8", "attention": attention}, convention="full")
    paper = estimate({"weights": "int8", "activations": "int8", "attention": attention})
    attention_macs = sum(r.layer.macs for r in full.layers if r.layer.kind == "attention_matmul")
    weight_macs = sum(r.layer.macs for r in full.layers if r.layer.is_weight_layer)
    assert full.totals["bops"] == 64 * (attention_macs + weight_macs)
    assert paper.totals["bops"] == 64 * weight_macs


def _layer(weight_params=4096, out_channels=64):
    return Layer(name="x", module="x", module_type="Conv2d", kind="conv", weight_params=weight_params,
                 out_channels=out_channels, in_channels=weight_params // out_channels)


def _quant(**quant):
    return parse_config({"model": BEDROOMS, "quant": quant}, "t").quant


@pytest.mark.parametrize("granularity, scales", [
    ({"weights": "per_tensor"}, 1), ({"weights": "per_channel"}, 64),
    ({"weights": "per_group", "group_size": 48}, 64 * ceil(64 / 48)),
])
def test_stored_int4_weights_include_their_scales(granularity, scales):
    quant = _quant(weights="int4", granularity=granularity)
    assert weight_storage_bits(_layer(), quant_format("int4"), quant, 16) == 4096 * 4 + scales * 16


@pytest.mark.parametrize("fmt, planes", [("binary", 1), ("binary2", 2)])
def test_binary_weights_keep_a_scale_per_channel_under_per_group(fmt, planes):
    quant = _quant(weights=fmt, granularity={"weights": "per_group", "group_size": 16})
    assert weight_storage_bits(_layer(), quant_format(fmt), quant, 16) == 4096 * planes + 64 * planes * 16


def test_stored_weights_with_zero_points_and_block_formats():
    quant = _quant(weights="uint4", weight_zero_point=True)
    assert weight_storage_bits(_layer(), quant_format("uint4"), quant, 32) == 4096 * 4 + 64 * (32 + 4)
    assert weight_storage_bits(_layer(), quant_format("mxfp4"), quant, 32) == 4096 * 4 + 4096 // 32 * 8
    assert weight_storage_bits(_layer(), quant_format("nvfp4"), quant, 32) == 4096 * 4 + 4096 // 16 * 8 + 32
    assert weight_storage_bits(_layer(), quant_format("fp16"), quant, 32) == 4096 * 16


def test_per_image_totals_and_savings():
    result = estimate({"weights": "int4", "activations": "int4"},
                      input={"batch": 2, "steps": 10, "guidance": True})
    factor = 10 * 2 / 2
    for key in ("macs", "ops", "latency_s", "read_bytes"):
        assert result.per_image[key] == pytest.approx(result.totals[key] * factor)
    assert result.baseline["size_mib"] / result.totals["size_mib"] > 7.5
    assert result.baseline["params"] == result.totals["params"]


def test_rules_match_module_paths_with_globs():
    result = estimate({"weights": "int4", "activations": "int8", "rules": [{"match": "up_blocks.*", "weights": "int8"}]})
    for r in result.layers:
        if r.layer.is_weight_layer:
            expected = "int8" if fnmatchcase(r.layer.name, "up_blocks.*") else "int4"
            assert r.scheme.weight.name == expected, r.layer.name


# One conv worked out by hand: 3x3, 64 -> 32 channels (K = 576 > the group size 128), 100 output positions,
# 1,000 input elements read by the GEMM and 200 more by the ops around it (a strided copy).
HAND_CONV = Layer("conv", "conv", "Conv2d", "conv", macs=100 * 32 * 576, gemm_read=1000, read=200, write=3200,
                  kernels=1, weight_params=32 * 576, other_params=32, in_channels=64, out_channels=32,
                  kernel_size=(3, 3), gemm_dims=(1, 100, 32, 576))


def hand_cost(quant, convention="full", layer=HAND_CONV):
    from simdq.cost.accounting import layer_cost
    from simdq.scheme import resolve

    config = parse_config({"model": {"preset": "sd15"}, "quant": quant}, "t")
    scheme = resolve([layer], config.quant, "fp32")[0]
    return layer_cost(layer, scheme, config.quant, quant_format("fp32"), 32, convention)


@pytest.mark.parametrize("granularity, scales", [
    ({"weights": "per_tensor"}, 1),
    ({"weights": "per_channel"}, 32),
    ({"weights": "per_group", "group_size": 128}, 32 * 5),  # ceil(576 / 128) groups per output channel
])
def test_stored_weight_bits_by_hand(granularity, scales):
    cost = hand_cost({"weights": "int4", "activations": "int8", "granularity": granularity})
    assert cost.weight_bytes == (32 * 576 * 4 + scales * 32 + 32 * 32) / 8  # codes, fp32 scales, the bias


@pytest.mark.parametrize("activations, gemm_bits", [
    ("int4", 1000 * 4),
    ("e4m3fn", 1000 * 8),
    ("mxfp4", 1000 * 4 + ceil(1000 / 32) * 8),  # an E8M0 scale per block of 32
    ("nvfp4", 1000 * 4 + ceil(1000 / 16) * 8),  # an E4M3 scale per block of 16
])
def test_read_bytes_by_hand(activations, gemm_bits):
    cost = hand_cost({"weights": "int4", "activations": activations})
    assert cost.read_bytes == (gemm_bits + 200 * 32) / 8  # the GEMM's input at its format, the rest at fp32
    assert cost.write_bytes == 3200 * 32 / 8


@pytest.mark.parametrize("convention", ["binarydm", "full"])
def test_weight_only_quantization_counts_bops_at_the_activations_width(convention):
    cost = hand_cost({"weights": "int4"}, convention)  # activations stay fp32
    assert cost.bops == 4 * 32 * HAND_CONV.macs
    assert cost.flops == 0
    assert cost.ops == (4 * 32 * HAND_CONV.macs / 64 if convention == "binarydm" else 2 * HAND_CONV.macs)
    unquantized = hand_cost({}, convention)
    assert (unquantized.bops, unquantized.flops) == (0, HAND_CONV.macs * (1 if convention == "binarydm" else 2))


def test_full_convention_counts_the_hand_conv_in_full():
    quant = {"weights": "int4", "activations": "int8", "granularity": {"weights": "per_channel"}}
    layer = Layer(**{**HAND_CONV.__dict__, "vector_flops": 3200})  # a bias add the GEMM did not fuse
    cost = hand_cost(quant, "full", layer)
    weight_bits = 32 * 576 * 4 + 32 * 32  # codes and one fp32 scale per output channel
    assert cost.counted is True
    assert (cost.macs, cost.bops, cost.flops, cost.ops) == (layer.macs, 4 * 8 * layer.macs, 3200,
                                                           2 * layer.macs + 3200)
    assert cost.size_bytes == (weight_bits + 32 * 32) / 8  # as stored, and the fp32 bias
    assert cost.weight_bytes == cost.size_bytes
    paper = hand_cost(quant, "binarydm", layer)
    assert (paper.macs, paper.bops, paper.flops) == (layer.macs, 4 * 8 * layer.macs, 0)
    assert paper.size_bytes == (32 * 576 * 4 + 32 * 32) / 8  # codes at 4 bits, no scales, the bias at 32


def test_layer_work_is_what_the_device_model_is_given():
    from simdq.cost.estimate import LayerResult, layer_work
    from simdq.scheme import resolve

    config = parse_config({"model": {"preset": "sd15", "dtype": "fp16"}, "quant": {"weights": "int8",
                                                                                   "activations": "int4"}}, "t")
    scheme = resolve([HAND_CONV], config.quant, "fp16")[0]
    cost = hand_cost({"weights": "int8", "activations": "int4"})
    work = layer_work(LayerResult(HAND_CONV, scheme, cost, None), "fp16")
    assert (work.name, work.kind, work.macs, work.kernels, work.gemm_dims) == (
        "conv", "conv", HAND_CONV.macs, 1, (1, 100, 32, 576))
    assert (work.weight_format.name, work.activation_format.name, work.vector_dtype) == ("int8", "int4", "fp16")
    assert (work.weight_bytes, work.read_bytes, work.write_bytes) == (cost.weight_bytes, cost.read_bytes,
                                                                      cost.write_bytes)
    unused = Layer("orphan", "orphan", "Linear", "unused", other_params=10)
    assert layer_work(LayerResult(unused, scheme, cost, None), "fp16") is None
    relayout = Layer("norm", "norm", "GroupNorm", "elementwise", read=600, write=600, kernels=2, relayout_kernels=1,
                     relayout=1000)
    for dtype, size in (("fp16", 2), ("fp32", 4)):
        work = layer_work(LayerResult(relayout, scheme, cost, None), dtype)
        assert (work.relayout_kernels, work.relayout_bytes) == (1, 1000 * size)


@pytest.mark.parametrize("preset", ["ldm4-lsun-bedrooms", "ddpm-cifar10"])
def test_the_device_sees_a_stride_only_on_the_downsampling_convolutions(preset):
    from simdq.cost.estimate import layer_work

    result = estimate({}, {"preset": preset})
    strides = {r.layer.name: layer_work(r, "fp16").stride for r in result.layers if r.layer.kind == "conv"}
    # ddpm-cifar10 pads its downsampling convolutions on one side first (33 x 33 in, 16 x 16 out)
    assert {name for name, stride in strides.items() if stride == 2} == {
        name for name in strides if ".downsamplers." in name}
    assert set(strides.values()) == {1, 2}


def test_the_device_sees_the_weights_and_the_model_dtype():
    result = estimate({"weights": "int8", "activations": "int4"}, {"preset": "sd15", "dtype": "fp16"})
    conv = next(r for r in result.layers if r.layer.kind == "conv" and r.scheme.decided_by == "scheme")
    assert conv.device.compute_precision == "int8"  # int8 weights hold int4 inputs; int4 x int4 would be int4
    norm = next(r for r in result.layers if r.layer.kind == "norm")
    assert norm.device.mapping == "vector fp16"


def test_not_counted_names_the_attention_macs_the_papers_leave_out():
    result = estimate({"weights": "binary", "activations": "int4", "policy": "binarydm"})
    attention = sum(r.layer.macs for r in result.layers if r.layer.kind == "attention_matmul")
    assert attention > 0 and result.uncounted["attention_macs"] == attention
    assert estimate({"weights": "binary", "activations": "int4"}, convention="full").uncounted["attention_macs"] == 0


def test_energy_total_is_unknown_when_one_layer_has_none():
    from types import SimpleNamespace

    from simdq.cost.estimate import totals_of

    cost = hand_cost({})
    timed = lambda energy: SimpleNamespace(cost=cost, device=SimpleNamespace(latency_s=1.0, energy_j=energy))  # noqa: E731
    assert totals_of([timed(1.0), timed(2.0)])["energy_j"] == 3.0
    assert totals_of([timed(1.0), timed(None)])["energy_j"] is None


@pytest.mark.parametrize("convention", ["binarydm", "full"])
def test_the_baseline_is_the_unquantized_model_under_the_same_convention(convention):
    import time

    from hw_models import load_device
    from simdq.presets import preset_spec

    started = time.perf_counter()
    quantized = estimate({"weights": "binary", "activations": "int4", "policy": "binarydm"}, convention=convention)
    wall = time.perf_counter() - started
    unquantized = estimate(convention=convention)
    for key in ("params", "size_mib", "weight_bytes", "macs", "bops", "flops", "ops", "latency_s", "energy_j"):
        assert quantized.baseline[key] == unquantized.totals[key], key
    assert quantized.description == preset_spec("ldm4-lsun-bedrooms").description
    assert quantized.device_description == load_device("jetson").description
    assert set(quantized.timings) == {"model build", "tracing", "accounting"}
    assert all(0 < seconds <= wall for seconds in quantized.timings.values())


def test_per_image_keeps_an_unknown_energy_unknown(tmp_path):
    import yaml

    from hw_models.catalog import DEVICE_DIR

    data = yaml.safe_load((DEVICE_DIR / "h100-sxm.yaml").read_text())
    del data["energy"]
    path = tmp_path / "no-energy.yaml"
    path.write_text(yaml.safe_dump(data))
    result = estimate({"weights": "int8", "activations": "int8"}, {"preset": "ddpm-cifar10"}, str(path),
                      input={"steps": 10})
    assert result.totals["energy_j"] is None and result.per_image["energy_j"] is None
    assert result.per_image["latency_s"] == pytest.approx(10 * result.totals["latency_s"], rel=1e-12)


def test_two_basis_binary_weights_cost_two_planes_by_hand():
    from simdq.cost.estimate import LayerResult, layer_work
    from simdq.scheme import resolve

    quant = {"weights": "binary2", "activations": "int4"}
    cost = hand_cost(quant)
    # two sign bits a weight, two fp32 scales per output channel, the fp32 bias
    assert cost.weight_bytes == (32 * 576 * 2 + 2 * 32 * 32 + 32 * 32) / 8
    assert cost.bops == 2 * 4 * HAND_CONV.macs  # two planes, each W1 x A4
    paper = hand_cost(quant, "binarydm")
    assert (paper.bops, paper.size_bytes) == (2 * 4 * HAND_CONV.macs, (32 * 576 * 2 + 32 * 32) / 8)
    config = parse_config({"model": {"preset": "sd15"}, "quant": quant}, "t")
    scheme = resolve([HAND_CONV], config.quant, "fp32")[0]
    work = layer_work(LayerResult(HAND_CONV, scheme, cost, None), "fp32")
    # each plane is a GEMM pass: stacked as extra output channels of one GEMM
    assert (work.macs, work.gemm_dims, work.weight_format.planes) == (2 * HAND_CONV.macs, (1, 100, 64, 576), 2)


def test_two_basis_layers_take_two_passes_on_every_engine():
    layer = {"layer": {"kind": "conv", "in_channels": 448, "out_channels": 448, "kernel_size": 3, "size": 32}}
    times = {}
    for device in ("xne", "jetson"):
        for weights in ("binary", "binary2"):
            result = estimate({"weights": weights, "activations": "int4"}, layer, device, convention="full")
            conv = result.layers[0].device
            times[device, weights] = conv.compute_s
            if weights == "binary2":
                assert "2 weight planes" in conv.mapping
    assert times["xne", "binary2"] == pytest.approx(2 * times["xne", "binary"], rel=1e-12)
    assert times["jetson", "binary2"] > times["jetson", "binary"]
