"""Validate the calibrated GPU model on a real GPU: ldm4-lsun-bedrooms in fp16 at batch 1 and 8.

    python benchmarks/gpu_validation.py measure -o OUT_DIR     # on the GPU: microbenchmarks + UNet timings
    python benchmarks/gpu_validation.py report OUT_DIR/measurements.json -o reports/gpu-validation.md

`measure` times the default calibration suite (shapes of no preset, batch sizes 2 and 4), then every
conv and linear module of the UNet alone on the inputs it sees in a real forward, and the whole forward,
all under CUDA graphs, and writes measurements.json. `report` fits the calibrated model from the suite
alone, predicts the UNet's layers and forward with `simdq estimate`'s pipeline (calibrated and plain
roofline), and writes the comparison; it needs no GPU, so the fit can be revisited from the same data.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

PRESET = "ldm4-lsun-bedrooms"
BATCHES = (1, 8)


def _inputs(model, batch: int, device, dtype) -> dict:
    """A real forward's inputs: seeded latents, a timestep, and for conditional UNets a seeded context."""
    import torch

    from simdq.model.sampling import conditioning

    generator = torch.Generator().manual_seed(batch)
    size = model.config.sample_size
    inputs = {"sample": torch.randn(batch, model.config.in_channels, size, size, generator=generator),
              "timestep": torch.full((batch,), 500, dtype=torch.long)}
    inputs.update(conditioning(model, batch, generator))

    def move(value):
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        return value.to(device, dtype) if value.is_floating_point() else value.to(device)

    return {k: move(v) for k, v in inputs.items()}


def measure(out_dir: Path, device_name: str, quick: bool, preset: str, skip_suite: bool) -> None:
    import torch

    from hw_models import load_device
    from simdq.microbench import default_suite, measure as measure_suite, time_op
    from simdq.model.unets import build_unet
    from simdq.presets import preset_spec

    device = torch.device(device_name)
    base = load_device("h100-sxm")
    cuda = device.type == "cuda"
    dtype = torch.float16 if cuda else torch.float32  # a CPU run only tests this script
    gpu = torch.cuda.get_device_properties(device) if cuda else None
    batches = BATCHES if not quick else BATCHES[:1]
    with torch.no_grad():
        samples = []
        if not skip_suite:
            suite = default_suite(device, quick)
            samples = measure_suite(suite, device, base, lambda d, t: print(f"\rsuite {d}/{t}", end="", flush=True))
            print()
        spec = preset_spec(preset)
        meta_model = build_unet(spec)
        model = type(meta_model).from_config(meta_model.config).to(device, dtype).eval()
        layers, forwards = [], {}
        for batch in batches:
            inputs = _inputs(model, batch, device, dtype)
            captured = {}

            def keep_inputs(module, args, name):
                captured.setdefault(name, (module, args))  # returns None: the inputs pass unchanged

            hooks = [
                module.register_forward_pre_hook(lambda m, args, name=name: keep_inputs(m, args, name))
                for name, module in model.named_modules() if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear))
            ]
            model(**inputs)
            for hook in hooks:
                hook.remove()
            for name, (module, args) in captured.items():
                layers.append({"batch": batch, "name": name, "seconds": time_op(lambda: module(*args), device)})
            forwards[batch] = time_op(lambda: model(**inputs), device)
            print(f"batch {batch}: {len(captured)} layers, forward {forwards[batch] * 1e3:.3f} ms")
    measurements = {
        "gpu": gpu.name if cuda else "cpu", "sms": gpu.multi_processor_count if cuda else 1,
        "torch": torch.__version__, "cuda": torch.version.cuda, "preset": preset, "dtype": "fp16" if cuda else "fp32",
        "samples": [s.__dict__ for s in samples], "layers": layers, "forwards": forwards,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "measurements.json").write_text(json.dumps(measurements, indent=1))


def _predict(device, batch: int, dtype: str, preset: str):
    from simdq.cli.estimate import run_estimate
    from simdq.config import parse_config

    config = parse_config({"model": {"preset": preset, "dtype": dtype}, "input": {"batch": batch}}, "validation")
    estimate = run_estimate(config, device)
    return {r.layer.name: r.device.latency_s for r in estimate.layers if r.device}, estimate.totals["latency_s"]


def report(measurements_path: Path, output: Path, device_file: Path, samples_from: Path = None) -> None:
    import yaml

    from hw_models import load_device
    from hw_models.catalog import without_calibration
    from hw_models.fit import Sample
    from simdq.microbench import calibrated_spec

    data = json.loads(measurements_path.read_text())
    suite = json.loads(samples_from.read_text()) if samples_from else data  # the fit may come from another run
    samples = [Sample(**{**s, "gemm_dims": tuple(tuple(d) for d in s["gemm_dims"])}) for s in suite["samples"]]
    base = load_device("h100-sxm")
    spec = calibrated_spec(base, samples, data["sms"], data["gpu"], "h100-sxm-calibrated")
    device_file.write_text(yaml.safe_dump(spec, sort_keys=False, width=120))
    calibrated = load_device(str(device_file))
    roofline = without_calibration(calibrated)

    lines = [
        "# GPU validation: calibrated model vs a real GPU",
        "",
        f"Measured on {data['gpu']} ({data['sms']} SMs), torch {data['torch']}, CUDA {data['cuda']}: "
        f"{data['preset']} in {data['dtype']}, random weights, every op timed under CUDA graphs "
        "(median of 7 replays of 20 captured calls).",
        "Commands: `python benchmarks/gpu_validation.py measure -o OUT` on the GPU, then "
        f"`python benchmarks/gpu_validation.py report OUT/measurements.json -o {output}`; this report was made "
        f"from `{measurements_path}`.",
        f"The calibrated model is fitted from {len(samples)} microbenchmarks of the default suite (a grid of "
        "UNet-like shapes at batch sizes 2 and 4); it never timed this model's layers, so every number below "
        f"is a prediction. The fitted device is `{device_file.name}`.",
        "",
        "Goal: whole forward within 20%, median per-layer error within 25%. The whole forward is predicted as "
        "the sum of every traced layer (conv, linear, attention, norms, elementwise, copies); the roofline "
        "columns are the same device without its calibration (dense peaks, DRAM bandwidth, 4.5 us per kernel).",
        "",
        "| batch | whole forward measured | calibrated | error | roofline | error | conv/linear median error: calibrated | roofline |",
        "|---|---|---|---|---|---|---|---|",
    ]
    details = []
    for batch in sorted({l["batch"] for l in data["layers"]}):
        measured_layers = {l["name"]: l["seconds"] for l in data["layers"] if l["batch"] == batch}
        forward = data["forwards"][str(batch)]
        cal_layers, cal_total = _predict(str(device_file), batch, data["dtype"], data["preset"])
        roof_layers, roof_total = _predict(roofline, batch, data["dtype"], data["preset"])
        errors = {n: cal_layers[n] / t - 1 for n, t in measured_layers.items()}
        roof_errors = {n: roof_layers[n] / t - 1 for n, t in measured_layers.items()}
        median = statistics.median(abs(e) for e in errors.values())
        roof_median = statistics.median(abs(e) for e in roof_errors.values())
        lines.append(
            f"| {batch} | {forward * 1e3:.3f} ms | {cal_total * 1e3:.3f} ms | {cal_total / forward - 1:+.1%} | "
            f"{roof_total * 1e3:.3f} ms | {roof_total / forward - 1:+.1%} | {median:.1%} | {roof_median:.1%} |")
        details += ["", f"## Batch {batch}: every conv and linear layer", "",
                    "| layer | measured us | calibrated us | error | roofline us | error |", "|---|---|---|---|---|---|"]
        for name, seconds in measured_layers.items():
            details.append(f"| {name} | {seconds * 1e6:.1f} | {cal_layers[name] * 1e6:.1f} | {errors[name]:+.1%} | "
                           f"{roof_layers[name] * 1e6:.1f} | {roof_errors[name]:+.1%} |")
    fit_rows = ["", "## Fitted classes", "",
                "| class | kernel us | efficiency | memory efficiency | tile | split-K min | fit median error | samples |",
                "|---|---|---|---|---|---|---|---|"]
    for name, p in spec["engines"]["gpu"]["calibration"]["classes"].items():
        fit_rows.append(f"| {name} | {p['kernel_s'] * 1e6:.2f} | {p['efficiency']} | {p['memory_efficiency']} | "
                        f"{p['tile_m']}x{p['tile_n']} | {p['split_k_min'] or '-'} | {p['median_error']:.1%} | "
                        f"{p['samples']} |")
    notes = [
        "", "## Notes", "",
        "- Per layer, the model is kernels x kernel time + max(compute, memory), with GEMM compute from waves of "
        "output tiles over the SMs (split-K allowed, its granularity fitted; the fit chose none here).",
        "- A layer's kernels are the aten ops the trace records: a linear on a strided input also runs a copy and "
        "a separate bias add (the attention q/k/v projections here). The first run of this validation counted "
        "those as fused and put those layers 5x under; they are real kernels and are counted now.",
        "- Fused attention's softmax is priced inside the attention class, whose microbenchmarks (whole SDPA "
        "calls) timed it; the first sd15 run of this report priced it a second time and put sd15 at batch 8 36% "
        "over. That is a structural fix, the fitted parameters are unchanged.",
        "- Each layer was timed alone, repeated inside one graph, so its weights stay in L2 between calls; in the "
        "whole forward they do not. The largest remaining per-layer errors are small-M convolutions "
        "(1x1 skip convs and stride-2 downsamplers at 8x8 and 16x16), which the model prices too high.",
    ]
    output.write_text("\n".join(lines + fit_rows + notes + details) + "\n")
    print("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    m = commands.add_parser("measure")
    m.add_argument("-o", "--out", type=Path, required=True)
    m.add_argument("--device", default="cuda")
    m.add_argument("--quick", action="store_true", help="small suite, batch 1 only (a dry run of this script)")
    m.add_argument("--preset", default=PRESET)
    m.add_argument("--skip-suite", action="store_true", help="time only the UNet (fit from another run's suite)")
    r = commands.add_parser("report")
    r.add_argument("measurements", type=Path)
    r.add_argument("-o", "--output", type=Path, default=Path("reports/gpu-validation.md"))
    r.add_argument("--device-file", type=Path, default=Path("hw_models/devices/h100-sxm-calibrated.yaml"))
    r.add_argument("--samples-from", type=Path, help="measurements.json whose microbenchmarks the fit uses")
    args = parser.parse_args()
    if args.command == "measure":
        measure(args.out, args.device, args.quick, args.preset, args.skip_suite)
    else:
        report(args.measurements, args.output, args.device_file, args.samples_from)
    return 0


if __name__ == "__main__":
    sys.exit(main())
