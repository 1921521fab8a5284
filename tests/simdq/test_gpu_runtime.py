"""model.yaml's runtime options for GPUs (TF32, dynamic activation quantization, GPU memory free) and the
calibration record (`simdq hw calibrate --record`, `simdq hw fit`)."""

import json
from pathlib import Path

import pytest
import yaml

from simdq.cli import main
from simdq.cli.estimate import run_estimate
from simdq.config import parse_config
from simdq.microbench import interleaved, samples_of
from simdq.microbench.suite import Benchmark

from unet_fixtures import TINY_UNET


def _estimate(device="h200", **sections):
    config = {"model": {"diffusers": {"class": "UNet2DModel", "config": TINY_UNET}, "dtype": "fp16"},
              "input": {"batch": 2}, **sections}
    return run_estimate(parse_config(config, "test"), device)


def _precisions(estimate) -> dict:
    found = {}
    for result in estimate.layers:
        if result.device and result.device.compute_precision:
            found.setdefault(result.layer.kind, set()).add(result.device.compute_precision)
    return found


@pytest.mark.parametrize("mode, expected", [
    ("none", {"conv": {"fp32"}, "linear": {"fp32"}}),
    ("convolutions", {"conv": {"tf32"}, "linear": {"fp32"}}),  # torch's defaults
    ("all", {"conv": {"tf32"}, "linear": {"tf32"}}),
])
def test_runtime_tf32_picks_what_runs_on_tf32_and_fused_attention_stays_fp32(mode, expected):
    config = {"model": {"diffusers": {"class": "UNet2DModel", "config": TINY_UNET}, "dtype": "fp32"},
              "runtime": {"tf32": mode}}
    precisions = _precisions(run_estimate(parse_config(config, "test"), "h200"))
    assert {k: precisions[k] for k in expected} == expected
    assert precisions.get("attention_matmul", {"fp32"}) == {"fp32"}


def test_dynamic_activation_quantization_adds_its_kernels_to_every_quantized_gemm():
    quant = {"weights": "int8", "activations": "int8"}
    fused = _estimate(quant=quant)
    dynamic = _estimate(quant=quant, runtime={"activation_quantization": "dynamic"})
    pairs = [(f, d) for f, d in zip(fused.layers, dynamic.layers) if f.device and f.layer.kind in ("conv", "linear")]
    assert pairs
    for f, d in pairs:
        assert d.device.overhead_s > f.device.overhead_s and d.device.latency_s > f.device.latency_s
        # int8 GEMMs on a GPU return int32: quantize before, dequantize after
        assert "quantize (8 kernels)" in d.device.mapping and "dequantize (3 kernels)" in d.device.mapping
        # the counts the energy prices carry the added kernels and their traffic, the GEMM's MACs unchanged
        assert d.device.actions.kernels == f.device.actions.kernels + 8 + 3
        assert d.device.actions.dram_bytes > f.device.actions.dram_bytes
        assert d.device.actions.write_bytes > f.device.actions.write_bytes > 0
        assert d.device.actions.weight_bytes == f.device.actions.weight_bytes > 0
        assert d.device.actions.macs == f.device.actions.macs
    unquantized = _estimate(runtime={"activation_quantization": "dynamic"})
    assert unquantized.totals["latency_s"] == pytest.approx(_estimate().totals["latency_s"])


def test_fp8_dynamic_quantization_has_no_dequantize_step():
    estimate = _estimate(quant={"weights": "e4m3fn", "activations": "e4m3fn"},
                         runtime={"activation_quantization": "dynamic"})
    mappings = [r.device.mapping for r in estimate.layers if r.device and r.layer.kind == "linear"]
    assert mappings and all("quantize (6 kernels)" in m and "dequantize" not in m for m in mappings)


def _fp32_conv(free_gb=None, batch=1):
    """SD-1.5's 640-channel 3x3 convolution at 32x32 in fp32 (TF32 off), which the H100's file records as one
    cuDNN runs as an FFT, alone on the H100."""
    config = {"model": {"layer": {"kind": "conv", "in_channels": 640, "out_channels": 640, "size": 32},
                        "dtype": "fp32"}, "input": {"batch": batch},
              "runtime": {"tf32": "none", "gpu_memory_free_gb": free_gb}}
    (result,) = [r for r in run_estimate(parse_config(config, "test"), "h100").layers if r.layer.kind == "conv"]
    return result.device


def test_an_fft_convolution_runs_as_one_only_where_the_gpu_memory_free_holds_its_workspace():
    from hw_models import load_device
    from hw_models.engines.calibrated import FftShape

    workspace_gb = FftShape(1, 32, 640, 640, 2120).workspace_bytes / 1e9
    assert 13.8 < workspace_gb < 14.0  # reports/gpu-fft-shapes-h100.json: 13.88 GB added on the H100
    default, fits = _fp32_conv(), _fp32_conv(workspace_gb + 0.01)
    assert "cuDNN FFT" in default.mapping and default.latency_s == fits.latency_s  # an idle 80 GB GPU holds it
    short = _fp32_conv(workspace_gb - 0.01)
    assert "cuDNN FFT" not in short.mapping and "workspace not free" in short.mapping
    assert short.latency_s < default.latency_s / 10
    # at another batch the convolution is no FFT shape of the file, whatever is free
    assert "cuDNN FFT" not in _fp32_conv(batch=3).mapping
    assert load_device("h100").memory_bytes == 80e9


def test_by_default_the_gpu_memory_free_is_the_devices_less_the_weights():
    from types import SimpleNamespace

    from simdq.config import RuntimeSection
    from simdq.cost.estimate import free_memory_bytes

    results = [SimpleNamespace(cost=SimpleNamespace(weight_bytes=w)) for w in (3e9, 0.0, 1e9)]
    assert free_memory_bytes(RuntimeSection(), SimpleNamespace(memory_bytes=80e9), results) == 76e9
    assert free_memory_bytes(RuntimeSection(), SimpleNamespace(memory_bytes=3e9), results) == 0.0
    assert free_memory_bytes(RuntimeSection(), SimpleNamespace(memory_bytes=None), results) == float("inf")
    given = RuntimeSection(gpu_memory_free_gb=12.5)
    assert free_memory_bytes(given, SimpleNamespace(memory_bytes=80e9), results) == 12.5e9


def test_an_fft_finds_the_memory_free_less_what_earlier_ffts_of_other_sizes_left_cached():
    from simdq.cost.estimate import CachedWorkspaces

    small, large, largest = 6.94e9, 13.88e9, 20.8e9  # SD-1.5's 320->640, 640->640 and 960->640 at 32x32
    forward = (small, large, 0.0, large, largest, large)
    at_20 = CachedWorkspaces(20e9)
    assert [at_20.free_for(w) for w in forward] == [20e9, 20e9 - small, 20e9, 20e9 - small, 20e9 - small,
                                                    20e9 - small]
    assert at_20.blocks == [small]  # the 640->640 FFT's 13.9 GB would fit alone, not beside the cached 6.9 GB
    at_48 = CachedWorkspaces(48e9)
    free = [at_48.free_for(w) for w in forward]
    assert at_48.blocks == [small, large, largest] and all(w <= f for w, f in zip(forward, free))
    assert free[3] == 48e9  # the cached 13.9 GB block serves the next 640->640 FFT again


def test_the_model_prices_as_ffts_exactly_the_workspaces_a_captured_sd15_forward_allocated():
    """reports/gpu-fft-forward-h100.json: an H100 capturing SD-1.5 in fp32 with 48 down to 8 GB free beside it;
    an FFT's workspace (6.9 GB and up) is what tells it from an implicit GEMM (a few MB)."""
    from hw_models import load_device
    from simdq.cost.estimate import layer_work

    recorded = json.loads((Path(__file__).resolve().parents[2] / "reports" / "gpu-fft-forward-h100.json").read_text())
    device = load_device("h100")
    levels = set()
    for run in recorded["runs"]:
        config = parse_config({"model": {"preset": "sd15", "dtype": "fp32"},
                               "runtime": {"tf32": "none", "gpu_memory_free_gb": run["gpu_memory_free_gb"]}}, "t")
        layers = {r.layer.name: r for r in run_estimate(config, "h100").layers if r.device}
        captured = {c["name"]: c["peak_added_bytes"] for c in run["convolutions"]
                    if c["phase"] == "capture" and c["call"] == 1 and c["peak_added_bytes"] > 1e9}
        assert {name for name, r in layers.items() if "cuDNN FFT" in r.device.mapping} == set(captured)
        for name, peak in captured.items():
            assert device.workspace_bytes(layer_work(layers[name], "fp32")) == pytest.approx(peak, rel=0.01)
        levels.add(len(captured))
    assert levels == {8, 7, 1}  # every FFT, all but the 960->640 one, only the 320->640 one


def test_the_device_says_which_layers_ask_for_an_fft_workspace():
    from dataclasses import replace

    from hw_models import load_device
    from hw_models.engines.calibrated import FftShape
    from simdq.cost.estimate import layer_work

    config = parse_config({"model": {"layer": {"kind": "conv", "in_channels": 640, "out_channels": 640, "size": 32},
                                     "dtype": "fp32"}, "runtime": {"tf32": "none"}}, "test")
    (result,) = [r for r in run_estimate(config, "h100").layers if r.layer.kind == "conv"]
    work = layer_work(result, "fp32")
    device = load_device("h100")
    assert device.workspace_bytes(work) == FftShape(1, 32, 640, 640, 2120).workspace_bytes
    assert device.workspace_bytes(replace(work, tf32=True)) == 0.0  # cuDNN runs no TF32 convolution as an FFT
    assert load_device("h100-roofline").workspace_bytes(work) == 0.0


def test_the_gpu_memory_free_is_a_number_of_gb_or_one_line(tmp_path, capsys):
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"model": {"preset": "ddpm-cifar10"}, "runtime": {"gpu_memory_free_gb": -1}}))
    assert main(["estimate", str(path), "--hw", "h100"]) == 2
    err = capsys.readouterr().err.strip()
    assert "runtime.gpu_memory_free_gb" in err and "greater than or equal to 0" in err and len(err.splitlines()) == 1


def test_an_unknown_runtime_option_is_one_line(tmp_path, capsys):
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"model": {"preset": "ddpm-cifar10"}, "runtime": {"tf32": "sometimes"}}))
    assert main(["estimate", str(path), "--hw", "h200"]) == 2
    err = capsys.readouterr().err.strip()
    assert "runtime.tf32" in err and "'none', 'convolutions' or 'all'" in err and len(err.splitlines()) == 1


def test_interleaved_suite_reaches_every_class_first():
    bench = lambda c: Benchmark(c, "", (), 0, 1, None)  # noqa: E731
    suite = [bench("a")] * 3 + [bench("b")] * 2 + [bench("c")]
    order = [b.op_class for b in interleaved(suite)]
    assert order[:3] == ["a", "b", "c"] and sorted(order) == sorted(b.op_class for b in suite)


def _record(tmp_path, measurements):
    record = {"format": "simdq-microbenchmarks-1", "base": "h200", "date": "2026-12-02", "torch": "t", "cuda": "c",
              "gpu": "GPU", "sms": 132, "measurements": measurements}
    path = tmp_path / "record.json"
    path.write_text(json.dumps(record))
    return record, path


def _measurement(op_class, i, **extra):
    return {"op_class": op_class, "kernels": 1, "gemm_dims": [[1, 256 * (i + 1), 512, 512]], "vector_flops": 0,
            "traffic_bytes": 2e6 * (i + 1), "peak": 989.4e12, "measured_s": 5e-6 * (i + 1), "precision": "fp16",
            **extra}


def test_energy_read_at_a_throttled_clock_without_its_own_time_is_left_out(tmp_path):
    measurements = [_measurement("linear_fp16", 0, energy_j=1e-3, sm_clock_mhz=1980),
                    _measurement("linear_fp16", 1, energy_j=2e-3, sm_clock_mhz=1500),
                    _measurement("linear_fp16", 2, energy_j=3e-3, sm_clock_mhz=1500, sustained_s=2e-5)]
    record, _ = _record(tmp_path, measurements)
    assert [s.energy_j for s in samples_of(record)] == [1e-3, None, 3e-3]


def test_hw_fit_writes_a_calibrated_device_from_a_record(tmp_path, capsys):
    measurements = [_measurement("linear_fp16", i, energy_j=(150 * 5e-6 + 1e-4) * (i + 1), sm_clock_mhz=1980)
                    for i in range(6)]
    _, path = _record(tmp_path, measurements)
    out = tmp_path / "fitted.yaml"
    assert main(["hw", "fit", str(path), "-o", str(out), "--name", "my-h200"]) == 0
    assert "wrote" in capsys.readouterr().out
    from hw_models import load_device

    device = load_device(str(out))
    assert device.name == "my-h200" and set(device.primary.classes) == {"linear_fp16"}
    assert "NVML" in device.spec["energy"]["measured"]["source"]
    path.write_text(json.dumps({"format": "something else"}))
    assert main(["hw", "fit", str(path), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a microbenchmark record" in err and len(err.splitlines()) == 1


def test_the_energy_fit_splits_l2_from_dram_at_the_l2_the_run_read(tmp_path):
    from hw_models import load_device
    from simdq.microbench import calibrated_spec

    measurements = [_measurement("linear_fp16", i, energy_j=(150 * 5e-6 + 1e-4) * (i + 1), sm_clock_mhz=1980)
                    for i in range(6)]
    record, _ = _record(tmp_path, measurements)
    base = load_device("h200")
    assert calibrated_spec(base, record, "x")["energy"]["measured"]["l2_bytes"] == base.spec["memory"]["l2"]["capacity"]
    record["l2_bytes"] = 52428800  # what torch reads on the GPU wins over the base file's figure
    assert calibrated_spec(base, record, "x")["energy"]["measured"]["l2_bytes"] == 52428800


def test_hw_list_says_which_devices_are_calibrated_and_how_close(capsys):
    assert main(["hw", "list"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line and not line.startswith(("-", " "))}
    assert "calibrated, energy measured" in rows["h200"] and "calibrated" in rows["h100-sxm"]
    assert "roofline, energy: dynamic only" in rows["a100"]
    assert "h200: fitted by simdq hw calibrate on NVIDIA H200" in out and "--hw h200-roofline" in out
    assert "reports/gpu-validation-h200.md" in out


def test_weight_only_dequantize_reads_full_weights_after_two_kernels_mixed_input_reads_the_codes():
    quant = {"weights": "int4"}
    mixed = _estimate(quant=quant)
    eager = _estimate(quant=quant, runtime={"weight_only": "dequantize"})
    pairs = [(m, e) for m, e in zip(mixed.layers, eager.layers) if m.device and m.layer.kind in ("conv", "linear")]
    assert pairs
    for m, e in pairs:
        assert "unpack weights" in m.device.mapping and "unpack weights" not in e.device.mapping
        assert "elementwise (2 kernels)" in e.device.mapping and e.device.latency_s > m.device.latency_s
        # the GEMM reads fp16 weights (2 bytes, not the 0.5-byte codes); the cast reads the codes and writes fp16,
        # the scale multiply reads and writes fp16
        grown = e.device.actions.dram_bytes - m.device.actions.dram_bytes
        weights = m.layer.weight_params
        assert grown == pytest.approx(weights * (2 - 0.5) + weights * (0.5 + 2) + weights * (2 + 2))
    fp16 = _estimate(runtime={"weight_only": "dequantize"})
    assert fp16.totals["latency_s"] == pytest.approx(_estimate().totals["latency_s"])  # nothing weight-only


def test_a_record_from_before_channels_first_bytes_transforms_its_convolutions_whole(tmp_path):
    conv = _measurement("conv_fp16", 0)
    stated = {**_measurement("conv_fp16", 1), "channels_first_bytes": 5.0}
    record, _ = _record(tmp_path, [conv, stated, _measurement("linear_fp16", 2)])
    # the suite's convolutions were all NCHW: input, weights and output transformed
    assert [s.channels_first_bytes for s in samples_of(record)] == [conv["traffic_bytes"], 5.0, 0.0]


def test_hw_crossval_prints_each_class_held_out_and_against_another_record(tmp_path, capsys):
    measurements = [_measurement("linear_fp16", i) for i in range(6)]
    _, path = _record(tmp_path, measurements)
    (tmp_path / "slower").mkdir()
    _, slower = _record(tmp_path / "slower", [{**m, "measured_s": 2 * m["measured_s"]} for m in measurements])

    def row_against(other):
        assert main(["hw", "crossval", str(path), "--against", str(other), "--folds", "3"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert "held out (3-fold)" in lines[0] and next(l for l in lines if l.startswith("all")).split()[1] == "6"
        row = next(line.split() for line in lines if line.startswith("linear_fp16"))
        return row[1], *(float(cell.rstrip("%")) / 100 for cell in row[2:])

    samples, in_sample, held_out, same = row_against(path)
    assert samples == "6" and same == in_sample < 0.1 and held_out >= in_sample
    # every time of the other record twice the fitted one's: the fit is about 50% under on it
    assert 0.45 < row_against(slower)[-1] < 0.55
    with pytest.raises(SystemExit) as usage_error:
        main(["hw", "crossval", str(path), "--folds", "1"])
    assert usage_error.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "--folds" in err and len(err.splitlines()) == 1
    _, thin = _record(tmp_path, measurements[:2])  # too few to fit any class
    assert main(["hw", "crossval", str(thin)]) == 2
    err = capsys.readouterr().err.strip()
    assert "3 microbenchmarks" in err and len(err.splitlines()) == 1


def test_hw_crossval_rates_the_energy_fit_and_what_the_strided_energy_buys(tmp_path, capsys):
    def watts(m, strided_pj=0.0):  # 150 W plus 100 pJ per byte (L2: every record here fits), more when strided
        return 150 * m["measured_s"] + (100 + strided_pj) * m["traffic_bytes"] * 1e-12

    measurements = [_measurement("linear_fp16", i) for i in range(6)] + [
        {**_measurement(name, i), "gemm_dims": [], "precision": "", "vector_flops": 1e6, "measured_s": 4e-6 * (i + 2)}
        for name in ("elementwise", "strided_copy") for i in range(6)]
    for m in measurements:
        m.update(energy_j=watts(m, 250.0 * (m["op_class"] == "strided_copy")), sm_clock_mhz=1980)
    _, path = _record(tmp_path, measurements)
    (tmp_path / "twice").mkdir()
    _, twice = _record(tmp_path / "twice", [{**m, "energy_j": 2 * m["energy_j"]} for m in measurements])

    def energy_row(*flags, label="energy "):
        assert main(["hw", "crossval", str(path), "--against", str(twice), *flags]) == 0
        lines = capsys.readouterr().out.splitlines()
        row = next(line.split("  ") for line in lines if line.startswith(label))
        cells = [cell.strip() for cell in row[1:] if cell.strip()]
        return cells[0], *(float(cell.rstrip("%")) / 100 for cell in cells[1:])

    samples, in_sample, held_out, against = energy_row()
    assert samples == "18" and in_sample < 0.001 and held_out < 0.001 and 0.49 < against < 0.51
    assert energy_row(label="energy, strided")[:3] == ("6", pytest.approx(0, abs=0.001), pytest.approx(0, abs=0.001))
    _, plain_in_sample, plain_held_out, _ = energy_row("--without-strided-energy")
    assert plain_in_sample > 0.01 and plain_held_out > 0.01  # the strided copies' extra has nowhere to go
    strided_in_sample = energy_row("--without-strided-energy", label="energy, strided")[1]
    assert strided_in_sample > plain_in_sample  # missed most on the strided copies themselves
    # another GPU's samples are priced at its own L2: on one too small for them they stream from DRAM, whose
    # energy this all-L2 record could not fit
    (tmp_path / "small-l2").mkdir()
    record, twice = _record(tmp_path / "small-l2", measurements)
    record["l2_bytes"] = 1e3
    twice.write_text(json.dumps(record))
    assert energy_row()[-1] > 0.2
    unmetered = [{k: v for k, v in m.items() if k != "energy_j"} for m in measurements]
    _, path = _record(tmp_path, unmetered)
    assert main(["hw", "crossval", str(path)]) == 0
    assert "energy" not in capsys.readouterr().out


def test_hw_crossval_shows_where_the_energy_fit_leans_and_the_fit_relative_to_the_measurement_leans_low(tmp_path,
                                                                                                        capsys):
    measurements = [{**_measurement("elementwise", i), "gemm_dims": [], "precision": "", "vector_flops": 1e6,
                     "measured_s": 4e-6 * (i + 2)} for i in range(12)]
    for i, m in enumerate(measurements):  # 150 W, each reading 20% over or under
        m.update(energy_j=150 * m["measured_s"] * (1.2 if i % 2 else 1 / 1.2), sm_clock_mhz=1980)
    _, path = _record(tmp_path, measurements)

    def signed_mean(*flags):
        assert main(["hw", "crossval", str(path), *flags]) == 0
        line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("energy: signed mean"))
        return float(line.split()[-2].rstrip("%")) / 100  # in sample

    assert signed_mean() == pytest.approx(0.0, abs=0.001)
    assert signed_mean("--energy-relative-to-measurement") < -0.01
