"""GPU models: calibrated by default with a roofline twin, TF32, the kernels of dynamic quantization, and energy
fitted to a GPU's own counter (static power x time + energy per action)."""

import copy
import dataclasses

import numpy as np
import pytest

from hw_models import LayerWork, load_device
from hw_models.actions import Actions
from hw_models.energy import MeasuredEnergy
from hw_models.fit import Sample, fit_energy, nonnegative_least_squares, symmetric_relative_fit
from hw_models.workload import FP16, FP32, OperandFormat, dequantize_work, quantize_work

E4M3 = OperandFormat("e4m3", "float", 8, True, 4, 8, -9)
INT8 = OperandFormat("int8", "int", 8)


@pytest.mark.parametrize("name", ["h100", "h200"])
def test_the_plain_name_is_the_calibrated_model_and_name_roofline_its_roofline(name):
    calibrated, roofline = load_device(name), load_device(f"{name}-roofline")
    assert calibrated.primary.classes and not hasattr(roofline.primary, "classes")
    # both fits read the GPU's energy counter during hw calibrate; the roofline twins keep the node table
    assert "measured" in calibrated.primary.energy.kind
    assert "dynamic only" in roofline.primary.energy.kind
    conv = LayerWork("c", "conv", 2**30, 0, 2 * 2**20, 2 * 2**24, 2 * 2**24, 1, FP16, FP16, "fp16", (1, 2**14, 256, 2**16))
    assert calibrated.estimate_layer(conv).latency_s > 1.3 * roofline.estimate_layer(conv).latency_s
    assert load_device(f"{name}-calibrated").name == calibrated.name  # the old name still resolves


def test_a_roofline_twin_exists_only_for_calibrated_devices():
    with pytest.raises(ValueError, match="unknown device 'a100-roofline'"):
        load_device("a100-roofline")


def _fp32_linear(tf32: bool) -> LayerWork:
    return LayerWork("l", "linear", 4096 * 1280 * 1280, 0, 4 * 1280 * 1280, 4 * 4096 * 1280, 4 * 4096 * 1280, 1,
                     FP32, FP32, "fp32", (1, 4096, 1280, 1280), tf32=tf32)


def test_fp32_operands_run_at_tf32_only_where_the_runtime_allows_it():
    device = load_device("h200-roofline")
    off, on = device.estimate_layer(_fp32_linear(False)), device.estimate_layer(_fp32_linear(True))
    assert (off.compute_precision, on.compute_precision) == ("fp32", "tf32")
    assert "TF32 allowed" in on.mapping
    peaks = device.primary.rates.peaks
    assert off.compute_s / on.compute_s == pytest.approx(peaks["tf32"] / peaks["fp32"])
    fp16 = LayerWork("l", "linear", 10**9, 0, 1.0, 1.0, 1.0, 1, FP16, FP16, "fp16", (1, 1000, 1000, 1000), tf32=True)
    assert device.estimate_layer(fp16).compute_precision == "fp16"  # TF32 concerns fp32 operands only


def test_quantize_work_counts_the_eager_sequence():
    n = 1000
    fp8 = quantize_work("l", n, 2, E4M3)
    # |x| r+w, amax r, x/scale r+w, cast r (fp16) + w (1 byte)
    assert (fp8.read_bytes, fp8.write_bytes, fp8.kernels) == (4 * 2 * n, 2 * 2 * n + n, 6)
    int8 = quantize_work("l", n, 2, INT8)  # + round and clamp, each a read and a write
    assert (int8.read_bytes - fp8.read_bytes, int8.write_bytes - fp8.write_bytes, int8.kernels) == (4 * n, 4 * n, 8)
    dequantize = dequantize_work("l", n, 2)  # int32 x scale -> fp32, -> fp16, + bias
    assert (dequantize.read_bytes, dequantize.write_bytes, dequantize.kernels) == (10 * n, 8 * n, 3)


def test_the_calibrated_model_prices_conversions_by_their_own_classes():
    device = load_device("h200")
    classes = device.primary.classes
    work = quantize_work("l", 2**20, 2, INT8)
    estimate = device.estimate_layer(work)
    params = classes["quantize_int8"]
    memory = work.traffic_bytes / device.primary.dram_bandwidth / params.memory_efficiency
    assert estimate.latency_s == pytest.approx(work.kernels * params.kernel_s + max(memory, estimate.compute_s))
    fp8 = device.estimate_layer(quantize_work("l", 2**20, 2, E4M3))
    assert fp8.latency_s < estimate.latency_s  # fewer kernels and passes


def test_nonnegative_least_squares_matches_a_brute_force_search():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(12, 3)), rng.normal(size=12)
    x = nonnegative_least_squares(a, b)
    assert (x >= 0).all()
    best = min((np.linalg.norm(a[:, list(s)] @ np.clip(np.linalg.lstsq(a[:, list(s)], b, rcond=None)[0], 0, None) - b), s)
               for s in ((0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)))
    assert np.linalg.norm(a @ x - b) <= best[0] + 1e-9


def test_fit_energy_recovers_known_coefficients():
    static_w, busy_w, fp16_pj, int8_pj, vector_pj, dram_pj, l2_pj = 120.0, 90.0, 1.5, 0.8, 20.0, 40.0, 15.0
    strided_pj = 60.0  # on top of the DRAM or L2 energy of a strided class's bytes
    conv_pj = 0.5  # on top of fp16's per convolution MAC
    l2_bytes, gap_s = 5e8, 1e-6
    rng = np.random.default_rng(0)
    samples = [Sample("elementwise", 1, (), 0.0, 64.0, 1e15, gap_s)]  # the shortest kernel: the launch gap
    for i in range(60):
        precision = ("fp16", "int8", "")[i % 3]
        m, n, k = rng.integers(64, 4096, size=3)
        dims = ((1, int(m), int(n), int(k)),) if precision else ()
        macs = int(m * n * k) if precision else 0
        vector, traffic = float(rng.integers(0, 10**9)), float(rng.integers(10**6, 10**9))
        kernels, seconds = int(rng.integers(1, 9)), float(rng.uniform(2e-5, 1e-3))
        mac_pj = {"fp16": fp16_pj, "int8": int8_pj}.get(precision, 0)
        strided = not precision and not i % 2
        op_class = ("strided_copy", "elementwise_strided_fp32")[i % 4 // 2] if strided else "c"
        op_class = "conv_fp16" if precision == "fp16" and i % 2 else op_class
        # a convolution's layout transforms read and write its channels-first operands once more
        channels_first = traffic / 3 if op_class == "conv_fp16" else 0.0
        moved = traffic + 2 * channels_first
        traffic_pj = (moved * (l2_pj if moved <= l2_bytes else dram_pj) + traffic * strided_pj * strided
                      + macs * conv_pj * (op_class == "conv_fp16"))
        energy = (static_w * seconds + busy_w * (seconds - kernels * gap_s)
                  + (macs * mac_pj + vector * vector_pj + traffic_pj) * 1e-12)
        samples.append(Sample(op_class, kernels, dims, vector, traffic, 1e15, seconds, precision, energy,
                              channels_first_bytes=channels_first))
    fit = fit_energy(samples, l2_bytes)
    assert fit.launch_gap_s == gap_s and fit.l2_bytes == l2_bytes
    assert (fit.static_w, fit.busy_w) == pytest.approx((static_w, busy_w), rel=1e-6)
    assert fit.mac_pj == pytest.approx({"fp16": fp16_pj, "int8": int8_pj}, rel=1e-6)
    assert fit.conv_mac_pj == pytest.approx(conv_pj, rel=1e-6)
    assert (fit.vector_op_pj, fit.dram_pj_per_byte, fit.l2_pj_per_byte, fit.strided_pj_per_byte) == pytest.approx(
        (vector_pj, dram_pj, l2_pj, strided_pj), rel=1e-6)
    assert fit.median_error < 1e-9 and fit.samples == 60


def test_the_symmetric_relative_fit_leaves_no_mean_relative_error_where_dividing_by_the_measurement_leans_low():
    rng = np.random.default_rng(1)
    a = rng.uniform(0.1, 1.0, size=(200, 3)) * [100.0, 3.0, 0.5]
    measured = a @ [1.0, 2.0, 4.0] * np.exp(rng.normal(0.0, 0.15, size=200))
    x = symmetric_relative_fit(a, measured)
    errors = a @ x / measured - 1
    assert (x > 0).all() and abs(errors.mean()) < 1e-8
    leaning = nonnegative_least_squares(a / measured[:, None], np.ones(200))
    leaning_errors = a @ leaning / measured - 1
    assert leaning_errors.mean() < -0.01
    assert leaning_errors.mean() == pytest.approx(-np.mean(leaning_errors ** 2), abs=1e-8)
    # the fixed point: one more pass, weighted by its own predictions, moves nothing
    scale = np.sqrt(a @ x * measured)
    assert nonnegative_least_squares(a / scale[:, None], measured / scale) == pytest.approx(x, rel=1e-8)


def test_measured_energy_is_static_power_over_the_time_plus_the_actions():
    energy = MeasuredEnergy(150.0, {"fp16": 2.0}, 10.0, 50.0, "test")
    actions = Actions(macs=10**9, precision="fp16", vector_ops=10**6, dram_bytes=10**7)
    dynamic = (10**9 * 2.0 + 10**6 * 10.0 + 10**7 * 50.0) * 1e-12
    assert energy.price(actions, 1e-3) == pytest.approx(0.15 + dynamic)
    device = load_device("h200")
    layer = LayerWork("l", "linear", 10**9, 0, 2e6, 2e6, 2e6, 1, FP16, FP16, "fp16", (1, 1000, 1000, 1000))
    estimate = device.estimate_layer(layer)
    assert estimate.energy_j == pytest.approx(device.primary.energy.price(estimate.actions, estimate.latency_s))
    assert estimate.energy_j > device.primary.energy.static_w * estimate.latency_s


def test_busy_power_is_drawn_outside_the_launch_gaps():
    energy = MeasuredEnergy(100.0, {"fp16": 0.0}, 0.0, 0.0, "test", busy_w=200.0, launch_gap_s=2e-6)
    assert energy.price(Actions(kernels=3), 10e-6) == pytest.approx(100.0 * 10e-6 + 200.0 * 4e-6)
    assert energy.price(Actions(kernels=10), 10e-6) == pytest.approx(100.0 * 10e-6)  # all gaps: never negative


def test_activations_that_fit_in_l2_are_priced_at_l2_energy_and_weights_at_dram_energy():
    energy = MeasuredEnergy(0.0, {"fp16": 0.0}, 0.0, 100.0, "test", l2_pj_per_byte=10.0, l2_bytes=1e6)
    fits = Actions(dram_bytes=3e6, weight_bytes=2.5e6)  # 0.5 MB of activations
    spills = Actions(dram_bytes=3e6, weight_bytes=1e6)  # 2 MB of activations
    assert energy.price(fits) == pytest.approx((2.5e6 * 100 + 0.5e6 * 10) * 1e-12)
    assert energy.price(spills) == pytest.approx(3e6 * 100 * 1e-12)
    unsplit = MeasuredEnergy(0.0, {"fp16": 0.0}, 0.0, 100.0, "test")  # a file fitted before the split
    assert unsplit.price(fits) == pytest.approx(3e6 * 100 * 1e-12)


def test_what_a_layer_writes_into_l2_is_written_back_to_dram_as_well():
    energy = MeasuredEnergy(0.0, {"fp16": 0.0}, 0.0, 100.0, "test", l2_pj_per_byte=10.0, l2_bytes=1e6)
    fits = Actions(dram_bytes=3e6, weight_bytes=2.5e6, write_bytes=0.2e6)  # 0.3 MB read, 0.2 MB written
    spills = Actions(dram_bytes=3e6, weight_bytes=1e6, write_bytes=1e6)  # 2 MB of activations stream anyway
    assert energy.price(fits) == pytest.approx((2.5e6 * 100 + 0.5e6 * 10 + 0.2e6 * 100) * 1e-12)
    assert energy.price(spills) == pytest.approx(3e6 * 100 * 1e-12)
    device = load_device("h200")
    layer = LayerWork("l", "linear", 10**9, 0, 2e6, 2e6, 3e6, 1, FP16, FP16, "fp16", (1, 1000, 1000, 1000))
    assert device.estimate_layer(layer).actions.write_bytes == 3e6


def test_layout_transforms_move_their_bytes_through_l2_or_dram_with_the_activations():
    energy = MeasuredEnergy(0.0, {"fp16": 0.0}, 0.0, 100.0, "test", l2_pj_per_byte=10.0, l2_bytes=1e6)
    fits = Actions(dram_bytes=3e6, weight_bytes=2.5e6, transform_bytes=0.4e6)  # 0.9 MB with the activations
    spills = Actions(dram_bytes=3e6, weight_bytes=2.5e6, transform_bytes=0.6e6)  # 1.1 MB
    assert energy.price(fits) == pytest.approx((2.5e6 * 100 + 0.9e6 * 10) * 1e-12)
    assert energy.price(spills) == pytest.approx((2.5e6 + 1.1e6) * 100 * 1e-12)
    device = load_device("h200")
    conv = LayerWork("c", "conv", 2**30, 0, 2**20, 2**24, 2**24, 1, FP16, FP16, "fp16", (1, 2**14, 256, 2**16),
                     window=9, channels_first_bytes=3e6)
    assert device.estimate_layer(conv).actions.transform_bytes == 6e6


def test_bytes_off_the_contiguous_layout_cost_their_extra_energy_on_top_of_the_traffic():
    energy = MeasuredEnergy(0.0, {"fp16": 0.0}, 0.0, 100.0, "test", strided_pj_per_byte=250.0)
    assert energy.price(Actions(dram_bytes=3e6, strided_bytes=1e6)) == pytest.approx((3e6 * 100 + 1e6 * 250) * 1e-12)
    device = load_device("h200")
    contiguous = LayerWork("n", "norm", 0, 10**6, 0.0, 4e6, 4e6, 2, FP16, None, "fp16", parallel_rows=256)
    relaid = dataclasses.replace(contiguous, kernels=3, relayout_kernels=1, relayout_bytes=4e6)
    estimate = device.estimate_layer(relaid)
    assert estimate.actions.strided_bytes == 4e6 and device.estimate_layer(contiguous).actions.strided_bytes == 0
    strided_pj = device.primary.energy.strided_pj_per_byte
    assert strided_pj > 0
    unstrided = dataclasses.replace(estimate.actions, strided_bytes=0.0)
    assert estimate.energy_j - device.primary.energy.price(unstrided, estimate.latency_s) == pytest.approx(
        4e6 * strided_pj * 1e-12)


def test_the_calibrated_gpu_prices_every_layer_with_its_kernels_and_weights():
    device = load_device("h100")
    layer = LayerWork("l", "linear", 10**9, 0, 2e6, 2e6, 2e6, 1, FP16, FP16, "fp16", (1, 1000, 1000, 1000))
    actions = device.estimate_layer(layer).actions
    assert (actions.kernels, actions.weight_bytes) == (layer.kernels, layer.weight_bytes)


def _fresh(name: str):
    """A private copy of a catalogue device (the catalogue's own is shared by every test)."""
    from hw_models.catalog import parse_device

    return parse_device(copy.deepcopy(load_device(name).spec), name)


def _with_classes(device, **classes):
    from hw_models.engines.calibrated import ClassParams

    device.primary.classes.update({k: ClassParams(*v) for k, v in classes.items()})
    return device


def test_a_norm_with_fewer_rows_than_sms_runs_on_that_share_of_them():
    device = load_device("h200")
    norm = lambda rows: LayerWork("n", "norm", 0, 8 * 2**22, 0.0, 2.0 * 2**22, 2.0 * 2**22, 1, FP16, None,  # noqa: E731
                                  "fp16", parallel_rows=rows)
    sms, kernel = device.primary.sms, device.primary.classes["norm"].kernel_s
    busy = lambda rows: device.estimate_layer(norm(rows)).latency_s - kernel  # noqa: E731
    assert busy(sms // 4) == pytest.approx(4 * busy(sms))
    assert busy(4 * sms) == pytest.approx(busy(sms)) == pytest.approx(busy(0))  # 0: rows unknown


def test_a_pointwise_conv_takes_its_own_class_and_falls_back_to_conv():
    device = _with_classes(_fresh("h200"), conv_fp16=(20e-6, 0.5, 0.5), pointwise_fp16=(5e-6, 0.5, 0.5))
    dims = (1, 4096, 640, 640)
    conv = lambda window: LayerWork("c", "conv", 4096 * 640 * 640, 0, 2 * 640 * 640, 2 * 4096 * 640,  # noqa: E731
                                    2 * 4096 * 640, 1, FP16, FP16, "fp16", dims, window=window)
    assert device.estimate_layer(conv(1)).latency_s != device.estimate_layer(conv(9)).latency_s
    del device.primary.classes["pointwise_fp16"]
    assert device.estimate_layer(conv(1)).latency_s == device.estimate_layer(conv(9)).latency_s


def test_a_strided_conv_takes_the_downsample_class_and_falls_back_to_conv():
    device = _with_classes(_fresh("h100"), conv_fp16=(20e-6, 0.5, 0.5), downsample_fp16=(5e-6, 0.3, 0.5))
    dims = (1, 1024, 320, 2880)
    conv = lambda stride: LayerWork("c", "conv", 1024 * 320 * 2880, 0, 2 * 320 * 2880, 2 * 4096 * 320,  # noqa: E731
                                    2 * 1024 * 320, 1, FP16, FP16, "fp16", dims, window=9, stride=stride)
    assert device.estimate_layer(conv(2)).latency_s != device.estimate_layer(conv(1)).latency_s
    del device.primary.classes["downsample_fp16"]
    assert device.estimate_layer(conv(2)).latency_s == device.estimate_layer(conv(1)).latency_s


def test_an_upsampling_takes_the_resample_class_and_falls_back_to_memory():
    device = _fresh("h100")
    upsample = LayerWork("u", "resample", 0, 0, 0.0, 2.0 * 2**20, 8.0 * 2**20, 1, FP16, None, "fp16")
    memory, resample = device.primary.classes["memory"], device.primary.classes["resample"]

    def priced(params):
        return params.kernel_s + upsample.traffic_bytes / device.primary.dram_bandwidth / params.memory_efficiency

    assert device.estimate_layer(upsample).latency_s == pytest.approx(priced(resample)) != priced(memory)
    del device.primary.classes["resample"]  # a file fitted before the class was split from memory
    assert device.estimate_layer(upsample).latency_s == pytest.approx(priced(memory))


def test_copies_out_of_a_strided_layout_take_the_strided_copy_class():
    elements = 2**22
    relayout = LayerWork("norm", "elementwise", 0, elements, 0.0, 2.0 * 2 * elements, 2.0 * 2 * elements, 3, FP16,
                         None, "fp16", relayout_kernels=1, relayout_bytes=2.0 * 2 * elements)
    plain = dataclasses.replace(relayout, relayout_kernels=0, relayout_bytes=0.0)
    device = _fresh("h100")
    classes, bandwidth = device.primary.classes, device.primary.dram_bandwidth
    strided, elementwise = classes["strided_copy"], classes["elementwise"]
    rest = max(elements / device.primary.rates.vector_peak / elementwise.efficiency,
               2.0 * 2 * elements / bandwidth / elementwise.memory_efficiency)
    expected = (2 * elementwise.kernel_s + rest + strided.kernel_s
                + 2.0 * 2 * elements / bandwidth / strided.memory_efficiency)
    assert device.estimate_layer(relayout).latency_s == pytest.approx(expected)
    assert device.estimate_layer(relayout).latency_s > device.estimate_layer(plain).latency_s
    del classes["strided_copy"]  # a file without the class prices the copies with the layer's own class
    assert device.estimate_layer(relayout).latency_s == pytest.approx(device.estimate_layer(plain).latency_s)


def test_a_linears_copy_takes_the_strided_copy_class_and_its_bias_add_the_bias_add_class_else_elementwise():
    m, n, k = 8192, 448, 448
    gemm_bytes = 2 * (n * k + m * k + m * n)
    copy_bytes, bias_bytes = 2 * 2 * m * k, 2 * 2 * m * n  # the copy reads and writes the input, the add the output
    # reads: the copy's input, the GEMM's A, the bias add's input; writes: the copy, C, the bias add
    layer = LayerWork("q", "linear", m * n * k, 0, 2 * n * k, 2 * (2 * m * k + m * n), 2 * (m * k + 2 * m * n),
                      3, FP16, FP16, "fp16", (1, m, n, k), relayout_kernels=1, relayout_bytes=copy_bytes)
    assert layer.traffic_bytes == gemm_bytes + copy_bytes + bias_bytes
    device = _fresh("h200")
    del device.primary.classes["bias_add"]  # a file fitted before the class: the elementwise class prices the add
    without = device.estimate_layer(layer)
    copy_params, add_params = (2e-6, 0.5, 0.25), (1e-6, 0.5, 0.8)
    device = _with_classes(device, strided_copy=copy_params, elementwise=add_params)
    priced = device.estimate_layer(layer)
    linear, bandwidth = device.primary.classes["linear_fp16"], device.primary.dram_bandwidth
    side_s = (copy_params[0] + copy_bytes / bandwidth / copy_params[2]
              + add_params[0] + bias_bytes / bandwidth / add_params[2])
    gemm_memory = gemm_bytes / bandwidth / linear.memory_efficiency
    assert priced.latency_s == pytest.approx(linear.kernel_s + max(priced.compute_s, gemm_memory) + side_s)
    assert priced.latency_s != without.latency_s
    # without the copy the second kernel is the bias add alone, at the elementwise class's speed
    bare = dataclasses.replace(layer, kernels=2, relayout_kernels=0, relayout_bytes=0.0,
                               read_bytes=layer.read_bytes - copy_bytes / 2,
                               write_bytes=layer.write_bytes - copy_bytes / 2)
    bare_side = add_params[0] + bias_bytes / bandwidth / add_params[2]
    assert device.estimate_layer(bare).latency_s == pytest.approx(
        linear.kernel_s + max(device.estimate_layer(bare).compute_s, gemm_memory) + bare_side)
    # a file with the bias_add class (aten's broadcast add) prices the add by it, not by the elementwise class
    broadcast = (3e-6, 0.5, 0.4)
    device = _with_classes(device, bias_add=broadcast)
    broadcast_side = broadcast[0] + bias_bytes / bandwidth / broadcast[2]
    assert device.estimate_layer(bare).latency_s == pytest.approx(
        linear.kernel_s + max(device.estimate_layer(bare).compute_s, gemm_memory) + broadcast_side)


@pytest.mark.parametrize("kind, name", [("elementwise", "elementwise"), ("concat", "memory"),
                                        ("resample", "resample")])
def test_ops_off_the_contiguous_layout_take_their_classes_strided_twin(kind, name):
    elements = 2**22
    traffic = 3 * 2.0 * elements
    # three kernels, one of them (a channels-last view added to a contiguous tensor) off the contiguous layout
    layer = LayerWork("add", kind, 0, 0, 0.0, 2 * traffic / 3, traffic / 3, 3, FP16, None, "fp16",
                      strided_kernels=1, strided_bytes=traffic / 3)
    plain = dataclasses.replace(layer, strided_kernels=0, strided_bytes=0.0)
    device = _fresh("h100")
    classes, bandwidth = device.primary.classes, device.primary.dram_bandwidth
    contiguous, strided = classes[name], classes[name + "_strided"]
    rest = 2 * traffic / 3 / bandwidth / contiguous.memory_efficiency
    expected = 2 * contiguous.kernel_s + rest + strided.kernel_s + traffic / 3 / bandwidth / strided.memory_efficiency
    assert device.estimate_layer(layer).latency_s == pytest.approx(expected)
    assert device.estimate_layer(layer).latency_s > device.estimate_layer(plain).latency_s
    del classes[name + "_strided"]  # a file fitted before the twins existed prices such ops as contiguous
    assert device.estimate_layer(layer).latency_s == pytest.approx(device.estimate_layer(plain).latency_s)


def test_fp32_vector_work_takes_the_classes_fp32_fit_where_the_file_has_one():
    elements = 2**22
    norm = lambda dtype, size: LayerWork("n", "norm", 0, 8 * elements, 0.0, size * elements,  # noqa: E731
                                         size * elements, 1, FP32 if size == 4 else FP16, None, dtype)
    device = _fresh("h100")
    base = device.estimate_layer(norm("fp32", 4)).latency_s  # no norm_fp32: fp16's fit, priced by fp32's bytes
    fp16 = device.estimate_layer(norm("fp16", 2)).latency_s
    device = _with_classes(device, norm_fp32=(30e-6, 0.5, 0.9))
    params = device.primary.classes["norm_fp32"]
    fitted = device.estimate_layer(norm("fp32", 4)).latency_s
    assert fitted != base
    busy = max(8 * elements / device.primary.rates.vector_peak / params.efficiency,
               2 * 4 * elements / device.primary.dram_bandwidth / params.memory_efficiency)
    assert fitted == pytest.approx(params.kernel_s + busy)
    assert device.estimate_layer(norm("fp16", 2)).latency_s == pytest.approx(fp16)  # fp16 keeps its own
