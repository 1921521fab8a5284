"""The calibrated GPU model: wave arithmetic, the fit, the device file, and `simdq hw calibrate` end to end."""

import dataclasses
import json
from dataclasses import replace
from math import ceil

import numpy as np
import pytest
import yaml

from hw_models import DeviceFileError, LayerWork, load_device
from hw_models.engines.calibrated import (ClassParams, attention_shape, calibrated_time, fused_attention_compute_s,
                                         gemm_compute_s, op_class, transform_s)
from hw_models.catalog import DEVICE_DIR
from hw_models.fit import (DRAM_LATENCY_PER_K_GRID, KERNEL_S_GRID, MEMORY_EFFICIENCY_GRID, MIN_SAMPLES_FOR_TILING,
                           Sample, cross_validated_errors, fit_class, fit_classes, relative_errors)
from hw_models.workload import FP16
from simdq.cli import main


def test_waves_of_tiles_by_hand():
    params = ClassParams(kernel_s=3e-6, efficiency=0.5, memory_efficiency=1.0, tile_m=128, tile_n=128)
    peak, sms = 132e12, 132  # 1e12 per SM
    # 1000 x 1000 output: 8 x 8 = 64 tiles, one wave; each SM does 128 x 128 x 512 MACs at 0.5e12 MAC/s x 2
    assert gemm_compute_s((1, 1000, 1000, 512), params, peak, sms) == pytest.approx(2 * 128 * 128 * 512 / 0.5e12)
    # 133 tiles need two waves: one more tile than SMs doubles the time
    assert gemm_compute_s((1, 133 * 128, 128, 512), params, peak, sms) == pytest.approx(
        2 * gemm_compute_s((1, 132 * 128, 128, 512), params, peak, sms))
    # split-K: 4 tiles, K = 4096 in chunks of >= 1024 -> 4 splits, 16 units, one wave of K/4
    split = ClassParams(3e-6, 0.5, 1.0, 128, 128, split_k_min=1024)
    assert gemm_compute_s((1, 256, 256, 4096), split, peak, sms) == pytest.approx(
        2 * 128 * 128 * 1024 / 0.5e12)


def test_a_class_with_a_wide_tiling_takes_the_faster_of_its_two_tilings():
    narrow = ClassParams(kernel_s=3e-6, efficiency=0.25, memory_efficiency=1.0, tile_m=32, tile_n=32)
    both = replace(narrow, wide_tile_m=128, wide_tile_n=32, wide_efficiency=0.5)
    peak, sms = 132e12, 132  # 1e12 per SM
    # 64 x 64 output: 4 narrow tiles at 0.25, or one wide 128 x 32 tile (mostly padding) at 0.5: the narrow wins
    small = (1, 64, 64, 1024)
    assert gemm_compute_s(small, both, peak, sms) == pytest.approx(2 * 32 * 32 * 1024 / 0.25e12)
    # 132 x 128 rows of 32: 528 narrow tiles (4 waves) or 132 wide ones (one wave at twice the efficiency)
    large = (1, 132 * 128, 32, 1024)
    assert gemm_compute_s(large, narrow, peak, sms) == pytest.approx(4 * 2 * 32 * 32 * 1024 / 0.25e12)
    assert gemm_compute_s(large, both, peak, sms) == pytest.approx(2 * 128 * 32 * 1024 / 0.5e12)


def test_calibrated_device_prices_a_layer_as_documented():
    device = load_device("h100-calibrated")
    params = device.primary.classes["linear_fp16"]
    dims = (1, 4096, 1280, 1280)
    traffic = 2.0 * (4096 * 1280 * 2 + 1280 * 1280)
    layer = LayerWork("l", "linear", 4096 * 1280 * 1280, 0, 2.0 * 1280 * 1280, 2.0 * 4096 * 1280, 2.0 * 4096 * 1280,
                      1, FP16, FP16, "fp16", dims)
    compute = gemm_compute_s(dims, params, device.primary.rates.peaks["fp16"], device.primary.sms)
    memory = traffic / device.primary.dram_bandwidth / params.memory_efficiency
    estimate = device.estimate_layer(layer)
    assert estimate.latency_s == pytest.approx(calibrated_time(params, 1, compute, memory))
    assert estimate.mapping.endswith("[calibrated]")
    assert op_class("attention_matmul", "fp8") == "attention_fp8" and op_class("concat", None) == "memory"


def test_fit_recovers_the_parameters_that_made_the_data():
    rng = np.random.default_rng(7)
    truth = ClassParams(kernel_s=5.2e-6, efficiency=0.6, memory_efficiency=0.8, tile_m=128, tile_n=256)
    peak, bandwidth, sms = 989e12, 3.35e12, 132
    samples = []
    for _ in range(40):
        dims = (1, int(rng.choice([64, 256, 1024, 4096, 16384])), int(rng.choice([320, 640, 2560])),
                int(rng.choice([320, 1280, 2560])))
        _, m, n, k = dims
        traffic = 2.0 * (m * k + k * n + m * n)
        time = calibrated_time(truth, 1, gemm_compute_s(dims, truth, peak, sms), traffic / bandwidth / 0.8)
        samples.append(Sample("linear_fp16", 1, (dims,), 0, traffic, peak, time))
    fit = fit_class(samples, bandwidth, sms)
    assert (fit.params.tile_m, fit.params.tile_n) == (128, 256)
    assert fit.params.efficiency == pytest.approx(0.6, abs=0.02)
    assert fit.params.kernel_s == pytest.approx(5.2e-6, rel=0.1)
    assert fit.median_error < 0.02


@pytest.mark.parametrize("memory_efficiency", [0.125, 0.07])
def test_fit_refines_values_that_fall_between_the_coarse_grids_points(memory_efficiency):
    # an H200's strided copies: 0.125 lies midway between the coarse grid's 0.1 and 0.15, 0.07 below its first value
    assert np.min(np.abs(MEMORY_EFFICIENCY_GRID / memory_efficiency - 1)) > 0.15
    bandwidth, kernel_s = 4.8e12, 2.3e-6
    samples = [Sample("strided_copy", 1, (), 0, size, 67e12, kernel_s + size / bandwidth / memory_efficiency)
               for size in np.geomspace(2 ** 18, 2 ** 27, 12)]
    fit = fit_class(samples, bandwidth, 132)
    assert fit.params.memory_efficiency == pytest.approx(memory_efficiency, rel=0.06)
    assert fit.params.kernel_s == pytest.approx(kernel_s, rel=0.06)
    assert fit.median_error < 0.03


def _convolutions(truth, transform_truth, seed=3, count=16, noise=0.0, op_class="conv_fp16"):
    """3x3 convolutions timed as cuDNN runs them: NCHW operands transformed, then an implicit GEMM."""
    rng = np.random.default_rng(seed)
    params = replace(truth, transform_efficiency=transform_truth)
    peak, bandwidth, sms = 989e12, 3.35e12, 132
    samples = []
    for _ in range(count):
        batch, size = int(rng.choice([1, 2, 4])), int(rng.choice([8, 16, 32, 64]))
        c_in, c_out = int(rng.choice([128, 320, 640, 1280])), int(rng.choice([128, 320, 640, 1280]))
        dims = (1, batch * size * size, c_out, 9 * c_in)
        traffic = 2.0 * (batch * size * size * (c_in + c_out) + 9 * c_in * c_out)
        time = calibrated_time(params, 1, gemm_compute_s(dims, params, peak, sms), traffic / bandwidth / 0.5,
                               transform_s(params, traffic, bandwidth))
        samples.append(Sample(op_class, 1, (dims,), 0, traffic, peak, time * (1 + noise * rng.standard_normal()),
                              op_class.split("_")[1], channels_first_bytes=traffic))
    return samples, bandwidth, sms


def test_fit_finds_the_layout_transforms_that_made_the_data_and_none_where_there_were_none():
    truth = ClassParams(kernel_s=8.3e-6, efficiency=0.5, memory_efficiency=0.5, tile_m=64, tile_n=128)
    samples, bandwidth, sms = _convolutions(truth, 0.18)
    fit = fit_class(samples, bandwidth, sms)
    assert fit.params.transform_efficiency == pytest.approx(0.18) and fit.median_error < 0.02
    plain, _, _ = _convolutions(truth, 0.0)
    assert fit_class(plain, bandwidth, sms).params.transform_efficiency == 0.0
    # a class whose samples carry no channels-first bytes (a linear) never searches transforms
    linear = [Sample("linear_fp16", s.kernels, s.gemm_dims, 0, s.traffic_bytes, s.peak, s.measured_s, "fp16")
              for s in samples]
    assert fit_class(linear, bandwidth, sms).params.transform_efficiency == 0.0


def test_only_full_fp32_convolutions_search_the_narrow_tiles_of_cudnns_simt_kernels():
    truth = ClassParams(kernel_s=8.3e-6, efficiency=0.5, memory_efficiency=0.5, tile_m=32, tile_n=32)
    fp32, bandwidth, sms = _convolutions(truth, 0.0, count=24, op_class="conv_fp32")
    fit = fit_class(fp32, bandwidth, sms)
    assert (fit.params.tile_m, fit.params.tile_n, fit.params.split_k_min) == (32, 32, 0) and fit.median_error < 0.02
    # the same times in a tensor-core class: its kernels tile 64 wide or more, so the fit settles elsewhere
    fp16 = [replace(s, op_class="conv_fp16", precision="fp16") for s in fp32]
    tensor_core_fit = fit_class(fp16, bandwidth, sms)
    assert min(tensor_core_fit.params.tile_m, tensor_core_fit.params.tile_n) >= 64
    assert tensor_core_fit.median_error > fit.median_error


def test_fit_recovers_a_narrow_and_a_wide_tiling_each_at_its_own_efficiency():
    # cuDNN's full-fp32 convolutions: 32x64 tiles where the output is small, 128x32 at more of the peak where it is
    # large; each alone misses the times of the other's shapes
    truth = ClassParams(kernel_s=4e-6, efficiency=0.34, memory_efficiency=0.5, tile_m=32, tile_n=64,
                        wide_tile_m=128, wide_tile_n=32, wide_efficiency=0.34 * 1.15)
    samples, bandwidth, sms = _convolutions(truth, 0.0, count=40, op_class="conv_fp32")
    fit = fit_class(samples, bandwidth, sms)
    assert (fit.params.tile_m, fit.params.tile_n, fit.params.wide_tile_m, fit.params.wide_tile_n) == (32, 64, 128, 32)
    assert fit.params.efficiency == pytest.approx(0.34, abs=0.01)
    assert fit.params.wide_efficiency == pytest.approx(0.391, abs=0.01)
    assert fit.median_error < 0.02
    # what the device file is written from: plain numbers, which yaml.safe_dump takes (numpy's are refused)
    assert yaml.safe_load(yaml.safe_dump(dataclasses.asdict(fit.params))) == dataclasses.asdict(fit.params)
    # a tensor-core class never searches a second tiling
    fp16 = fit_class([replace(s, op_class="conv_fp16", precision="fp16") for s in samples], bandwidth, sms)
    assert fp16.params.wide_efficiency == 0.0 and fp16.median_error > 0.04


def test_a_gemm_whose_weights_stream_from_dram_takes_at_least_its_latency_per_k():
    params = ClassParams(kernel_s=3e-6, efficiency=0.5, memory_efficiency=1.0, tile_m=32, tile_n=32,
                         dram_latency_per_k_s=30e-9)
    peak, sms = 132e12, 132  # 1e12 per SM
    # 2 x 28 tiles, one per SM: each tile's 32 x 32 x 8064 MACs would take 33 us at full rate, its loads 242 us
    lone = (1, 64, 896, 8064)
    assert gemm_compute_s(lone, params, peak, sms) == pytest.approx(8064 * 30e-9)
    # 64 tiles per SM keep it busy: the waves decide
    busy = (1, 132 * 32 * 64, 32, 8064)
    assert gemm_compute_s(busy, params, peak, sms) == pytest.approx(64 * 2 * 32 * 32 * 8064 / 0.5e12)
    assert gemm_compute_s(lone, replace(params, dram_latency_per_k_s=0.0), peak, sms) == pytest.approx(
        2 * 32 * 32 * 8064 / 0.5e12)


def _dram_convolutions(truth, op_class="conv_fp32", seed=5, count=40):
    """fp32 3x3 convolutions timed as a microbenchmark times them: from DRAM where their weights outgrow half a
    50 MB L2, else from L2 (no latency floor)."""
    from simdq.microbench import weights_from_dram

    rng = np.random.default_rng(seed)
    peak, bandwidth, sms = 67e12, 3.35e12, 132
    samples = []
    for _ in range(count):
        batch, size = int(rng.choice([1, 2])), int(rng.choice([8, 16, 32]))
        c_in, c_out = int(rng.choice([320, 640, 1280, 1920])), int(rng.choice([320, 640, 1280]))
        dims = (1, batch * size * size, c_out, 9 * c_in)
        traffic = 4.0 * (batch * size * size * (c_in + c_out) + 9 * c_in * c_out)
        from_dram = weights_from_dram({"op_class": op_class, "gemm_dims": [dims], "precision": "fp32"}, 50e6)
        timed = truth if from_dram else replace(truth, dram_latency_per_k_s=0.0)
        time = calibrated_time(timed, 1, gemm_compute_s(dims, timed, peak, sms), traffic / bandwidth / 0.5)
        samples.append(Sample(op_class, 1, (dims,), 0, traffic, peak, time, "fp32", weights_from_dram=from_dram))
    return samples, bandwidth, sms


def test_fit_finds_the_latency_of_weights_from_dram_in_the_samples_that_read_them_there():
    truth = ClassParams(kernel_s=KERNEL_S_GRID[20], efficiency=0.34, memory_efficiency=0.5, tile_m=32, tile_n=64,
                        dram_latency_per_k_s=DRAM_LATENCY_PER_K_GRID[25])
    samples, bandwidth, sms = _dram_convolutions(truth)
    assert 0 < sum(s.weights_from_dram for s in samples) < len(samples)
    fit = fit_class(samples, bandwidth, sms)
    assert fit.params.dram_latency_per_k_s == pytest.approx(truth.dram_latency_per_k_s)
    assert fit.median_error < 0.01
    # the same times, none of them flagged from DRAM: nothing to fit a latency on, and the lone tiles are missed
    warm = fit_class([replace(s, weights_from_dram=False) for s in samples], bandwidth, sms)
    assert warm.params.dram_latency_per_k_s == 0.0 and warm.median_error > fit.median_error
    # a class split off it whose own samples all stayed in L2 streams its weights as its source does
    downsample = [replace(s, op_class="downsample_fp32", weights_from_dram=False) for s in samples[:10]]
    fits = fit_classes(samples + downsample, bandwidth, sms)
    assert fits["downsample_fp32"].params.dram_latency_per_k_s == fits["conv_fp32"].params.dram_latency_per_k_s


def test_weights_from_dram_where_they_outgrow_half_the_l2():
    from simdq.microbench import weights_from_dram

    def conv(c_in, c_out, precision="fp32", op_class="conv_fp32"):
        return {"op_class": op_class, "gemm_dims": [[1, 64, c_out, 9 * c_in]], "precision": precision}

    l2 = 50 * 2 ** 20
    # LDM-4's 672-channel convolution (16 MB in fp32) stays in an H100's L2, its 896-channel one (29 MB) does not
    assert not weights_from_dram(conv(672, 672), l2) and weights_from_dram(conv(896, 896), l2)
    assert not weights_from_dram(conv(896, 896, "fp16", "conv_fp16"), l2)  # half the bytes
    assert not weights_from_dram(conv(896, 896), 0)  # a record from before the L2 was read
    attention = {"op_class": "attention_fp16", "gemm_dims": [[64, 4096, 4096, 64]], "precision": "fp16"}
    assert not weights_from_dram(attention, l2)


def test_full_fp32_convolutions_transform_a_channels_last_input_and_nothing_stored_channels_first(monkeypatch):
    from hw_models.workload import FP32

    device = load_device("h200")
    params = replace(device.primary.classes["conv_fp32"], transform_efficiency=0.2)
    monkeypatch.setitem(device.primary.classes, "conv_fp32", params)
    dims = (1, 4096, 320, 2880)
    weight, activations = 4.0 * 320 * 2880, 4.0 * 4096 * (320 + 320)

    def conv(channels_first, channels_last):
        return LayerWork("c", "conv", 4096 * 320 * 2880, 0, weight, activations / 2, activations / 2, 1, FP32, FP32,
                         "fp32", dims, window=9, channels_first_bytes=channels_first,
                         channels_last_bytes=channels_last)

    bandwidth = device.primary.dram_bandwidth
    compute = gemm_compute_s(dims, params, device.primary.rates.peaks["fp32"], device.primary.sms)
    memory = (weight + activations) / bandwidth / params.memory_efficiency
    # cuDNN's fp32 kernels read NCHW: an NCHW input and OIHW weights are read as stored
    assert device.estimate_layer(conv(weight + activations, 0.0)).latency_s == pytest.approx(
        calibrated_time(params, 1, compute, memory))
    # a channels-last input is transformed to NCHW, and the output back
    assert device.estimate_layer(conv(weight, activations)).latency_s == pytest.approx(
        calibrated_time(params, 1, compute, memory, activations / bandwidth / 0.2))


def test_cross_validation_predicts_each_sample_once_from_a_fit_without_it(monkeypatch):
    import hw_models.fit as fit_module

    truth = ClassParams(kernel_s=8.3e-6, efficiency=0.5, memory_efficiency=0.5, tile_m=64, tile_n=128)
    samples, bandwidth, sms = _convolutions(truth, 0.18, noise=0.03)
    fitted_on, predicted = [], []
    real_fit, real_errors = fit_module.fit_classes, fit_module.relative_errors
    monkeypatch.setattr(fit_module, "fit_classes", lambda train, *a: fitted_on.append(train) or real_fit(train, *a))
    monkeypatch.setattr(fit_module, "relative_errors",
                        lambda fits, test, *a: predicted.append(test) or real_errors(fits, test, *a))
    held_out = cross_validated_errors(samples, bandwidth, sms, folds=3)["conv_fp16"]
    # every fit is made without the samples it then predicts, and every sample is predicted once
    assert len(fitted_on) == len(predicted) == 3 and len(held_out) == len(samples)
    assert all(not set(map(id, test)) & set(map(id, train)) for train, test in zip(fitted_on, predicted))
    assert sorted(id(s) for test in predicted for s in test) == sorted(map(id, samples))
    assert np.median(np.abs(held_out)) < 0.06  # the noise is 3%: the model generalises
    # the same data fitted without its transforms (the model before them) generalises worse
    without = [replace(s, channels_first_bytes=0.0) for s in samples]
    assert np.median(np.abs(cross_validated_errors(without, bandwidth, sms, folds=3)["conv_fp16"])) > 0.06


def test_calibrated_convolution_adds_its_layout_transforms_to_the_gemm():
    device = load_device("h200")
    params = device.primary.classes["conv_fp16"]
    assert params.transform_efficiency > 0  # the shipped fit prices cuDNN's NCHW <-> NHWC transforms
    dims = (1, 4096, 320, 2880)
    weight, activations = 2.0 * 320 * 2880, 2.0 * 4096 * (320 + 320)

    def conv(channels_first):
        return LayerWork("c", "conv", 4096 * 320 * 2880, 0, weight, activations / 2, activations / 2, 1, FP16, FP16,
                         "fp16", dims, window=9, channels_first_bytes=channels_first)

    bandwidth = device.primary.dram_bandwidth
    nchw, channels_last = device.estimate_layer(conv(weight + activations)), device.estimate_layer(conv(weight))
    compute = gemm_compute_s(dims, params, device.primary.rates.peaks["fp16"], device.primary.sms)
    memory = (weight + activations) / bandwidth / params.memory_efficiency
    assert nchw.latency_s == pytest.approx(
        calibrated_time(params, 1, compute, memory, transform_s(params, weight + activations, bandwidth)))
    assert nchw.latency_s - channels_last.latency_s == pytest.approx(
        activations / bandwidth / params.transform_efficiency)
    # a class fitted without transforms (a file from before them) prices none
    plain = ClassParams(params.kernel_s, params.efficiency, params.memory_efficiency, params.tile_m, params.tile_n)
    assert transform_s(plain, weight + activations, bandwidth) == 0.0


def test_fused_attention_by_hand():
    params = ClassParams(kernel_s=3e-6, efficiency=0.5, memory_efficiency=1.0, tile_m=128, tile_n=64,
                         head_dim_granule=64)
    peak, sms = 132e12, 132  # 1e12 per SM
    # 16 heads x 1024 queries: 128 blocks of 128 queries, one wave; each loops over 1024 keys (16 blocks of 64)
    # with head dim 40 computed as 64, for QK^T and AV
    one_wave = 2 * (2 * 128 * 1024 * 64) / 0.5e12
    assert fused_attention_compute_s((16, 1024, 1024, 40), params, peak, sms) == pytest.approx(one_wave)
    # head dims 33 to 64 cost the same; 65 costs a second granule
    assert fused_attention_compute_s((16, 1024, 1024, 64), params, peak, sms) == pytest.approx(one_wave)
    assert fused_attention_compute_s((16, 1024, 1024, 65), params, peak, sms) == pytest.approx(2 * one_wave)
    # 77 keys take two key blocks: as long as 128 keys
    assert fused_attention_compute_s((16, 1024, 77, 40), params, peak, sms) == pytest.approx(one_wave / 8)
    # 4 query blocks, keys split in chunks of >= 256: 4 splits, 16 units in one wave over 1024 / 4 keys
    split = ClassParams(3e-6, 0.5, 1.0, 128, 64, split_k_min=256, head_dim_granule=64)
    assert fused_attention_compute_s((1, 512, 1024, 64), split, peak, sms) == pytest.approx(one_wave / 4)
    assert attention_shape((16, 1024, 1024, 40), "qk") == attention_shape((16, 1024, 40, 1024), "av")


def test_calibrated_device_prices_fused_attention_halves_as_one_kernel():
    device = load_device("h100-calibrated")
    params = device.primary.classes["attention_fp16"]
    peak = device.primary.rates.peaks["fp16"]
    shape = (16, 1024, 1024, 32)
    macs = 16 * 1024 * 1024 * 32

    def half(name, dims, fused):
        return LayerWork(f"attn.{name}", "attention_matmul", macs, 0, 0.0, 2.0 * 16 * 1024 * 32, 0.0,
                         int(name == "qk" or not fused), FP16, None, "fp16", dims,
                         fused_attention=name if fused else "")

    fused = [device.estimate_layer(half(n, d, True)) for n, d in (("qk", shape), ("av", (16, 1024, 32, 1024)))]
    assert params.head_dim_granule > 0  # the shipped H100 fit prices its attention as one fused kernel
    assert fused[0].compute_s == fused[1].compute_s == pytest.approx(
        fused_attention_compute_s(shape, params, peak, device.primary.sms) / 2)
    # an unfused attention's matmuls (runtime.fused_attention: false) are GEMMs
    alone = device.estimate_layer(half("av", (16, 1024, 32, 1024), False))
    assert alone.compute_s == pytest.approx(gemm_compute_s((16, 1024, 32, 1024), params, peak, device.primary.sms))


def test_fit_finds_the_head_dimension_granule_of_a_fused_attention_kernel():
    truth = ClassParams(kernel_s=4e-6, efficiency=0.5, memory_efficiency=0.6, tile_m=128, tile_n=128,
                        head_dim_granule=64)
    peak, bandwidth, sms = 989e12, 3.35e12, 132
    samples = []
    for heads, queries, keys, head_dim in ((16, 1024, 1024, 40), (24, 1024, 1024, 32), (64, 256, 256, 32),
                                           (16, 256, 256, 80), (4, 4096, 4096, 64), (8, 256, 256, 160),
                                           (16, 4096, 77, 40), (16, 1024, 77, 80), (96, 64, 64, 32)):
        shape = (heads, queries, keys, head_dim)
        traffic = 2.0 * heads * head_dim * (2 * queries + 2 * keys)
        time = calibrated_time(truth, 1, fused_attention_compute_s(shape, truth, peak, sms),
                               traffic / bandwidth / 0.6)
        samples.append(Sample("attention_fp16", 1, (shape, (heads, queries, head_dim, keys)), 0, traffic, peak,
                              time))
    fit = fit_class(samples, bandwidth, sms)
    assert fit.params.head_dim_granule == 64
    assert fit.median_error < 0.02


def _samples_made_by(op_class, truth, count, seed):
    rng = np.random.default_rng(seed)
    peak, bandwidth, sms = 989e12, 3.35e12, 132
    samples = []
    for _ in range(count):
        dims = (int(rng.choice([1, 2, 8])), int(rng.choice([256, 1024, 4096])), int(rng.choice([320, 640, 1280])),
                int(rng.choice([2880, 5760, 11520])))
        batch, m, n, k = dims
        traffic = 2.0 * batch * (m * k + k * n + m * n)
        time = calibrated_time(truth, 1, gemm_compute_s(dims, truth, peak, sms), traffic / bandwidth / 0.8)
        samples.append(Sample(op_class, 1, (dims,), 0, traffic, peak, time * (1 + 0.08 * rng.standard_normal())))
    return samples


def test_a_thin_class_takes_the_tiling_of_the_class_it_was_split_from():
    conv = ClassParams(kernel_s=8e-6, efficiency=0.45, memory_efficiency=0.5, tile_m=64, tile_n=128)
    other_tiling = ClassParams(kernel_s=8e-6, efficiency=0.45, memory_efficiency=0.5, tile_m=256, tile_n=128,
                               split_k_min=2048)
    conv_samples = _samples_made_by("conv_fp16", conv, 30, seed=1)
    thin = _samples_made_by("downsample_fp16", other_tiling, MIN_SAMPLES_FOR_TILING - 1, seed=2)
    fits = fit_classes(conv_samples + thin, 3.35e12, 132)
    conv_tiling = (fits["conv_fp16"].params.tile_m, fits["conv_fp16"].params.tile_n,
                   fits["conv_fp16"].params.split_k_min)
    assert conv_tiling == (64, 128, 0)
    inherited = fits["downsample_fp16"].params
    assert (inherited.tile_m, inherited.tile_n, inherited.split_k_min) == conv_tiling
    searched = fit_class(thin, 3.35e12, 132).params
    assert (searched.tile_m, searched.tile_n, searched.split_k_min) != conv_tiling
    # with enough samples of its own, a class searches its tiling again
    thick = _samples_made_by("downsample_fp16", other_tiling, MIN_SAMPLES_FOR_TILING, seed=2)
    assert fit_classes(conv_samples + thick, 3.35e12, 132)["downsample_fp16"] == fit_class(thick, 3.35e12, 132)


def _calibrated_file(tmp_path, mutate, name="cal"):
    data = yaml.safe_load((DEVICE_DIR / "h100-sxm.yaml").read_text())
    mutate(data["engines"]["gpu"]["calibration"])
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c["classes"].update(conv_fp61={"kernel_s": 1e-6, "efficiency": 0.5, "memory_efficiency": 0.5}),
     r"calibration\.classes\.conv_fp61: unknown op class 'conv_fp61' \(did you mean 'conv_fp16'\?\); allowed: "),
    (lambda c: c["classes"]["norm"].update(efficiency=1.5), r"norm\.efficiency: an efficiency is at most 1"),
    (lambda c: c.pop("source"), r"engines\.gpu\.calibration\.source: required key is missing$"),
    (lambda c: c.update(sms=0), r"calibration\.sms: expected a positive integer"),
    (lambda c: c.update(fft_convolutions={"source": "s", "shapes": [{"batch": 1, "size": 32, "in_channels": 640,
                                                                     "out_channels": 640}]}),
     r"calibration\.fft_convolutions\.shapes\[0\]\.kernels: required key is missing$"),
    (lambda c: c.update(fft_convolutions={"source": "s", "shapes": []}), r"fft_convolutions\.shapes"),
    (lambda c: c["classes"]["conv_fp32"].update(wide_efficiency=0.4, wide_tile_m=0),
     r"classes\.conv_fp32: wide_efficiency needs wide_tile_m and wide_tile_n"),
])
def test_calibration_block_errors(tmp_path, mutate, message):
    with pytest.raises(DeviceFileError, match=message):
        load_device(_calibrated_file(tmp_path, mutate))


def _fft_conv(batch, size, cin, cout, precision="fp32", stride=1):
    from hw_models.workload import FP32

    pixels = batch * (size // stride) ** 2
    return LayerWork("c", "conv", pixels * cout * cin * 9, 0, 4.0 * cout * cin * 9, 4.0 * batch * size ** 2 * cin,
                     4.0 * pixels * cout, 1, FP32, FP32, "fp32", (1, pixels, cout, cin * 9),
                     tf32=precision == "tf32", window=9, stride=stride, batch=batch)


def _without_fft(calibration):
    from hw_models.engines.calibrated import FFT_CLASS, FFT_SIDES, fft_side_class

    for name in [FFT_CLASS] + [fft_side_class(side) for side in FFT_SIDES]:
        calibration["classes"].pop(name, None)
    calibration.pop("fft_convolutions", None)


def _one_fft_shape(calibration):
    """The FFT class, and SD-1.5's 640-channel convolution at 32x32 as the one shape cuDNN runs as an FFT."""
    from hw_models.engines.calibrated import FFT_CLASS

    _without_fft(calibration)
    calibration["classes"][FFT_CLASS] = {"kernel_s": 2e-6, "efficiency": 1.0, "memory_efficiency": 0.25}
    calibration["fft_convolutions"] = {"source": "a survey", "shapes": [
        {"batch": 1, "size": 32, "in_channels": 640, "out_channels": 640, "kernels": 2120}]}


def test_a_convolution_cudnn_runs_as_an_fft_is_priced_by_the_fft_class_and_no_other(tmp_path):
    from hw_models.engines.calibrated import FFT_CLASS, FftShape

    device = load_device(_calibrated_file(tmp_path, _one_fft_shape, "fft"))
    plain = load_device(_calibrated_file(tmp_path, _without_fft, "plain"))
    fft = device.estimate_layer(_fft_conv(1, 32, 640, 640))
    # 32x32 padded to 34, FFT of 64 x 64: 64 x 33 bins, one 640 x 640 complex64 matrix each
    assert FftShape(1, 32, 640, 640, 2120).frequency_bins == 64 * 33
    weights = 64 * 33 * 640 * 640 * 8
    assert fft.latency_s == pytest.approx(2120 * 2e-6 + weights / device.primary.dram_bandwidth / 0.25)
    assert fft.mapping.endswith("[calibrated: cuDNN FFT]")
    # its energy: the frequency-domain weights four times through DRAM, its 2,120 kernels, no NHWC transforms
    layer = _fft_conv(1, 32, 640, 640)
    assert fft.actions.dram_bytes == pytest.approx(layer.traffic_bytes + 4 * weights)
    assert (fft.actions.kernels, fft.actions.transform_bytes) == (2120, 0.0)
    assert fft.latency_s > 10 * plain.estimate_layer(_fft_conv(1, 32, 640, 640)).latency_s
    # any other shape, TF32, a strided convolution, or a file without the FFT class: the implicit-GEMM classes
    # 4 x 16 x 16 pixels make the same GEMM as 1 x 32 x 32, but not the recorded FFT
    assert _fft_conv(4, 16, 640, 640).gemm_dims == layer.gemm_dims
    for layer in (_fft_conv(1, 32, 640, 448), _fft_conv(2, 32, 640, 640), _fft_conv(1, 32, 640, 640, "tf32"),
                  _fft_conv(1, 64, 640, 640, stride=2), _fft_conv(4, 16, 640, 640)):
        assert device.estimate_layer(layer).latency_s == plain.estimate_layer(layer).latency_s
    shapes_only = load_device(_calibrated_file(tmp_path, lambda c: (_one_fft_shape(c), c["classes"].pop(FFT_CLASS)),
                                               "shapes"))
    assert shapes_only.estimate_layer(layer).latency_s == plain.estimate_layer(layer).latency_s
    # a class of the FFT's side (64 for a 32x32 input) prices it where the file has one; another side's does not
    for side, expected_class in ((64, (1e-6, 0.5)), (128, (2e-6, 0.25))):
        def with_side(calibration, side=side):
            _one_fft_shape(calibration)
            calibration["classes"][f"conv_fft{side}_fp32"] = {"kernel_s": 1e-6, "efficiency": 1.0,
                                                               "memory_efficiency": 0.5}
        sided = load_device(_calibrated_file(tmp_path, with_side, f"side{side}"))
        kernel_s, memory_efficiency = expected_class
        assert sided.estimate_layer(_fft_conv(1, 32, 640, 640)).latency_s == pytest.approx(
            2120 * kernel_s + weights / device.primary.dram_bandwidth / memory_efficiency)


def test_an_fft_convolution_whose_workspace_is_not_free_is_priced_as_the_implicit_gemm_cudnn_falls_back_to(tmp_path):
    from hw_models.engines.calibrated import FftShape

    device = load_device(_calibrated_file(tmp_path, _one_fft_shape, "fft"))
    plain = load_device(_calibrated_file(tmp_path, _without_fft, "plain"))
    workspace = FftShape(1, 32, 640, 640, 2120).workspace_bytes
    layer = _fft_conv(1, 32, 640, 640)
    as_gemm = plain.estimate_layer(layer)
    fits = device.estimate_layer(replace(layer, free_memory_bytes=workspace))
    assert fits.mapping.endswith("[calibrated: cuDNN FFT]") and fits.latency_s > 10 * as_gemm.latency_s
    short = device.estimate_layer(replace(layer, free_memory_bytes=workspace - 1))
    assert short.latency_s == as_gemm.latency_s and short.energy_j == as_gemm.energy_j
    assert f"its FFT's {workspace / 1e9:.1f} GB workspace not free" in short.mapping


@pytest.mark.parametrize("gpu, shapes", [("h100", 10), ("h200", 12)])
def test_the_fft_workspace_is_what_cudnn_added_on_the_gpu_for_every_fft_shape_measured(gpu, shapes):
    from hw_models.engines.calibrated import FftShape

    measured = json.loads((DEVICE_DIR.parents[1] / "reports" / f"gpu-fft-shapes-{gpu}.json").read_text())
    assert len(measured["rows"]) == shapes
    for row in measured["rows"]:
        shape = FftShape(row["batch"], row["size"], row["in"], row["out"], 0)
        assert shape.workspace_bytes == pytest.approx(row["workspace_bytes"], rel=0.01)
        # and cuDNN ran it as an FFT with a little more than that free, not with a little less
        assert row["above"]["ran_as_fft"] and not row["below"]["ran_as_fft"]
        assert row["below"]["free_bytes"] < shape.workspace_bytes < row["above"]["free_bytes"]


def test_hw_calibrate_end_to_end_on_cpu(tmp_path, capsys):
    out = tmp_path / "cpu.yaml"
    assert main(["hw", "calibrate", "--device", "cpu", "--quick", "-o", str(out), "--name", "cpu-test"]) == 0
    device = load_device(str(out))
    expected = {"linear_fp32", "conv_fp32", "pointwise_fp32", "downsample_fp32", "attention_fp32", "norm",
                "elementwise", "softmax", "memory", "resample", "strided_copy", "elementwise_strided", "memory_strided",
                "resample_strided", "bias_add"}
    assert device.name == "cpu-test" and set(device.primary.classes) == expected
    printed = capsys.readouterr().out
    assert "wrote" in printed and all(name in printed for name in expected)
    example = str(DEVICE_DIR.parents[1] / "examples" / "ldm4-bedrooms-w1a4.yaml")
    assert main(["estimate", example, "--hw", str(out), "--per-layer", "--format", "csv"]) == 0
    assert "[calibrated]" in capsys.readouterr().out


def test_hw_show_prints_the_file_with_its_sources(capsys):
    assert main(["hw", "show", "jetson"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown == yaml.safe_load((DEVICE_DIR / "jetson-agx-orin-64gb.yaml").read_text())
    assert shown["engines"]["gpu"]["compute"]["int4"]["source"].startswith("derived")
    assert ceil(shown["memory"]["dram"]["bandwidth"] / 1e9) == 205


def test_hw_calibrate_at_a_models_shapes(tmp_path):
    from unet_fixtures import TINY_UNET

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({"model": {"diffusers": {"class": "UNet2DModel", "config": TINY_UNET}}}))
    out = tmp_path / "tiny-cal.yaml"
    assert main(["hw", "calibrate", "--device", "cpu", "--quick", "--model", str(config), "-o", str(out)]) == 0
    from simdq.cli.estimate import traced_layers
    from simdq.config import load_config

    layers = traced_layers(load_config(str(config)))
    calibration = yaml.safe_load(out.read_text())["engines"]["gpu"]["calibration"]["classes"]
    convs = {(l.input_shape, l.out_channels, l.kernel_size, l.output_shape[-1]) for l in layers if l.kind == "conv"}
    pointwise = {c for c in convs if c[2] == (1, 1)}
    strided = {c for c in convs - pointwise if c[0][-1] // c[3] > 1}
    # every distinct conv shape of the model, once: 1x1 and strided convolutions in their own classes
    assert calibration["conv_fp32"]["samples"] == len(convs - pointwise - strided)
    for name, group in (("pointwise_fp32", pointwise), ("downsample_fp32", strided)):
        assert calibration.get(name, {"samples": len(group)})["samples"] == len(group)


def test_fused_softmax_is_priced_inside_the_calibrated_attention_kernel():
    device = load_device("h100-calibrated")
    fused = LayerWork("attn.softmax", "softmax", 0, 5 * 10**8, 0.0, 0.0, 0.0, 0, FP16, None, "fp16")
    alone = LayerWork("attn.softmax", "softmax", 0, 5 * 10**8, 0.0, 4.0e8, 4.0e8, 1, FP16, None, "fp16")
    assert device.estimate_layer(fused).latency_s == 0.0
    assert "attention kernel" in device.estimate_layer(fused).mapping
    assert device.estimate_layer(alone).latency_s > 0
    assert load_device("h100-roofline").estimate_layer(fused).latency_s > 0  # a plain roofline still prices the exps
