"""Validate the calibrated GPU model on a real GPU: whole forwards and every conv and linear module of four
presets in fp16, bf16, fp32 (TF32 off and on), SD-1.5 with hand-quantized FP8 and int8 nn.Linear layers, and the
energy of a forward against the GPU's own energy counter.

    simdq hw calibrate --base h200 -o h200.yaml --record OUT/microbenchmarks.json   # on the GPU: the fit's data
    python benchmarks/gpu_validation.py measure -o OUT        # on the GPU: the models (PLAN below)
    python benchmarks/gpu_validation.py report OUT/measurements.json --samples-from OUT/microbenchmarks.json \
        --base h200 -o reports/gpu-validation-h200.md       # anywhere: fit, predict, compare
    python benchmarks/gpu_validation.py compare FIRST.json SECOND.json   # two runs' or two GPUs' files apart

`measure` times each run of PLAN under CUDA graphs (whole forward; each conv and linear module alone on the
inputs it sees in a real forward) and reads NVML's energy counter around the forwards PLAN names, writing
measurements.json after every run. `report` fits the calibrated model from the microbenchmarks (and with
--conv-algorithms a survey's convolutions) alone, never at these models' layers' shapes, predicts every run
with `simdq estimate`'s pipeline (calibrated, and the plain roofline), writes the comparison, and rewrites the
catalogue's device file with the fit and a one-line summary of its validation (what `simdq hw list` shows).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

FORMAT = "simdq-gpu-validation-2"
# (preset, precision, variant, batches timed whole, batches timed layer by layer, batches with energy)
PLAN = (
    ("ldm4-lsun-bedrooms", "fp16", "plain", (1, 2, 4, 8, 16, 32, 64), (1, 8, 64), (1, 8, 64)),
    ("ldm4-lsun-bedrooms", "bf16", "plain", (1, 2, 4, 8, 16, 32, 64), (8,), (8,)),
    ("ldm4-lsun-bedrooms", "fp32", "plain", (1, 8), (8,), (1, 8)),
    ("ldm4-lsun-bedrooms", "tf32", "plain", (1, 8), (8,), (1, 8)),
    ("ldm8-lsun-churches", "fp16", "plain", (1, 8, 32), (1, 8), (8,)),
    ("ldm8-lsun-churches", "bf16", "plain", (8,), (), ()),
    ("ddpm-cifar10", "fp16", "plain", (1, 8, 64), (1, 8), (8,)),
    ("ddpm-cifar10", "bf16", "plain", (8,), (), ()),
    ("sd15", "fp16", "plain", (1, 4, 8), (1, 4), (1, 4)),
    ("sd15", "bf16", "plain", (4,), (), ()),
    ("sd15", "fp32", "plain", (1,), (), (1,)),
    ("sd15", "tf32", "plain", (1,), (), (1,)),
    ("sd15", "fp16", "fp8-dynamic", (1, 4), (1, 4), (1, 4)),
    ("sd15", "fp16", "int8-dynamic", (1, 4), (1, 4), (1, 4)),
)
QUICK_PLAN = (("ddpm-cifar10", "fp32", "plain", (1,), (1,), ()),)
DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32", "tf32": "float32"}


def _inputs(model, batch: int, device, dtype) -> dict:
    """A real forward's inputs: seeded latents, a timestep, and for conditional UNets a seeded context."""
    import torch

    from simdq.model.sampling import conditioning, latent_shape

    generator = torch.Generator().manual_seed(batch)
    inputs = {"sample": torch.randn(batch, *latent_shape(model), generator=generator),
              "timestep": torch.full((batch,), 500, dtype=torch.long)}
    inputs.update(conditioning(model, batch, generator))

    def move(value):
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        return value.to(device, dtype) if value.is_floating_point() else value.to(device)

    return {k: move(v) for k, v in inputs.items()}


def _layer_times(model, inputs: dict, device) -> dict:
    """Every conv and linear module (and the quantized linears) timed alone on the inputs of a real forward."""
    import torch

    from gpu_quantized import VARIANTS
    from simdq.microbench.timing import time_op

    kinds = (torch.nn.Conv2d, torch.nn.Linear, *VARIANTS.values())
    captured = {}

    def keep(module, args, name):
        captured.setdefault(name, (module, args))  # returns None: the inputs pass unchanged

    hooks = [module.register_forward_pre_hook(lambda m, args, name=name: keep(m, args, name))
             for name, module in model.named_modules() if isinstance(module, kinds)]
    model(**inputs)
    for hook in hooks:
        hook.remove()
    return {name: time_op(lambda: module(*args), device) for name, (module, args) in captured.items()}


def _kernel_names(run) -> list:
    """The CUDA kernels one call launches, in order (torch.profiler)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    run()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        run()
        torch.cuda.synchronize()
    return [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]


def _kernel_profile(device) -> dict:
    """Which kernels each hand-written quantized linear launches (one SD-1.5 shape), to count them."""
    import torch

    from gpu_quantized import VARIANTS

    linear = torch.nn.Linear(320, 320, device=device, dtype=torch.float16)
    x = torch.randn(2, 4096, 320, device=device, dtype=torch.float16)
    profile = {"shape": "x (2, 4096, 320) -> Linear(320, 320), fp16", "fp16": _kernel_names(lambda: linear(x))}
    for variant, module in VARIANTS.items():
        quantized = module(linear)
        profile[variant] = _kernel_names(lambda: quantized(x))
    return profile


def measure(out_dir: Path, device_name: str, quick: bool, only: str, energy_only: bool = False, run=None,
            leave_free_gb=()) -> None:
    """Each run of the plan (or `run` alone) timed and saved to OUT/measurements.json; with `leave_free_gb`, once
    with each of those GB left free on the GPU beside the model (the rest taken), for cuDNN's workspace."""
    import torch

    from gpu_quantized import quantize_linears
    from simdq.microbench import energy_meter
    from simdq.microbench.energy import energy_calls
    from simdq.microbench.gpu_memory import GB, leave_free
    from simdq.microbench.timing import capture, replay_seconds, tf32_mode
    from simdq.model.unets import build_unet
    from simdq.output import replacing
    from simdq.presets import preset_spec

    device = torch.device(device_name)
    cuda = device.type == "cuda"
    out_dir.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_properties(device) if cuda else None
    meter = energy_meter(device, energy=cuda)
    data = {"format": FORMAT, "gpu": gpu.name if cuda else "cpu", "sms": gpu.multi_processor_count if cuda else 1,
            "torch": torch.__version__, "cuda": torch.version.cuda, "runs": [],
            "timing": "CUDA graphs: median of 7 replays of 20 captured calls",
            "energy": "NVML total-energy counter: the board's average power between two counter steps while the "
                      "graph replays back to back, x the time per call"}
    if meter is not None:
        data.update(energy_counter_interval_s=meter.interval_s, idle_before=meter.idle_power().__dict__)
    if cuda:
        try:
            data["kernels"] = _kernel_profile(device)
        except RuntimeError as err:  # the profiler needs CUPTI; the timings do not
            data["kernels"] = {"error": str(err).splitlines()[0]}

    def save():
        with replacing(out_dir / "measurements.json", "-o") as temporary:
            temporary.write_text(json.dumps(data, indent=1))

    plan = QUICK_PLAN if quick else [p for p in PLAN if not only or p[0] == only]
    if run:  # (preset, precision, batch) as run_spec reads it, whole and layer by layer
        preset, precision, batch = run
        plan = [(preset, precision, "plain", (batch,), (batch,), ())]
    if energy_only:  # the energy rows again, without the per-layer timings
        plan = [(*p[:3], p[5], (), p[5]) for p in plan if p[5]]
    for preset, precision, variant, batches, layer_batches, energy_batches in plan:
        dtype = getattr(torch, DTYPES[precision]) if cuda else torch.float32
        with torch.no_grad(), tf32_mode(precision == "tf32"):
            model = build_unet(preset_spec(preset), str(device)).to(dtype)
            for batch in batches:
                inputs = _inputs(model, batch, device, dtype)
                for free_gb in leave_free_gb or (None,):
                    taken = []  # memory held while this run is measured
                    run = {"preset": preset, "precision": precision, "variant": variant, "batch": batch}
                    if free_gb is not None:
                        run["gpu_memory_free_gb"] = round(leave_free(free_gb * GB, taken, device) / GB, 3)
                    try:
                        if variant != "plain" and batch == batches[0]:
                            kept_fp16 = quantize_linears(model, variant, inputs)
                        if variant != "plain":
                            run["kept_in_model_precision"] = kept_fp16
                        graph = capture(lambda: model(**inputs), device)
                        run["forward_s"] = replay_seconds(graph)
                        if meter is not None and batch in energy_batches:
                            calls = energy_calls(run["forward_s"], meter.window())
                            graph = graph if calls == graph.calls else capture(lambda: model(**inputs), device, calls)
                            reading = meter.busy_power(graph.graph.replay, run["forward_s"] * calls)
                            sustained_s = reading.sustained_replay_s / calls
                            run.update(power_w=reading.watts, energy_j=reading.watts * sustained_s,
                                       sustained_s=sustained_s, energy_window_s=reading.window_s,
                                       sm_clock_mhz=reading.sm_clock_mhz, temperature_c=reading.temperature_c)
                        del graph
                        if batch in layer_batches:
                            run["layers"] = _layer_times(model, inputs, device)
                    except (RuntimeError, torch.cuda.OutOfMemoryError) as err:
                        run["error"] = str(err).splitlines()[0]
                    del taken
                    data["runs"].append(run)
                    print(f"{preset} {precision} {variant_label(run)} batch {batch}: "
                          + (f"{run['forward_s'] * 1e3:.3f} ms" if "forward_s" in run else run.get("error", "?"))
                          + (f", {run['energy_j']:.3f} J at {run['power_w']:.0f} W" if "energy_j" in run else ""),
                          flush=True)
                    save()
        model = inputs = None  # the next preset's model gets the memory
        if cuda:
            torch.cuda.empty_cache()
    if meter is not None:
        data["idle_after"] = meter.idle_power().__dict__
    save()


QUANT_FORMATS = {"fp8-dynamic": "e4m3fn", "int8-dynamic": "int8"}
FORWARD_GOAL, LAYER_GOAL, ENERGY_GOAL = 0.10, 0.15, 0.15


def run_config(run: dict, activation_quantization: str = "dynamic") -> dict:
    """The model.yaml that describes a measured run: its preset, dtype, batch, TF32 mode and, for the
    hand-quantized SD-1.5, its quantized nn.Linear layers (all but those kept in the model's precision)."""
    from simdq.cli.estimate import traced_layers
    from simdq.config import parse_config

    fp32 = run["precision"] in ("fp32", "tf32")
    config = {"model": {"preset": run["preset"], "dtype": "fp32" if fp32 else run["precision"]},
              "input": {"batch": run["batch"]},
              "runtime": {"tf32": {"fp32": "none", "tf32": "all"}.get(run["precision"], "convolutions")}}
    if "gpu_memory_free_gb" in run:
        config["runtime"]["gpu_memory_free_gb"] = run["gpu_memory_free_gb"]
    if run["variant"] != "plain":
        kept = set(run.get("kept_in_model_precision", ()))
        names = [l.name for l in traced_layers(parse_config(config, "run")) if l.kind == "linear" and l.name not in kept]
        fmt = QUANT_FORMATS[run["variant"]]
        config["quant"] = {"rules": [{"match": names, "weights": fmt, "activations": fmt}],
                           "granularity": {"weights": "per_tensor"}}
        config["runtime"]["activation_quantization"] = activation_quantization
    return config


def _predict(device, run: dict, activation_quantization: str = "dynamic"):
    from simdq.cli.estimate import run_estimate
    from simdq.config import parse_config

    estimate = run_estimate(parse_config(run_config(run, activation_quantization), "validation"), device)
    layers = {r.layer.name: r.device.latency_s for r in estimate.layers if r.device}
    return layers, estimate.totals["latency_s"], estimate.totals["energy_j"]


class MeasurementsError(ValueError):
    """A file `report` cannot use: one line, exit code 2."""


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MeasurementsError(f"{path}: not a readable {what} ({err})") from None
    if not isinstance(data, dict):
        raise MeasurementsError(f"{path}: not a {what} (a JSON object expected)")
    return data


def _checked_runs(data: dict, path: Path) -> list:
    """The runs of a measurements file, each with what a prediction reads, or one line saying what is wrong."""
    try:
        runs = _runs_of(data)
        for run in runs:
            if "forward_s" in run:
                _ = (str(run["preset"]), str(run["precision"]), str(run["variant"]), int(run["batch"]),
                     float(run["forward_s"]), float(run.get("gpu_memory_free_gb", 0)))
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise MeasurementsError(f"{path}: not a measurements file of gpu_validation.py measure (a run is "
                                f"malformed: {err!r})") from None
    return runs


def variant_label(run: dict) -> str:
    """A run's variant, with the GPU memory it left free where it left only some."""
    free = run.get("gpu_memory_free_gb")
    return run["variant"] + ("" if free is None else f", {free:.1f} GB free")


def run_key(run: dict) -> tuple:
    return run["preset"], run["precision"], variant_label(run), int(run["batch"])


def first_of_each_run(runs: list) -> list:
    """Each (preset, precision, variant, batch) once, from the first file that measured it, with the per-layer
    times of the first file that has them: a later file fills in what an earlier one lacks (a measurement the
    device's time limit cut short, a batch timed layer by layer on its own)."""
    kept = {}
    for run in runs:
        key = run_key(run)
        if key not in kept:
            kept[key] = run
        elif "layers" in run and "layers" not in kept[key]:
            kept[key] = {**kept[key], "layers": run["layers"]}
    return list(kept.values())


def _checked_record(data: dict, samples: dict, path: Path) -> dict:
    from simdq.microbench import samples_of

    try:
        record = _record_of(data, samples)
        samples_of(record)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise MeasurementsError(f"{path}: not a microbenchmark record (a measurement is malformed: {err!r})") from None
    return record


def _runs_of(data: dict) -> list:
    """Runs in the current layout; a first-format file (one preset in fp16, `forwards` and `layers`) converted."""
    if "runs" in data:
        return data["runs"]
    return [{"preset": data["preset"], "precision": data["dtype"], "variant": "plain", "batch": int(batch),
             "forward_s": seconds,
             "layers": {l["name"]: l["seconds"] for l in data["layers"] if l["batch"] == int(batch)}}
            for batch, seconds in data["forwards"].items()]


def _record_of(data: dict, samples_from: dict) -> dict:
    """A microbenchmark record (simdq.microbench) for the fit: a `hw calibrate --record`, or a first-format
    measurements file's `samples`."""
    if "measurements" in samples_from:
        return samples_from
    return {"gpu": data["gpu"], "sms": data["sms"], "torch": data["torch"], "date": data.get("date", "undated"),
            "measurements": samples_from["samples"]}


def validated_gemm_shapes(runs: list) -> set:
    """Every GEMM shape (batch, M, N, K) of a layer of the measured runs (each preset at each batch)."""
    from simdq.cli.estimate import traced_layers
    from simdq.config import parse_config

    firsts = {(run["preset"], run["batch"]): run for run in reversed(runs)}
    return {tuple(layer.gemm_dims) for run in firsts.values()
            for layer in traced_layers(parse_config(run_config(run), "run")) if layer.gemm_dims}


def held_out(record: dict, shapes: set) -> tuple:
    """The record without the microbenchmarks that time a GEMM shape in `shapes`, and how many those were: fitted
    without them, the model has seen none of the validated layers' shapes, so each number it gives is a
    prediction."""
    kept = [m for m in record["measurements"] if not any(tuple(dims) in shapes for dims in m["gemm_dims"])]
    return dict(record, measurements=kept), len(record["measurements"]) - len(kept)


def _spread(what: str, changes: list) -> str:
    """One line: how the second file's values of `what` differ from the first's, pair by pair."""
    if not changes:
        return f"{what}: no pair has it"
    within = sum(abs(change) <= 0.05 for change in changes) / len(changes)
    return (f"{what}: {len(changes)} pairs, median {statistics.median(changes):+.1%} (median |change| "
            f"{statistics.median(abs(c) for c in changes):.1%}), {min(changes):+.1%} to {max(changes):+.1%}, "
            f"{within:.0%} within 5%")


def compare(first: Path, second: Path) -> list:
    """How the second of two measurements files (or two microbenchmark records) differs from the first, run by
    run (microbenchmark by microbenchmark, GEMM classes apart from the rest): time, power and energy."""
    a, b = (_read_json(path, "measurements file or microbenchmark record") for path in (first, second))
    try:
        return _compared(a, b, first, second)
    except (KeyError, TypeError, ValueError, AttributeError, ZeroDivisionError) as err:
        raise MeasurementsError(f"{first} or {second}: a run or a microbenchmark is malformed ({err!r})") from None


def _compared(a: dict, b: dict, first: Path, second: Path) -> list:
    if "runs" in a and "runs" in b:
        firsts = {run_key(run): run for run in _checked_runs(a, first) if "forward_s" in run}
        pairs = {"forwards": [(firsts[run_key(run)], run) for run in _checked_runs(b, second)
                              if "forward_s" in run and run_key(run) in firsts]}
        time_field = "forward_s"
    elif "measurements" in a and "measurements" in b:
        firsts = {m["label"]: m for m in _checked_record(a, a, first)["measurements"]}
        paired = [(firsts[m["label"]], m) for m in _checked_record(b, b, second)["measurements"]
                  if m["label"] in firsts]
        pairs = {"GEMM, convolution and attention microbenchmarks": [p for p in paired if p[1]["gemm_dims"]],
                 "other microbenchmarks": [p for p in paired if not p[1]["gemm_dims"]]}
        time_field = "measured_s"
    else:
        raise MeasurementsError(f"{second}: not the same kind of file as {first} (two measurements files of "
                                f"`measure`, or two records of `simdq hw calibrate --record`)")
    lines = [f"{second} against {first}:"]
    for group, group_pairs in pairs.items():
        for field, what in ((time_field, "time"), ("power_w", "power"), ("energy_j", "energy")):
            changes = [later[field] / earlier[field] - 1 for earlier, later in group_pairs
                       if earlier.get(field) and later.get(field)]
            lines.append(f"- {group}, {_spread(what, changes)}")
    return lines


def _pct(value) -> str:
    return "-" if value is None else f"{value:+.1%}"


def report(measurements_paths: list, output: Path, device_file: Path, samples_from: Path, base_name: str,
           conv_algorithms: list = (), fft_shapes: Path = None) -> None:
    import yaml

    from hw_models import load_device
    from hw_models.catalog import without_calibration
    from simdq.microbench import calibrated_spec, tiling_label
    from simdq.microbench.conv_algorithms import (add_fft_calibration, fft_calibration, read_surveys,
                                                  with_survey_convolutions)
    from simdq.output import replacing

    files = [_read_json(path, "measurements file") for path in measurements_paths]
    runs = first_of_each_run([r for f, path in zip(files, measurements_paths) for r in _checked_runs(f, path)
                              if "forward_s" in r])
    data, measurements_path = files[0], " ".join(map(str, measurements_paths))
    samples_path = samples_from or measurements_paths[0]
    samples = _read_json(samples_from, "microbenchmark record") if samples_from else data
    survey = read_surveys(conv_algorithms) if conv_algorithms else None
    fft_data = read_fft_shapes(fft_shapes) if fft_shapes else None
    validated = validated_gemm_shapes(runs)  # traces every model: once
    record, held = held_out(_checked_record(data, samples, samples_path), validated)
    base = load_device(base_name)
    fft = (fft_calibration(survey, " ".join(map(str, conv_algorithms)), base.primary.dram_bandwidth, record["sms"],
                           validated)
           if survey else None)
    if survey:
        record = with_survey_convolutions(record, survey, validated)
    spec = calibrated_spec(base, record, base.name)
    calibration = spec["engines"][spec["default_engine"]]["calibration"]
    calibration["source"] += (f" (the record's other {held}" + (f" and the survey's other {record['survey_held_out']}"
                                                                if survey else "")
                              + f" time GEMM shapes of layers validated in {output} and are held out of the fit)")
    if fft:
        add_fft_calibration(calibration, fft)
    calibrated = load_device_spec(spec)
    roofline = without_calibration(calibrated)

    forward_rows, energy_rows, layer_sections, errors, layer_medians, energy_errors = [], [], [], [], [], []
    for run in runs:
        cal_layers, cal_total, cal_energy = _predict(calibrated, run)
        roof_layers, roof_total, roof_energy = _predict(roofline, run)
        error = cal_total / run["forward_s"] - 1
        errors.append(error)
        label = f"{run['preset']} | {run['precision']} | {variant_label(run)} | {run['batch']}"
        median = roof_median = None
        if run.get("layers"):
            measured = run["layers"]
            layer_errors = {n: cal_layers[n] / t - 1 for n, t in measured.items() if n in cal_layers}
            roof_errors = {n: roof_layers[n] / t - 1 for n, t in measured.items() if n in roof_layers}
            median = statistics.median(abs(e) for e in layer_errors.values())
            roof_median = statistics.median(abs(e) for e in roof_errors.values())
            layer_medians.append(median)
            layer_sections += ["", f"### {label.replace(' | ', ', ')}: every conv and linear module", "",
                               "| layer | measured us | calibrated us | error | roofline us | error |",
                               "|---|---|---|---|---|---|"]
            layer_sections += [f"| {n} | {t * 1e6:.1f} | {cal_layers[n] * 1e6:.1f} | {layer_errors[n]:+.1%} | "
                               f"{roof_layers[n] * 1e6:.1f} | {roof_errors[n]:+.1%} |"
                               for n, t in measured.items() if n in layer_errors]
        forward_rows.append(
            f"| {label} | {run['forward_s'] * 1e3:.3f} ms | {cal_total * 1e3:.3f} ms | {error:+.1%} | "
            f"{roof_total * 1e3:.3f} ms | {roof_total / run['forward_s'] - 1:+.1%} | "
            f"{'-' if median is None else f'{median:.1%}'} | {'-' if roof_median is None else f'{roof_median:.1%}'} |")
        if run.get("energy_j"):
            energy_error = cal_energy / run["energy_j"] - 1 if cal_energy else None
            if energy_error is not None:
                energy_errors.append(energy_error)
            energy_rows.append(
                f"| {label} | {run['energy_j']:.3f} J | {run['power_w']:.0f} W | "
                f"{'-' if cal_energy is None else f'{cal_energy:.3f} J'} | {_pct(energy_error)} | "
                f"{'-' if roof_energy is None else f'{roof_energy:.3f} J'} | "
                f"{_pct(roof_energy / run['energy_j'] - 1 if roof_energy else None)} |")

    within = sum(abs(e) <= FORWARD_GOAL for e in errors)
    surveyed, survey_held = record.get("survey_convolutions", 0), record.get("survey_held_out", 0)
    as_fft = record.get("record_ran_as_fft", 0)
    fitted = len(record["measurements"]) - surveyed
    lines = [
        f"# GPU validation: the calibrated model vs a real {data['gpu']}",
        "",
        f"Measured on {data['gpu']} ({data['sms']} SMs), torch {data['torch']}, CUDA {data['cuda']}, random weights; "
        f"timing: {data.get('timing', 'CUDA graphs: median of 7 replays of 20 captured calls')}"
        + (f"; energy: {data['energy']}." if data.get("energy") else "."),
        f"Commands: on the GPU `simdq hw calibrate --base {base_name} -o FILE.yaml --record OUT/microbenchmarks.json` "
        "and `python benchmarks/gpu_validation.py measure -o OUT`"
        + (" and `python benchmarks/gpu_conv_algorithms.py measure -o OUT/survey.json`" if survey else "")
        + (" and `python benchmarks/gpu_fft_workspace.py shapes OUT/survey.json -o OUT/fft-shapes.json`"
           if fft_shapes else "")
        + ", then `python "
        f"benchmarks/gpu_validation.py report {measurements_path} --samples-from {samples_from or measurements_path} "
        f"--base {base_name}" + "".join(f" --conv-algorithms {path}" for path in conv_algorithms)
        + (f" --fft-shapes {fft_shapes}" if fft_shapes else "")
        + f" -o {output}` (no GPU needed).",
        f"The calibrated model is fitted from {fitted} of the {fitted + held} microbenchmarks in {samples_path} (a "
        f"grid of UNet-like shapes" + (f"; {as_fft} more, which the survey saw run as an FFT, go to the FFT class"
                                       if as_fft else "") + ")"
        + (f" and {surveyed} of the survey's {surveyed + survey_held} convolutions that cuDNN did not run as an FFT"
           if survey else "")
        + f": the {held}" + (f" and {survey_held}" if survey else "") + " that time a GEMM shape (batch, M, N, K) "
        "of a layer validated below are held out, so every number below is a prediction. "
        f"The fitted device, `{device_file.relative_to(Path(__file__).resolve().parents[1])}`, is this fit.",
        "",
        f"Goals: whole forward within {FORWARD_GOAL:.0%}, median per-layer error within {LAYER_GOAL:.0%}, energy "
        f"within {ENERGY_GOAL:.0%}. Met: {within} of {len(errors)} forwards within {FORWARD_GOAL:.0%} (largest "
        f"{max(errors, key=abs):+.1%}); per-layer median within {LAYER_GOAL:.0%} in "
        f"{sum(m <= LAYER_GOAL for m in layer_medians)} of {len(layer_medians)} runs timed layer by layer"
        + (f"; energy within {ENERGY_GOAL:.0%} in {sum(abs(e) <= ENERGY_GOAL for e in energy_errors)} of "
           f"{len(energy_errors)} forwards." if energy_errors else "."),
        "The roofline columns are the same device without its calibration (`--hw NAME-roofline`): dense peaks, "
        "DRAM bandwidth, a fixed time per kernel, and energy from a process-node table (dynamic only).",
        "",
        "## Whole forwards",
        "",
        "| model | precision | layers | batch | measured | calibrated | error | roofline | error | "
        "per-layer median error: calibrated | roofline |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ] + forward_rows
    if energy_rows:
        lines += ["", "## Energy per forward against the GPU's own counter", "",
                  "Measured: NVML's total-energy counter over a window of back-to-back forwards (the board's "
                  "power, idle included) x the time per forward. Calibrated: static power x predicted latency, plus "
                  "the power drawn while kernels run (outside the launch gaps), plus fitted energy per MAC, vector "
                  "op and byte (weights from DRAM; activations, and what a convolution's layout transforms read and "
                  "write, from L2 where a layer's fit there, else from DRAM; what a layer writes into L2 is "
                  "written back to DRAM as well; a byte read or written off the contiguous layout costs more). "
                  "Roofline: the node table's dynamic energy only.",
                  "", "| model | precision | layers | batch | measured | power | calibrated | error | roofline | error |",
                  "|---|---|---|---|---|---|---|---|---|---|"] + energy_rows
    quantized = [r for r in runs if r["variant"] != "plain"]
    if quantized:
        lines += ["", "## Quantized nn.Linear layers (SD-1.5, FP8 and int8, dynamic per-tensor activations)", "",
                  "benchmarks/gpu_quantized.py holds the modules, written as a user writes them by hand: "
                  "`torch._scaled_mm` / `torch._int_mm`, activations quantized per tensor at run time by eager "
                  "kernels (|x|, amax, scale, divide, [round, clamp], cast), convolutions in fp16. "
                  "`runtime.activation_quantization: dynamic` prices those kernels; `fused` (scales static, the "
                  "cast folded into the producer) is what a model that prices quantized layers at tensor-core "
                  "peak assumes, and it gets the sign of the change wrong.", "",
                  "| variant | batch | measured | fp16 measured | dynamic (predicted) | error | fused (predicted) |",
                  "|---|---|---|---|---|---|---|"]
        for run in quantized:
            plain = next((r for r in runs if variant_label(r) == "plain" and r["preset"] == run["preset"]
                          and r["precision"] == run["precision"] and r["batch"] == run["batch"]), None)
            _, dynamic, _ = _predict(calibrated, run)
            _, fused, _ = _predict(calibrated, run, "fused")
            plain_ms = "-" if plain is None else f"{plain['forward_s'] * 1e3:.3f} ms"
            lines.append(f"| {run['variant']} | {run['batch']} | {run['forward_s'] * 1e3:.3f} ms | "
                         f"{plain_ms} | {dynamic * 1e3:.3f} ms | "
                         f"{dynamic / run['forward_s'] - 1:+.1%} | {fused * 1e3:.3f} ms |")
    if fft_data:
        lines += fft_shape_lines(calibrated, fft_data, fft_shapes)
    classes = calibration["classes"]
    lines += ["", "## Fitted classes", "",
              "| class | kernel us | efficiency | memory efficiency | tile | split-K min | layout transforms "
              "| fit median error | samples |",
              "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {name} | {p['kernel_s'] * 1e6:.2f} | {p['efficiency']} | {p['memory_efficiency']} | "
              f"{tiling_label(p)} | {p.get('split_k_min') or '-'} | {p.get('transform_efficiency') or '-'} | "
              f"{p['median_error']:.1%} | {p['samples']} |"
              for name, p in classes.items()]
    measured_energy = (spec.get("energy") or {}).get("measured")
    if measured_energy:
        lines += ["", "## Fitted energy", "", _energy_summary(measured_energy)]
    lines += ["", "## Notes", ""] + NOTES + ["", "## Per layer"] + layer_sections
    summary = (f"{data['gpu']}: {within} of {len(errors)} whole forwards within {FORWARD_GOAL:.0%} (largest "
               f"{max(errors, key=abs):+.1%}), per-layer median within {LAYER_GOAL:.0%} in "
               f"{sum(m <= LAYER_GOAL for m in layer_medians)} of {len(layer_medians)} runs"
               + (f", energy within {ENERGY_GOAL:.0%} in {sum(abs(e) <= ENERGY_GOAL for e in energy_errors)} of "
                  f"{len(energy_errors)}" if energy_errors else "") + f" ({output})")
    calibration["validation"] = summary
    header = "".join(line + "\n" for line in device_file.read_text().splitlines() if line.startswith("#"))
    device_text = header + yaml.safe_dump(spec, sort_keys=False, width=120)  # before either file is replaced
    with replacing(output, "-o") as temporary:
        temporary.write_text("\n".join(lines) + "\n")
    with replacing(device_file, "device file") as temporary:
        temporary.write_text(device_text)
    print("\n".join(lines[:12]))


def _conv_latency(device, row: dict, free_gb) -> float:
    """The model's time for one 3x3 fp32 convolution of a gpu_fft_workspace.py row (TF32 off), with `free_gb`
    free (None: the device's default)."""
    from simdq.cli.estimate import run_estimate
    from simdq.config import parse_config

    layer = {"kind": "conv", "in_channels": row["in"], "out_channels": row["out"], "size": row["size"]}
    config = {"model": {"layer": layer, "dtype": "fp32"}, "input": {"batch": row["batch"]},
              "runtime": {"tf32": "none", "gpu_memory_free_gb": free_gb}}
    estimate = run_estimate(parse_config(config, "FFT shape"), device)
    return sum(r.device.latency_s for r in estimate.layers if r.device and r.layer.kind == "conv")


def read_fft_shapes(path: Path) -> dict:
    """A benchmarks/gpu_fft_workspace.py shapes file, each row with what fft_shape_lines reads, or one line."""
    data = _read_json(path, "FFT shapes file")
    try:
        for row in data["rows"]:
            _ = ([int(row[key]) for key in ("batch", "in", "out", "size")], float(row["workspace_bytes"]),
                 float(row["free"]["seconds"]), float(row["below"]["seconds"]), float(row["below"]["free_bytes"]))
    except (KeyError, TypeError, ValueError) as err:
        raise MeasurementsError(f"{path}: not a gpu_fft_workspace.py shapes file (a row is malformed: {err!r})") \
            from None
    return data


def fft_shape_lines(device, data: dict, path: Path) -> list:
    """A section on the convolutions cuDNN runs as an FFT, each timed with its workspace free and with a little
    less than it free (read_fft_shapes), beside the model's price of each."""
    from hw_models.engines.calibrated import FftShape

    lines = ["", "## FFT convolutions, with and without their workspace free", "",
             f"{path}: on {data.get('gpu', '?')}, each convolution cuDNN ran as an FFT in the survey, timed with "
             "all memory free and again with a little less free than its workspace (cuDNN then runs an implicit "
             "GEMM). Predicted with `runtime.gpu_memory_free_gb` at what was free. The FFT times are the FFT "
             "class's training data, except for validated layers' shapes; the fallback times were fitted on "
             "nothing.", "",
             "| batch | in | out | size | workspace measured | model | FFT measured | predicted | error | "
             "without it: measured | predicted | error |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in data["rows"]:
        workspace = FftShape(row["batch"], row["size"], row["in"], row["out"], 0).workspace_bytes
        cells = []
        for case, free_gb in (("free", None), ("below", row["below"]["free_bytes"] / 1e9)):
            measured, predicted = row[case]["seconds"], _conv_latency(device, row, free_gb)
            cells.append(f"{measured * 1e3:.3f} ms | {predicted * 1e3:.3f} ms | {predicted / measured - 1:+.1%}")
        lines.append(f"| {row['batch']} | {row['in']} | {row['out']} | {row['size']}x{row['size']} | "
                     f"{row['workspace_bytes'] / 1e9:.2f} GB | {workspace / 1e9:.2f} GB | {' | '.join(cells)} |")
    return lines


def _energy_summary(fit: dict) -> str:
    busy = (f", plus {fit['busy_w']:.1f} W while kernels run (outside a launch gap of "
            f"{fit.get('launch_gap_s', 0) * 1e6:.2f} us before each)" if fit.get("busy_w") else "")
    l2 = (f" and {fit['l2_pj_per_byte']:.1f} pJ per byte that stays in its {fit['l2_bytes'] / 1e6:.0f} MB L2"
          if fit.get("l2_pj_per_byte") is not None else "")
    return (f"Static power {fit['static_w']:.1f} W{busy}; pJ per MAC: "
            + ", ".join(f"{p} {v:.2f}" for p, v in fit["mac_pj"].items())
            + f", plus {fit['conv_mac_pj']:.2f} per convolution MAC; {fit['vector_op_pj']:.1f} pJ per vector op; "
            f"{fit['dram_pj_per_byte']:.1f} pJ per DRAM byte{l2}"
            + (f", plus {fit['strided_pj_per_byte']:.1f} per byte read or written off the contiguous layout"
               if fit.get("strided_pj_per_byte") else "")
            + f"; median error over its {fit['samples']} "
            f"microbenchmarks {fit['median_error']:.1%}. ({fit['source']}.)")


def load_device_spec(spec: dict):
    from hw_models.catalog import parse_device

    return parse_device(spec, spec["name"])


NOTES = [
    "- Per layer, the model is kernels x kernel time + max(compute, memory), with GEMM compute from waves of "
    "output tiles over the SMs; a layer's kernels are the aten ops the trace records (a linear on a strided "
    "input also runs a copy, priced as a strided copy, and a bias add, priced by the `bias_add` class: aten's add "
    "of a broadcast row, which it does not vectorise, took 8.8 us for LDM-4's 8192 x 448 fp16 rows on the H100, "
    "1.5x what the elementwise class prices for its bytes (benchmarks/gpu_record_extend.py timed the class on "
    "each GPU, reports/gpu-bias-add-h100.json and -h200.json, and added it to its record). A "
    "convolution adds cuDNN's layout transforms (NCHW to NHWC of the input and the weights on every "
    "call, and back for the output; only the weights' after a channels-last input): those bytes at the class's "
    "fitted share of DRAM bandwidth (the `layout transforms` column: 0.12 to 1.0 where the fit found them; the "
    "term trades against the GEMM's kernel time and efficiency, so the same class's value differs between the "
    "two GPUs' records). "
    "`simdq hw crossval RECORD --against OTHER` measured what that term buys without the forwards when it was "
    "chosen (before the narrow fp32 tiles below): on the "
    "H200's record the convolution classes' median error on microbenchmarks held out of their fit (5-fold) "
    "falls from 13.8% to 11.0%, and a fit on the H200's record predicts the H100's convolutions within 6.7% "
    "instead of 9.6% (on the H100's record: 10.9% to 10.7% held out, 7.3% to 5.7% on the H200's).",
    "- The fit searches each class's parameters on coarse grids, so that its search over tilings stays within "
    "seconds, then refines its kernel time and its compute, memory and transform efficiencies with the tiling "
    "fixed (a pattern search down to steps of 1%; hw_models.fit): a memory efficiency of 0.1 or 0.15 was a step "
    "of half, and both GPUs' strided copies came out at 0.15 of their DRAM bandwidth, where the H100's fit 0.172 "
    "and the H200's 0.138 (the H200 times them 0.87x the H100, not the 0.70x of their bandwidths).",
    "- Fused attention's softmax is priced inside the attention class; PyTorch's fp32 SDPA kernels ignore TF32 "
    "(the H200 times them the same either way), so attention stays fp32 under `runtime.tf32: all`.",
    "- Each layer was timed alone, repeated inside one graph, so its weights stay in L2 between calls; in the "
    "whole forward they do not.",
    "- int8 and FP8 convolutions do not exist in PyTorch: their predictions are extrapolated from the GEMM "
    "classes; only the quantized nn.Linear layers above are validated. Weight-only quantization (dequantize, "
    "then GEMM) is priced from the elementwise and GEMM classes and not validated either.",
    "- Layouts: diffusers' UNet2DModel attention block hands back a channels-last view. The trace follows the "
    "GPU's layouts (a convolution of a channels-last input returns channels-last, as cuDNN does; checked op by "
    "op against the layouts recorded on the GPU in reports/gpu-kernel-census-h100.json), prices GroupNorm's "
    ".contiguous() of such an input as a strided copy, and an add or a cat of the view with a contiguous tensor "
    "and an upsampling of the view by the `_strided` twins of their classes, timed on that view.",
    "- Where the model misses: reports/gpu-kernel-census-h100.md (one profiled forward, each kernel attributed "
    "to the aten op that launched it, beside the model's count) shows where. SD-1.5 at batch 1 matches by "
    "category within 7% (attention 13% over). Of the convolution time, cuDNN's layout transforms take 1.4 of "
    "LDM-4's 2.7 ms at batch 1 and 3.2 of SD-1.5's 5.1 ms, and the model prices them as their own term. By "
    "category it puts the convolutions of LDM-4 1% under at batch 1 and 8% under at batch 8, LDM-8's at batch 8 "
    "2% over, SD-1.5's 0.7% over and ddpm-cifar10's at batch 8 10% over. "
    "At batch 1-2 cuDNN's choice of kernel scatters 3x3 convolution times 20-50% either side of one "
    "efficiency, and the suite times only 26 convolutions per precision: fitted on it alone, the model put LDM-4's "
    "forwards 5-12% under at batch 1-4 (profiled at batch 2 and 4, reports/gpu-kernel-census-h100-misses.md: "
    "convolutions 8-11% under, 14% in fp32 at batch 1, and GroupNorm 7-17%). The 3x3 classes are now also "
    "fitted on the convolutions of a survey of cuDNN's kernels (see FFT convolutions below: 840 shapes at batch "
    "1-2, 16x16 to 64x64, 224 to 1920 channels, in fp32, TF32, fp16 and bf16, and the suite's 26 fp32 ones, "
    "which the record times itself; those of a validated layer's shape held out). That took the H100's "
    "forwards from 32 to 36 of 36 within 10% (LDM-4 at batch 1-4: -5% to "
    "-12% before, -2.5% to -9% now), its per-layer medians from 15 to 18 of 18 within 15%, and the H200's forwards "
    "from 32 to 35. What it costs: fitted with the survey, the conv classes predict the suite's own "
    "convolutions less well, which are larger (`simdq hw crossval RECORD --against OTHER --conv-algorithms "
    "SURVEY`: fitted on the H100's record, the H200's convolutions within a median 7.4% instead of 5.9%, its "
    "fp16 3x3 ones 10.9% instead of 4.7%; 7.8% of the convolutions held out of the fit, survey included, "
    "against 10.7% of the suite's alone). The survey is timed as the suite is (7 replays of a graph of 20 "
    "calls): with 4 calls per graph (reports/gpu-conv-algorithms-h100-4calls.json) each replay's launch "
    "cost, a few microseconds, weighs five times as much, and fp16 and TF32 convolutions came out a median 5-6% "
    "slower "
    "(`gpu_conv_algorithms.py compare`); fitted on that survey, the model looked better on LDM-4 for the wrong "
    "reason. Fused attention is priced as one flash kernel "
    "(blocks of queries over the SMs, each looping over "
    "the keys, the head dimension rounded up to 64: at head dimension 32 an fp16 SDPA takes as long per head "
    "as at 40); priced as two GEMMs, the fit before put LDM-4's attention (head dimension 32) 19-47% over; "
    "now 5-11% (SD-1.5's 13%, ddpm-cifar10's 33%). Strided (downsampling) convolutions have their own classes: "
    "fitted in the 3x3 class from the record before this one, they put it 19-34% off on them and cost 4 "
    "forwards within 10%. In fp32 and TF32 the vector classes are fitted in fp32 (`norm_fp32`, ...): at "
    "batch 8 GroupNorm is priced 22% under, elementwise ops 5% and fp32 attention 20% over (at batch 1: 3% over, "
    "12% over, on the mark); TF32 convolutions are 1% under at batch 1 and 7% over at batch 8.",
    "- Full-fp32 convolutions run on the CUDA cores, with cuDNN's NCHW kernels (nchwkcrs_nchw in "
    "reports/gpu-kernel-census-h100.md): they read an NCHW input as stored and transform only a channels-last one "
    "and its output (not priced: the NCHW microbenchmarks fit no transforms; 0.16 and 0.38 ms of LDM-4's 14.2 and "
    "53.4 ms of fp32 convolution at batch 1 and 8). Their kernels tile the output 32x32 where it is small and "
    "128x32, at more of the fp32 peak, where it is large (tilesize32x32x8, 128x32x8 in "
    "reports/gpu-conv-algorithms-h100.md), so the `conv_fp32` and `downsample_fp32` classes fit a narrow tiling "
    "(hw_models.fit.NARROW_TILES) and a wide one (WIDE_TILES), each at its own efficiency, the faster per shape. "
    "An SM with one or two of those tiles waits on every load of the weights, which in a forward come from DRAM: "
    "timed alone with its weights cold, each of LDM-4's 3x3 convolutions on 8x8 and 16x16 outputs at batch 1 took "
    "1.3-1.5x its time with them in L2 (benchmarks/gpu_cold_weights.py, reports/gpu-cold-weights-h100.json; "
    "14.2 against 13.5 ms of convolution, and the same at batch 8), so the classes also fit the least time per K "
    "of weights streamed from DRAM (`dram_latency_per_k_s`) on the microbenchmarks whose weights outgrow half "
    "the L2 (they read them from DRAM on every call), and a forward's every layer pays it. Chosen on "
    "microbenchmarks held out of the fit (`simdq hw crossval RECORD --against OTHER --conv-algorithms SURVEY`): "
    "conv_fp32's median error went from 12.6% (one 64x64 tile) to 6.9% (64x32) to 4.3% on the H100's record "
    "(predicting the H200's: 18.2%, 6.7%, 5.1%) and from 12.4% to 7.0% to 4.2% on the H200's (23.8%, 11.0%, "
    "10.4%), downsample_fp32's from 40.9% to 6.8% to 3.7% and from 35.2% to 5.9% to 3.3%. On the GPU: LDM-4 "
    "fp32 went from -11.6% to -3.8% at batch 1 and from +12.7% to +9.8% at batch 8 on the H100 (-12.1% to "
    "-4.7%, +12.3% to +9.0% on the H200), its per-layer median at batch 8 from 10.2% to 7.7%; SD-1.5 fp32's "
    "per-layer medians from 14-17% to 11-13% (now, with the 1x1 survey below and the fit's refinement: -2.6% and "
    "+7.7%, 6.5%, 8.5-9.1%); "
    "the FFT shapes' implicit-GEMM fallbacks, fitted on nothing, are "
    "predicted within 7%, but for three of those at 16x16, 32-39% over: they were timed with their weights in L2, "
    "and the model prices a forward's layer, whose weights come from DRAM. LDM-4's 3x3 convolutions on 64x64 "
    "outputs at batch 8 (GEMMs of 32,768 rows, four times "
    "the survey's largest) stay 5-19% over: the survey's 128x32 kernels run at 0.36 to 0.45 of the fp32 peak, "
    "shape by shape, and cuDNN's kernels run 19 of its 21 larger 448-channel shapes at 0.23-0.31, which one "
    "efficiency per tiling averages. 1x1 convolutions: fitted on the suite's ten small ones alone, "
    "`pointwise_fp32` put LDM-4's at batch 8 21-110% over; a survey of 1,260 1x1 convolutions (batch 1, 2 and 8, "
    "the 3x3 survey's sizes and channels, every precision; `gpu_conv_algorithms.py measure --window 1`, "
    "reports/gpu-pointwise-h100.md) now joins the pointwise classes' fit, and in fp32 cuDNN runs them with 32x32, "
    "128x32 and 256x64 tiles (the last at up to 0.61 of the peak), so `pointwise_fp32` is a narrow-tile class "
    "too (held out of the fit, its median error 13.3% with one tiling, 10.1% with two): LDM-4's fp32 1x1 "
    "convolutions at batch 8 now come out 10% under to 24% over.",
    "- FFT convolutions: with TF32 off, cuDNN's heuristics run SD-1.5's 640-channel 3x3 convolutions at 32x32 "
    "(from 320, 640 and 960 channels) as an FFT: a 64x64 FFT of the input and, on every call, of the weights, "
    "then one GEMV per frequency bin (2,112 kernels of about 5 us): 7-17 ms each, about 30x an implicit GEMM "
    "(1280 channels into 640 at 32x32, twice the MACs, runs as one in 0.72 ms; "
    "reports/gpu-kernel-census-h100-misses.md). Which shapes cuDNN runs so follows no pattern a fit could learn "
    "(benchmarks/gpu_conv_algorithms.py, reports/gpu-conv-algorithms-h100.md: of the grid's 210 fp32 shapes on "
    "the H100, every 224- to 960-channel input into 640 channels at 32x32 and batch 1, none into 448 or 1280, "
    "and three other shapes; of the suite's own 26 fp32 convolutions, which the survey profiles too, 640 into "
    "640 channels at 16x16 and batch 4 and 720 into 240 at 16x16): the device file records them "
    "(`fft_convolutions`, by batch and GEMM shape: 4 x 16 x 16 pixels make the same GEMM as 1 x 32 x 32), and the "
    "`conv_fft_fp32` class prices them as a time per kernel plus the frequency-domain weights (bins x Cin x Cout "
    "complex64) at a fitted share of DRAM bandwidth, fitted on the survey's FFT shapes whose GEMM shape no "
    "validated layer has (6 of 10); their energy counts those weights four times through DRAM (the weight FFT "
    "writes them, a transpose reads and writes them, the GEMVs read them), a count taken from the kernels, not "
    "fitted. Without it sd15 fp32 came out at -66% on the H100 and -62% on the H200 (energy -69% and -72%). The "
    "suite's batch-4 convolution timed 2.26 ms on both GPUs, 5x an implicit GEMM of its shape, and had been fitted "
    "in the conv class; it now leaves that fit for the FFT class's, which moved the fp32 conv class (LDM-4 fp32 "
    "at batch 1 went from -7.5% to -12%, at batch 8 from -2% to +7%). Where the survey ran at least two fitted "
    "shapes of one FFT side (the padded input rounded up to a power of two: cuDNN's fft2d_r2c_32x32, _64x64 and "
    "_128x128 kernels), that side has a class of its own (`conv_fft64_fp32`, ...), fitted on those alone: each "
    "side's GEMVs stream the frequency-domain weights at their own rate (on the H200, a 32x32 input's 64x64 FFT "
    "takes 1.19 ms more per GB of them, a 64x64 input's 128x128 FFT 2.56 ms), and fitted in one class, the "
    "H200's three 128x128 ones put SD-1.5's 32x32 FFTs 30% over their measured times.",
    "- Memory left free: cuDNN takes an FFT only where its workspace can be allocated. The workspace is twice the "
    "frequency-domain weights plus the input's and output's bins (13.9 GB for SD-1.5's 640-channel "
    "convolution): within 0.6% of the memory one call added on the H100 for all ten FFT shapes (0.44 to 54.6 GB), "
    "and within 1% on the H200 for its twelve (up to 109 GB, reports/gpu-fft-shapes-h200.json); "
    "with 5% more than it free each ran as an FFT, with 5% less as an implicit GEMM (benchmarks/gpu_fft_workspace.py "
    "shapes, reports/gpu-fft-shapes-h100.json, the table above; that fallback is priced by the conv class: within "
    "7%). In a forward the FFTs also compete with each "
    "other: PyTorch's allocator keeps each workspace cached, a later FFT reuses a cached block as large, and while "
    "a graph is captured a failed allocation releases none of them. SD-1.5 in fp32 with some memory taken "
    "(the 'GB free' rows above, "
    "reports/gpu-measurements-h100-memory.json, `measure --run sd15:fp32:1 --leave-free-gb GB`): with 48 GB free "
    "beside the model every FFT ran (133 ms); with 24 and 32 GB all but the 960->640 one (20.8 GB; 117 ms); with "
    "20 GB or less only the 320->640 one (6.9 GB; 54.5 ms). Which workspaces a captured forward allocates, "
    "convolution by convolution (benchmarks/gpu_fft_workspace.py forward, reports/gpu-fft-forward-h100.json, "
    "48 down to 8 GB): during capture exactly those. The eager warm-up before it ran more, because a failed "
    "allocation there frees the cached blocks and retries, which the allocator cannot do while a graph is "
    "captured; and PyTorch keeps the algorithm a shape last ran, so a shape whose FFT failed once (the 640->640 "
    "one at 20 GB, at its fourth call, once activations had been carved from its cached block, it appears) "
    "stays an implicit GEMM "
    "for the rest of the process. `runtime.gpu_memory_free_gb` is the memory free beside the weights (by default "
    "the GPU's memory less the weights, as the other forwards ran), and the model takes the FFT workspaces from "
    "it in forward order as the capture does (simdq.cost.estimate.CachedWorkspaces): 138, 122 and 54 ms, all "
    "seven within 10% (-0.7% to +4.3%), with the FFTs each capture allocated. What it misses: these runs' "
    "per-layer times were taken after the forward, while the workspaces it had cached were still held, so "
    "there the 320->640 convolution ran as an implicit GEMM at 8 and 12 GB (0.2 ms, against the 7.3 ms priced "
    "for the graph's FFT); its other 3x3 convolutions are within 3% at 8x8 to 32x32 and 9-14% over at 64x64 "
    "(per-layer medians 8.7-10.3% in these seven runs). "
    "The H200's report is fitted on its own surveys (reports/gpu-conv-algorithms-h200.md, "
    "reports/gpu-pointwise-h200.md, 2026-12-07; `gpu_conv_algorithms.py compare` against the H100's): cuDNN chose "
    "the H100's kernel for 232 of the 234 fp32 3x3 shapes and all 630 of the others, and the H200 timed them a "
    "median 0.1-0.6% apart; the two others run as FFTs on the H200 alone (2 x 448 and 640 into 1280 channels at "
    "64x64: their workspaces, 76 and 109 GB, exceed an H100's memory).",
    "- Each GPU's record and its reports/gpu-measurements-*.json come from one call on one board (2026-12-06: "
    "calibrate, then the 36 forwards). The -repeat.json files hold the same 36 forwards from an earlier call "
    "(`gpu_validation.py compare REPEAT.json MEASUREMENTS.json`): "
    "on the H100 (that day, another board) within 0.7% of these (median 0.3%), at 2.4% less to 4.3% more power; "
    "on the H200 (2026-12-02) within 1.4% (median 0.3%), at 5.5% less to 6.5% more power. The H200 report takes "
    "sd15 fp32's per-layer times from its repeat file (the plan times that run whole only).",
    "- The two GPUs time the suite's GEMMs, convolutions and attention alike (median 0.2% apart, 87% of them "
    "within 5%), the H200 its other kernels a median 3% faster, and its forwards between 1% slower and 10% "
    "faster (`gpu_validation.py compare` of the two records, of the two measurements files). Its GEMM, "
    "convolution and attention microbenchmarks drew a median 7% less energy than the H100's (the others 5%), "
    "its forwards a median 3% less (7% less to 7% more), so its energy fit comes out lower: fitted on the "
    "H100's record instead (the "
    "H200's report command with `--samples-from reports/gpu-microbenchmarks-h100.json`, which rewrites the "
    "H200's file), its energies came out 18 of 18 within 15% when last tried (before the fit's refinement, the "
    "bias_add class and the H200's surveys). The shipped H200 file is fitted on H200 microbenchmarks and "
    "surveys alone.",
    "- Energy: static power x time, plus a busy power over the time kernels run (the time less a launch gap "
    "per kernel, the gap bounded by the shortest kernel measured, which runs at the board's idle power), plus "
    "energy per MAC, vector op and byte. A microbenchmark whose operands fit in L2 never leaves it while it "
    "replays; one that does not streams from DRAM, so the fit separates the two byte energies. A convolution's "
    "traffic includes what cuDNN's layout transforms read and write (each channels-first byte once more each "
    "way), and a byte of a strided class (a copy or a vector op off the contiguous layout, which moves whole "
    "DRAM sectors for a few bytes of each) costs a fitted extra: without it the fit misses those classes' "
    "energy by a median 31-33% in sample, with it 12-13% (34-35% and 13-15% held out). Both were chosen on "
    "microbenchmarks held out of the fit before the forwards were rerun (`simdq hw crossval RECORD --against "
    "OTHER`, its energy rows; `--without-transforms --without-strided-energy` fits the model before them): the "
    "energy's 5-fold held-out median error fell from 12.8% to 11.0% on the "
    "H200's record (predicting the H100's: 12.8% to 12.1%) and from 13.5% to 10.2% on the H100's (12.5% to "
    "10.2%); the forwards within 15% then went from 10 to 12 of 18 on the H200 and from 14 to 16 on the H100. "
    "Each metered microbenchmark's time is the time per call measured inside its energy window, at the clock "
    "the power limit left it.",
    "- The energy fit weighs each microbenchmark's error relative to the geometric mean of its prediction and "
    "its measurement (hw_models.fit.symmetric_relative_fit): relative to the measurement alone, the fit leaned "
    "low by the square of its spread (`simdq hw crossval RECORD`, with and without "
    "`--energy-relative-to-measurement`: a signed mean error of -2.5% over either GPU's microbenchmarks, now 0; "
    "held out, -2.0% now +0.6% to +0.7%, the median 11.6% now 11.1% on the H200's record, 10.9% now 11.7% on "
    "the H100's). A forward writes each layer's output into L2 and its weights, streaming through L2, evict it: "
    "what a layer writes is priced at the L2's energy and again at DRAM's for its write-back. The "
    "microbenchmarks rewrite the same buffer, whose lines never leave L2, so this rule was chosen on the "
    "forwards (it raises those whose activations fit in L2, at batch 1 to 8, and leaves those that stream "
    "through DRAM); benchmarks/gpu_write_back.py meters it directly and has not run on a GPU yet. With both, "
    "the forwards' mean energy error went from -9.1% to -4.3% on the H200 (within 15%: 16 to 18 of 18) and "
    "from -4.7% to +0.2% on the H100 (this report's history in git).",
]


def run_spec(text: str) -> tuple:
    """PRESET:PRECISION:BATCH as (canonical preset, precision, batch); an argparse type."""
    from simdq.presets import check_preset_name

    parts = text.split(":")
    if len(parts) != 3 or parts[1] not in DTYPES or not parts[2].isdigit() or int(parts[2]) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: PRESET:PRECISION:BATCH expected, with a precision of "
                                         f"{', '.join(DTYPES)} and a batch of 1 or more, e.g. sd15:fp32:1")
    try:
        preset = check_preset_name(parts[0])
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return preset, parts[1], int(parts[2])


def main(argv=None) -> int:
    from simdq.microbench.gpu_memory import gb_list

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    m = commands.add_parser("measure")
    m.add_argument("-o", "--out", type=Path, required=True)
    m.add_argument("--device", default="cuda")
    m.add_argument("--quick", action="store_true", help="one small model at batch 1 (a dry run of this script)")
    m.add_argument("--only", metavar="PRESET", help="only this preset's rows of the plan")
    m.add_argument("--energy-only", action="store_true", help="only the runs whose energy the plan reads")
    m.add_argument("--run", metavar="PRESET:PRECISION:BATCH", type=run_spec,
                   help="one run, whole and layer by layer")
    m.add_argument("--leave-free-gb", metavar="GB,GB", type=gb_list, default=(),
                   help="with --run: time it once with each of these GB left free beside the model (cuDNN runs an "
                        "FFT convolution only where its workspace fits)")
    r = commands.add_parser("report")
    r.add_argument("measurements", type=Path, nargs="+",
                   help="measurements.json files of one GPU (a run in several is taken from the first)")
    r.add_argument("-o", "--output", type=Path, default=Path("reports/gpu-validation-h200.md"))
    r.add_argument("--base", default="h200", help="catalogue device the fit starts from (its file is rewritten)")
    r.add_argument("--samples-from", type=Path,
                   help="the microbenchmarks the fit uses: a `simdq hw calibrate --record` file (default: the "
                        "measurements file's own `samples`)")
    r.add_argument("--conv-algorithms", type=Path, metavar="SURVEY", action="append", default=[],
                   help="a benchmarks/gpu_conv_algorithms.py survey (repeatable: 3x3 and 1x1 apart): the "
                        "convolutions cuDNN runs as an FFT, the FFT class's time, and its other convolutions as "
                        "measurements of the conv and pointwise classes")
    r.add_argument("--fft-shapes", type=Path, metavar="FILE",
                   help="a benchmarks/gpu_fft_workspace.py shapes file: the survey's FFT convolutions timed with "
                        "their workspace free and not, set beside the model's price of each")
    c = commands.add_parser("compare", help="how a second measurements file or record differs from a first")
    c.add_argument("first", type=Path)
    c.add_argument("second", type=Path)
    args = parser.parse_args(argv)
    if args.command == "compare":
        try:
            print("\n".join(compare(args.first, args.second)))
        except MeasurementsError as err:
            print(err, file=sys.stderr)
            return 2
        return 0
    if args.command == "measure":
        if args.leave_free_gb and not (args.run and args.device.startswith("cuda")):
            parser.error("--leave-free-gb needs --run and a CUDA --device")
        measure(args.out, args.device, args.quick, args.only, args.energy_only, args.run, args.leave_free_gb)
        return 0
    from hw_models.catalog import DEVICE_DIR, load_device
    from hw_models.device import DeviceFileError
    from simdq.errors import SimdqError

    try:
        device_file = DEVICE_DIR / f"{load_device(args.base).name}.yaml"
        report(args.measurements, args.output, device_file, args.samples_from, args.base, args.conv_algorithms,
               args.fft_shapes)
    except (MeasurementsError, DeviceFileError, SimdqError) as err:
        print(err, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
