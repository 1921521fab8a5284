"""Device catalogue, precision mapping and the roofline model, against hand-computed cases."""

import pytest
import yaml

from hw_models import DeviceFileError, LayerWork, fits, list_devices, load_device
from hw_models.catalog import DEVICE_DIR
from hw_models.workload import FP16, FP32
from simdq.scheme import quant_format


def operand(name):
    return quant_format(name).operand


def gemm(macs=10**9, weight="fp16", activation="fp16", traffic=0.0, kernels=1, kind="linear"):
    return LayerWork("gemm", kind, macs, 0, traffic, 0.0, 0.0, kernels, operand(activation), operand(weight))


@pytest.mark.parametrize("name, inside, outside", [
    ("int4", ["int4", "int8", "fp8", "fp16", "fp32"], ["b1"]),
    ("int8", ["int8", "fp16", "bf16", "fp32"], ["int4", "fp8", "b1"]),
    ("uint8", ["int8", "fp16", "bf16"], ["int4", "fp8"]),  # 255 needs 8 significant bits
    ("binary", ["b1", "int4", "int8", "fp8", "fp16"], []),
    ("e4m3fn", ["fp8", "fp16", "bf16", "tf32", "fp32"], ["int8", "b1"]),
    ("e5m2", ["fp8", "fp16", "bf16", "fp32"], ["int8"]),
    ("e2m1", ["fp8", "fp16", "bf16"], ["int4"]),
    ("bf16", ["bf16", "tf32", "fp32"], ["fp16", "fp8"]),  # fp16 lacks the exponent range
    ("fp32", ["fp32"], ["tf32", "fp16", "bf16"]),
])
def test_exact_representability(name, inside, outside):
    for precision in inside:
        assert fits(operand(name), precision), (name, precision)
    for precision in outside:
        assert not fits(operand(name), precision), (name, precision)


# (weights, activations) -> compute precision on each device
MAPPING = {
    ("fp32", "fp32"): ("fp32", "fp32"),
    ("fp16", "fp16"): ("fp16", "fp16"),
    ("int8", "int8"): ("int8", "int8"),
    ("int4", "int4"): ("int8", "int4"),
    ("int4", "fp16"): ("fp16", "fp16"),
    ("binary", "binary"): ("int8", "b1"),
    ("binary", "int4"): ("int8", "int4"),
    ("e4m3fn", "e4m3fn"): ("fp8", "fp16"),
    ("e4m3fn", "e5m2"): ("fp8", "fp16"),
    ("int4", "e4m3fn"): ("fp8", "fp16"),
    ("int8", "e4m3fn"): ("fp16", "fp16"),
    ("e2m1", "e2m1"): ("fp8", "fp16"),
    ("e2m3", "e3m2"): ("fp8", "fp16"),
    ("mxfp4", "mxfp8_e4m3"): ("fp8", "fp16"),
    ("mxint8", "mxint8"): ("int8", "int8"),
    ("nvfp4", "nvfp4"): ("fp8", "fp16"),
}


@pytest.mark.parametrize("pair", sorted(MAPPING))
def test_precision_mapping_table(pair):
    for device_name, expected in zip(("h100", "jetson"), MAPPING[pair]):
        device = load_device(device_name)
        estimate = device.estimate_layer(gemm(weight=pair[0], activation=pair[1]))
        assert estimate.compute_precision == expected, (device_name, pair)


def test_mapping_descriptions():
    h100 = load_device("h100")
    assert "weights dequantized to fp16" in h100.estimate_layer(gemm(weight="int4", activation="fp16")).mapping
    assert "-> int8 (upcast) + unpack weights, unpack activations" in h100.estimate_layer(
        gemm(weight="int4", activation="int4")).mapping
    assert "block scales" in h100.estimate_layer(gemm(weight="mxfp4", activation="mxfp4")).mapping
    jetson = load_device("jetson")
    assert "-> b1 (native) + rescale outputs" in jetson.estimate_layer(gemm(weight="binary", activation="binary")).mapping


def test_gemm_exactly_at_the_ridge_point():
    device = load_device("h100-roofline")
    peak, bandwidth = device.primary.rates.peaks["fp16"], device.primary.dram_bandwidth
    macs = 2**34  # large enough that the per-kernel floor does not decide
    traffic = 2 * macs / peak * bandwidth  # arithmetic intensity = peak / bandwidth
    estimate = device.estimate_layer(gemm(macs, traffic=traffic))
    assert estimate.compute_s == pytest.approx(2 * macs / peak, rel=1e-12)
    assert estimate.memory_s == pytest.approx(estimate.compute_s, rel=1e-12)
    assert estimate.latency_s == pytest.approx(estimate.compute_s, rel=1e-12)
    heavier = device.estimate_layer(gemm(macs, traffic=traffic * 1.01))
    assert heavier.bottleneck == "memory" and heavier.latency_s > estimate.latency_s


def test_memory_bound_elementwise_and_overhead_bound_tiny_op():
    device = load_device("jetson")
    elements = 64 * 10**6
    silu = LayerWork("act", "elementwise", 0, 4 * elements, 0.0, 4.0 * elements, 4.0 * elements, 1, FP32)
    estimate = device.estimate_layer(silu)
    assert estimate.bottleneck == "memory"
    assert estimate.latency_s == pytest.approx(8 * elements / 204.8e9)
    assert estimate.compute_s == pytest.approx(4 * elements / 5.3e12)
    assert estimate.compute_precision is None
    tiny = LayerWork("add", "elementwise", 0, 10, 0.0, 40.0, 40.0, 3, FP16)
    tiny_estimate = device.estimate_layer(tiny)
    assert tiny_estimate.bottleneck == "overhead" and tiny_estimate.latency_s == pytest.approx(3 * 4.5e-6)


def test_catalogue_names_and_aliases():
    names = {d.name for d in list_devices()}
    assert {"h100-sxm", "jetson-agx-orin-64gb"} <= names
    assert load_device("H100").name == "h100-sxm" and load_device("orin").name == "jetson-agx-orin-64gb"
    with pytest.raises(DeviceFileError, match=r"unknown device 'h10'.*did you mean"):
        load_device("h10")


def _device_file(tmp_path, mutate=None):
    data = yaml.safe_load((DEVICE_DIR / "h100-sxm.yaml").read_text())
    data["name"] = "my-gpu"
    if mutate:
        mutate(data)
    path = tmp_path / "my-gpu.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_custom_device_file_is_used(tmp_path):
    def halve_bandwidth(data):
        data["memory"]["dram"]["bandwidth"] /= 2

    device = load_device(_device_file(tmp_path, halve_bandwidth))
    assert device.name == "my-gpu" and device.primary.dram_bandwidth == pytest.approx(3.35e12 / 2)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["engines"]["gpu"]["compute"]["fp16"].pop("source"), r"engines\.gpu\.compute\.fp16\.source: required key is missing$"),
    (lambda d: d["engines"]["gpu"]["compute"].update(fp9={"peak": 1, "source": "x"}),
     r"engines\.gpu\.compute\.fp9: unknown compute precision 'fp9' \(did you mean 'fp8'\?\); allowed: fp32, "),
    (lambda d: d["engines"]["gpu"]["vector"].update(peak=-1), r"vector\.peak: expected a positive finite number"),
    (lambda d: d["engines"]["gpu"]["vector"].update(peak=float("inf")), r"vector\.peak: expected a positive finite .*got inf$"),
    (lambda d: d["memory"]["dram"].update(bandwidth=1e300), r"dram\.bandwidth: expected a positive finite number up to"),
    (lambda d: d["engines"]["gpu"].update(model="cycle-accurate"), r"engines\.gpu\.model: unknown engine model"),
    (lambda d: d["engines"]["gpu"].update(model="systolc"),
     r"engines\.gpu\.model: unknown engine model 'systolc' \(did you mean 'systolic'\?\); allowed: roofline, "),
    (lambda d: d["engines"]["gpu"].update(vectr={}),
     r"engines\.gpu\.vectr: unknown key \(did you mean 'vector'\?\); allowed: model, description, kinds, compute, "),
    (lambda d: d["engines"]["gpu"]["kernel_overhead_s"].update(value=True),
     r"kernel_overhead_s\.value: expected a positive finite number up to 1e\+30, got True$"),
    (lambda d: d["engines"]["gpu"].update(kinds=["conv", "attention"]),
     r"engines\.gpu\.kinds\[1\]: unknown layer kind 'attention' \(did you mean 'attention_matmul'\?\)"),
    (lambda d: d.update(power_modes={"low": {"gpux": {"scale": 0.5, "source": "x"}}}),
     r"power_modes\.low\.gpux: unknown engine 'gpux' \(did you mean 'gpu'\?\)"),
    (lambda d: d.update(default_engine="dla"), r"default_engine: 'dla' is not an engine"),
    (lambda d: d["memory"].update(dramm={}), r"memory\.dramm: unknown key \(did you mean 'dram'\?\)"),
])
def test_device_file_errors(tmp_path, mutate, message):
    with pytest.raises(DeviceFileError, match=message):
        load_device(_device_file(tmp_path, mutate))


def test_device_file_that_is_not_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(DeviceFileError, match=r"bad\.yaml: line \d+: not valid YAML"):
        load_device(str(path))
    with pytest.raises(DeviceFileError, match=r"missing\.yaml: no such device file$"):
        load_device(str(tmp_path / "missing.yaml"))
