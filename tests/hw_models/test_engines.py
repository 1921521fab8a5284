"""Engines beyond the GPU roofline: XNOR array, systolic NPU, fallback between engines, power modes."""

from math import ceil

import pytest

from hw_models import DeviceFileError, LayerWork, load_device
from hw_models.engines.systolic import SystolicEngine
from hw_models.workload import FP32
from hw_models.engines.xnor import XnorEngine
from simdq.scheme import quant_format


def operand(name):
    return quant_format(name).operand


def conv(weight="int8", activation="int8", dims=(1, 1024, 64, 576), kind="conv"):
    batch, m, n, k = dims
    w_bits, a_bits = operand(weight).bits, operand(activation).bits
    return LayerWork("conv", kind, batch * m * n * k, 0, k * n * w_bits / 8, batch * m * k * a_bits / 8,
                     batch * m * n * 4.0, 1, operand(activation), operand(weight), "fp32", dims)


@pytest.mark.parametrize("activation, planes", [("binary", 1), ("int4", 4), ("uint4", 4), ("int8", 8)])
def test_xnor_array_runs_activations_bit_serially(activation, planes):
    engine = XnorEngine("xnor", binary_macs_per_s=1e12, max_activation_bits=8, kernel_overhead_s=0.0,
                        dram_bandwidth=1e15)
    layer = conv("binary", activation)
    assert engine.planes(layer) == planes
    estimate = engine.estimate_layer(layer)
    assert estimate.compute_s == pytest.approx(layer.macs * planes / 1e12)
    assert f"{planes} bit-planes" in estimate.mapping or planes == 1 and "1 pass" in estimate.mapping


def test_xnor_array_refuses_what_it_cannot_run():
    engine = XnorEngine("xnor", 1e12, 4, 0.0, 1e12)
    assert not engine.can_run(conv("int8", "int8"))  # weights not binary
    assert not engine.can_run(conv("binary", "int8"))  # more planes than it takes
    assert not engine.can_run(conv("binary", "e4m3fn"))  # float activations
    assert not engine.can_run(LayerWork("norm", "norm", 0, 100, 0.0, 400.0, 400.0, 1, FP32))


def test_xnor_device_falls_back_for_other_layers():
    device = load_device("braintta")
    binary = device.estimate_layer(conv("binary", "int4"))
    full = device.estimate_layer(conv("fp32", "fp32"))
    norm = device.estimate_layer(LayerWork("norm", "norm", 0, 8000, 0.0, 4000.0, 4000.0, 1, FP32))
    assert (binary.engine, full.engine, norm.engine) == ("xnor", "int8", "int8")
    # binary x int4: 4 planes at 307 G binary MACs/s
    layer = conv("binary", "int4")
    assert binary.compute_s == pytest.approx(layer.macs * 4 / 307e9)


@pytest.mark.parametrize("activation, planes", [("binary", 1), ("int2", 2), ("int4", 4)])
def test_xnor_energy_by_hand_per_bit_plane(activation, planes):
    device = load_device("braintta")
    energy = device.engines["xnor"].energy
    layer = conv("binary", activation)
    batch, m, n, _ = layer.gemm_dims
    # per MAC and plane two binary ops of 35 fJ (BrainTTA); per output and plane one int8 MAC of the table,
    # scaled to the device's node; the traffic once through SRAM (scaled) and once through DRAM
    array_pj = layer.macs * planes * 2 * 35e-3
    post_pj = batch * m * n * planes * energy.table.mac_pj("int8") * energy.scale
    movement_pj = layer.traffic_bytes * (energy.sram_pj_per_byte * energy.scale + energy.dram_pj_per_byte)
    expected = (array_pj + post_pj + movement_pj) * 1e-12
    assert device.estimate_layer(layer).energy_j == pytest.approx(expected, rel=1e-12)


def test_systolic_weight_stationary_folds_and_traffic_by_hand():
    # a 3x3 conv, 64 -> 64 channels on 32x32 (M = 1024 positions, K = 576, N = 64), on an 8 x 8 array
    engine = SystolicEngine("npu", rows=8, cols=8, clock_hz=1e9, dataflow="weight_stationary",
                            macs_per_pe={"int8": 1}, buffer_bytes=3 * 4096, kernel_overhead_s=0.0,
                            dram_bandwidth=1e9)
    layer = conv()
    tiling = engine.tiling(layer, "int8")
    k_folds, n_folds = ceil(576 / 8), ceil(64 / 8)
    assert tiling.folds == k_folds * n_folds == 576
    assert tiling.cycles == 576 * (1024 + 8 + 8 - 2)
    # input (1024 x 576 bytes) exceeds its 4 KB third of the buffer: read once per column fold
    assert tiling.input_reads == n_folds and tiling.weight_reads == 1
    # partial sums of a 1024 x 8 column tile (32 KB) do not stay: written and read back between K folds
    assert tiling.output_passes == 2 * k_folds - 1
    spill = (tiling.output_passes - 1) * 1024 * 64 * 4
    assert tiling.dram_bytes == 1024 * 576 * n_folds + 576 * 64 + 1024 * 64 * 4 + spill
    estimate = engine.estimate_layer(layer)
    assert estimate.memory_s == pytest.approx(tiling.dram_bytes / 1e9) and "stall" in estimate.mapping


def test_systolic_output_stationary_and_a_buffer_that_holds_everything():
    engine = SystolicEngine("npu", rows=16, cols=16, clock_hz=1e9, dataflow="output_stationary",
                            macs_per_pe={"int8": 1, "int16": 0.5}, buffer_bytes=3e6, kernel_overhead_s=0.0,
                            dram_bandwidth=1e9)
    layer = conv()
    tiling = engine.tiling(layer, "int8")
    assert tiling.folds == ceil(1024 / 16) * ceil(64 / 16)
    assert tiling.cycles == tiling.folds * (576 + 16 + 16 - 2)
    assert (tiling.input_reads, tiling.weight_reads, tiling.output_passes) == (1, 1, 1)
    assert tiling.dram_bytes == 1024 * 576 + 576 * 64 + 1024 * 64 * 4
    # int16 activations run at half rate
    assert engine.tiling(conv("int8", "int16"), "int16").cycles == 2 * tiling.cycles
    assert engine.choose_precision(conv("int8", "int16")) == "int16"
    assert not engine.can_run(conv("fp16", "fp16"))


def test_engine_selection_and_power_modes():
    gpu, dla = load_device("jetson"), load_device("jetson:dla")
    assert dla.order == ("dla", "gpu") and gpu.order == ("gpu",)
    assert (gpu.label, load_device("jetson:dla@30W").label) == ("jetson-agx-orin-64gb:gpu@MAXN",
                                                               "jetson-agx-orin-64gb:dla@30W")
    assert dla.estimate_layer(conv()).engine == "dla"
    assert dla.estimate_layer(conv("fp32", "fp32")).engine == "gpu"  # the DLA has no fp32
    slow = load_device("jetson@15W")
    assert slow.mode == "15W"
    assert slow.primary.rates.peaks["int8"] == pytest.approx(gpu.primary.rates.peaks["int8"] * 14 / 171, rel=1e-3)
    assert gpu.primary.rates.sparse_peaks["int8"] == 2 * gpu.primary.rates.peaks["int8"]
    with pytest.raises(DeviceFileError, match=r"unknown power mode '20W' \(did you mean '50W'\?\); allowed: MAXN, 50W, 30W, 15W$"):
        load_device("jetson@20W")
    with pytest.raises(DeviceFileError, match=r"has no engine 'npu'; allowed: gpu, dla"):
        load_device("jetson:npu")
    with pytest.raises(DeviceFileError, match="has no power modes"):
        load_device("h100@30W")


EVERY_FORMAT_FAMILY = ["fp32", "fp16", "bf16", "int8", "int4", "uint8", "binary", "e4m3fn", "e5m2", "e2m1", "mxfp4",
                       "nvfp4", "mxint8"]


@pytest.mark.parametrize("device", ["h100", "h100-pcie", "h200", "a100", "rtx4090", "l4", "jetson", "jetson:dla",
                                    "orin-nano", "edgetpu", "ethos-u65", "hailo8", "braintta", "xne", "binareye"])
def test_every_device_maps_every_format_family(device):
    loaded = load_device(device)
    for weights in EVERY_FORMAT_FAMILY:
        for activations in ("fp32", "fp16", "int8", "int4", "binary", "e4m3fn"):
            estimate = loaded.estimate_layer(conv(weights, activations))
            assert estimate.latency_s > 0 and estimate.energy_j > 0, (device, weights, activations)
            assert estimate.engine in loaded.engines
            if estimate.compute_precision is not None and estimate.compute_precision != "b1":
                from hw_models import fits

                assert fits(operand(weights), estimate.compute_precision) or "vector" in estimate.mapping


def test_quantized_gemms_pay_for_unpacking_and_rescaling():
    batch, m, n, k = 1, 1024, 64, 576
    layer = conv("int4", "int4", (batch, m, n, k))
    h100 = load_device("h100").estimate_layer(layer)  # int4 runs on int8 units: both operands unpacked
    extra = k * n + batch * m * k + 2 * batch * m * n
    assert h100.compute_precision == "int8"
    assert h100.compute_s == pytest.approx(2 * layer.macs / 1978.9e12 + extra / 67e12)
    assert f"+ {extra:,} vector ops: unpack weights, unpack activations, rescale outputs" in h100.mapping
    orin = load_device("jetson").estimate_layer(layer)  # native int4: only the output rescale
    assert orin.compute_precision == "int4" and orin.compute_s == pytest.approx(
        2 * layer.macs / 171e12 + 2 * batch * m * n / 5.3e12)
    block = load_device("h100").estimate_layer(conv("mxfp4", "mxfp8_e4m3", (batch, m, n, k)))
    assert "per-block scales" in block.mapping and f"{k * n + 2 * m * n + m * n * (k // 32):,}" in block.mapping


def test_an_unknown_key_of_a_systolic_engine_lists_the_systolic_keys(tmp_path):
    import yaml

    from hw_models.catalog import DEVICE_DIR

    data = yaml.safe_load((DEVICE_DIR / "edgetpu-like.yaml").read_text())
    data["engines"]["npu"]["rowz"] = data["engines"]["npu"].pop("rows")
    path = tmp_path / "npu.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(DeviceFileError, match=r"npu\.yaml: engines\.npu\.rowz: unknown key \(did you mean 'rows'\?\); "
                                              r"allowed: model, description, kinds, rows, cols, clock_hz, dataflow, "):
        load_device(str(path))
    data["engines"]["npu"]["rows"] = data["engines"]["npu"].pop("rowz")
    data["engines"]["npu"]["rows"]["value"] = 6.5
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(DeviceFileError, match=r"engines\.npu\.rows\.value: expected a positive integer up to 2\*\*31, got 6\.5$"):
        load_device(str(path))

