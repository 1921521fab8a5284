"""Which CUDA kernels a whole UNet forward launches and how long each runs, against what simdq's trace counts.

On the GPU (`measure`), torch.profiler records one eager forward (after warm-up) of each run in CENSUS: every
kernel's name, GPU time and the aten op that launched it; and the ops after a UNet2DModel attention block are
timed on a contiguous input and on the channels-last view that block returns. Without a GPU (`report`), the
kernels are sorted into the categories the device model prices (convolution, GEMM, attention, norm,
elementwise, copy, concatenation, resample, reduction) and set beside the layers simdq's trace counts in the
same categories, kernels and predicted time, so that what the model leaves out of a forward shows by name.

    python benchmarks/gpu_kernel_census.py measure -o OUT/census.json          # on the GPU
    python benchmarks/gpu_kernel_census.py measure --run ldm4-lsun-bedrooms fp16 2 -o OUT/census.json
    python benchmarks/gpu_kernel_census.py report reports/gpu-kernel-census-h100.json --hw h100 -o FILE.md
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simdq.output import replacing  # noqa: E402

FORMAT = "simdq-kernel-census-1"
CENSUS = (("ldm4-lsun-bedrooms", "fp16", 1), ("ldm4-lsun-bedrooms", "fp16", 8), ("ldm8-lsun-churches", "fp16", 8),
          ("ddpm-cifar10", "fp16", 8), ("sd15", "fp16", 1), ("ldm4-lsun-bedrooms", "tf32", 1),
          ("ldm4-lsun-bedrooms", "tf32", 8), ("ldm4-lsun-bedrooms", "fp32", 8))
# first match wins: kernel name pattern -> category
CATEGORIES = (
    (r"fmha|flash|attention|cudnn.*sdpa|mha", "attention"),
    (r"conv|implicit|cudnn|xmma_fprop|sm\d+_xmma_fprop|fprop", "conv"),
    (r"nvjet|gemm|cutlass|sm\d+_xmma|cublas", "gemm"),
    (r"group_norm|GroupNorm|layer_norm|LayerNorm|RowwiseMoments|ComputeFusedParams", "norm"),
    (r"softmax", "softmax"),
    (r"CatArrayBatchedCopy|cat_", "concat"),
    (r"upsample|interpolate|pool", "resample"),
    (r"reduce_kernel", "reduction"),
    (r"copy_kernel|direct_copy|Memcpy|Memset", "copy"),
    (r"elementwise|Functor|silu|Silu|sin|cos|exp", "elementwise"),
)
# the aten op that launched a kernel decides first where one was recorded (a convolution's bias add is the
# convolution's, not an elementwise op's); first match wins
OP_CATEGORIES = (
    (r"scaled_dot_product|attention", "attention"),
    (r"conv", "conv"),
    (r"linear|addmm|^aten::mm$|matmul|bmm", "gemm"),
    (r"norm", "norm"),
    (r"softmax", "softmax"),
    (r"^aten::cat$", "concat"),
    (r"upsample|interpolate|pool", "resample"),
    (r"copy|contiguous|clone|reshape|to$|_to_copy", "copy"),
    (r".", "elementwise"),
)
# activations as UNet2DModel's attention blocks leave them (B, C, H, W), for the layout comparison
LAYOUT_SHAPES = ((1, 448, 32, 32), (8, 224, 64, 64), (8, 448, 32, 32))
LAYOUT_OPS = ("group_norm", "silu", "add", "cat", "upsample", "conv3x3")
# the device model's layer kinds in the same categories
KIND_CATEGORY = {"conv": "conv", "linear": "gemm", "attention_matmul": "attention", "norm": "norm",
                 "softmax": "softmax", "elementwise": "elementwise", "concat": "concat", "resample": "resample",
                 "embedding": "copy"}


class CensusError(ValueError):
    """A census file that cannot be read; the message is one line for the user."""


def category(name: str, op: str = "") -> str:
    """The category of a kernel: by the aten op that launched it where known, else by its name."""
    for pattern, label in OP_CATEGORIES if op else ():
        if re.search(pattern, op):
            return label
    for pattern, label in CATEGORIES:
        if re.search(pattern, name, re.IGNORECASE):
            return label
    return "other"


def measure(output: Path, runs=CENSUS) -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from gpu_validation import DTYPES, _inputs
    from simdq.microbench.timing import tf32_mode
    from simdq.model.unets import build_unet
    from simdq.presets import preset_spec

    device = torch.device("cuda")
    data = {"format": FORMAT, "gpu": torch.cuda.get_device_name(device), "torch": torch.__version__,
            "timing": "torch.profiler, one eager forward after two warm-up forwards", "runs": []}
    for preset, precision, batch in runs:
        dtype = getattr(torch, DTYPES[precision])
        with torch.no_grad(), tf32_mode(precision == "tf32"):
            model = build_unet(preset_spec(preset), "cuda").to(dtype)
            inputs = _inputs(model, batch, device, dtype)
            for _ in range(2):
                model(**inputs)
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                model(**inputs)
                torch.cuda.synchronize()
            op_layouts = _op_layouts(model, inputs)
        kernels = merge_repeats(_kernels_by_op(prof.events(), torch.autograd.DeviceType))
        data["runs"].append({"preset": preset, "precision": precision, "batch": batch, "kernels": kernels,
                             "op_layouts": op_layouts})
        every = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        launched = sum(launches for *_, launches in _entries({"kernels": kernels}))
        print(f"{preset} {precision} batch {batch}: {launched} kernels attributed of {len(every)}, "
              f"{sum(k[1] for k in kernels) / 1e3:.3f} ms of {sum(e.device_time for e in every) / 1e3:.3f} ms of "
              "kernel time", flush=True)
        del model
    data["layouts"] = _layout_times(device)
    output.parent.mkdir(parents=True, exist_ok=True)
    with replacing(output, "-o") as temporary:
        temporary.write_text(json.dumps(data, indent=1) + "\n")


def _op_layouts(model, inputs) -> list:
    """[module, aten op, layouts of its inputs and output] of every op but views, as simdq's trace records them
    when it runs on this device: what the meta trace's layouts are checked against (tests/simdq/test_trace.py)."""
    from simdq.model.trace import trace

    return [[r.module, r.op, list(r.layouts)] for r in trace(model, inputs) if r.kind != "view"]


def layout_agreement(run: dict) -> tuple:
    """(ops matched, pairs whose layouts differ, GPU ops) between the layouts recorded on the GPU and the meta
    trace's at the same preset and batch, ops aligned by module and aten op (the GPU's forward casts its timestep
    to the model's dtype first, an op the fp32 meta trace has not)."""
    import difflib

    from simdq.model.trace import trace
    from simdq.model.unets import build_unet, example_inputs
    from simdq.presets import preset_spec

    spec = preset_spec(run["preset"])
    model = build_unet(spec, "meta")
    ours = [[r.module, r.op, list(r.layouts)] for r in trace(model, example_inputs(model, spec, run["batch"]))
            if r.kind != "view"]
    gpu = run["op_layouts"]
    matcher = difflib.SequenceMatcher(a=[tuple(op[:2]) for op in gpu], b=[tuple(op[:2]) for op in ours],
                                      autojunk=False)
    pairs = [(gpu[i + o], ours[j + o]) for i, j, size in matcher.get_matching_blocks() for o in range(size)]
    return len(pairs), [pair for pair in pairs if pair[0] != pair[1]], len(gpu)


def _layout_times(device) -> list:
    """Each op of LAYOUT_OPS timed (CUDA graphs) on a contiguous input and on the channels-last view that
    diffusers' UNet2DModel hands back from an attention block ((B, HW, C) transposed and reshaped to
    (B, C, H, W)), at LAYOUT_SHAPES in fp16."""
    import torch
    import torch.nn.functional as F

    from simdq.microbench.timing import time_op

    rows = []
    for batch, channels, height, width in LAYOUT_SHAPES:
        contiguous = torch.randn(batch, channels, height, width, device=device, dtype=torch.float16)
        view = (torch.randn(batch, height * width, channels, device=device, dtype=torch.float16)
                .transpose(1, 2).reshape(batch, channels, height, width))
        other = torch.randn_like(contiguous)
        ones, zeros = (torch.full((channels,), v, device=device, dtype=torch.float16) for v in (1.0, 0.0))
        weight = torch.randn(channels, channels, 3, 3, device=device, dtype=torch.float16)
        ops = {"group_norm": lambda x: F.group_norm(x, 32, ones, zeros), "silu": F.silu,
               "add": lambda x: x + other, "cat": lambda x: torch.cat([x, other], 1),
               "upsample": lambda x: F.interpolate(x, scale_factor=2.0, mode="nearest"),
               "conv3x3": lambda x: F.conv2d(x, weight, zeros, padding=1)}
        with torch.no_grad():
            for name in LAYOUT_OPS:
                run = ops[name]
                rows.append({"op": name, "shape": [batch, channels, height, width],
                             "contiguous_s": time_op(lambda: run(contiguous), device),
                             "channels_last_view_s": time_op(lambda: run(view), device)})
    return rows


def _kernels_by_op(events, device_type) -> list:
    """[kernel name, GPU microseconds, outermost aten op that launched it] for every kernel an op launched; where
    the profiler attributed none, every kernel with the op "" (categorised by its name alone)."""
    kernels = []
    for event in events:
        if event.device_type != device_type.CPU or not event.kernels:
            continue
        top = event
        while top.cpu_parent is not None and top.cpu_parent.name.startswith("aten::"):
            top = top.cpu_parent
        kernels += [[kernel.name, kernel.duration, top.name] for kernel in event.kernels]
    return kernels or [[e.name, e.device_time, ""] for e in events if e.device_type == device_type.CUDA]


def _entries(run: dict):
    """(name, microseconds, aten op, launches) of each kernel entry: [name, us], [name, us, op], or
    [name, total us, op, launches] for a kernel launched many times in a row (an FFT convolution's 2,112 GEMVs)."""
    for name, microseconds, *rest in run["kernels"]:
        yield name, microseconds, rest[0] if rest else "", rest[1] if len(rest) > 1 else 1


def merge_repeats(kernels: list) -> list:
    """Consecutive launches of one kernel by one op as one [name, total us, op, launches] entry."""
    merged = []
    for name, microseconds, op in kernels:
        if merged and merged[-1][0] == name and merged[-1][2] == op:
            merged[-1][1] += microseconds
            merged[-1][3] += 1
        else:
            merged.append([name, microseconds, op, 1])
    return [entry if entry[3] > 1 else entry[:3] for entry in merged]


def _model_census(device, run: dict) -> tuple:
    """(kernels, seconds) by category as simdq's trace and the device model count them."""
    from gpu_validation import run_config
    from simdq.cli.estimate import run_estimate
    from simdq.config import parse_config

    config = run_config({**run, "variant": "plain"})
    estimate = run_estimate(parse_config(config, "census"), device)
    kernels, seconds = Counter(), Counter()
    for row in estimate.layers:
        if row.device is None:
            continue
        # a norm module's own copy of a strided input is the aten op group_norm's kernel on the GPU too
        norm_module = row.layer.module_type in ("GroupNorm", "LayerNorm")
        label = "norm" if norm_module else KIND_CATEGORY.get(row.layer.kind, "other")
        side = row.layer.kernels - 1 if row.layer.kind == "linear" else 0  # a strided input's copy, a bias add
        kernels[label] += row.layer.kernels - side
        kernels["copy"] += side
        seconds[label] += row.device.latency_s
    return kernels, seconds


def report(path: Path, hw: str, output: Path) -> None:
    from hw_models import load_device

    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CensusError(f"{path}: not a readable kernel census ({err})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CensusError(f"{path}: not a kernel census (format {FORMAT!r} expected)")
    device = load_device(hw)
    lines = [f"# Kernel census: a whole forward's kernels on {data['gpu']} against simdq's count", "",
             f"Measured with {data['timing']} (torch {data['torch']}); predicted by `--hw {hw}`.",
             f"Command: `python benchmarks/gpu_kernel_census.py report {path} --hw {hw} -o {output}`.", ""]
    for run in data["runs"]:
        measured_n, measured_s = Counter(), Counter()
        for name, microseconds, op, launches in _entries(run):
            measured_n[category(name, op)] += launches
            measured_s[category(name, op)] += microseconds * 1e-6
        model_n, model_s = _model_census(device, run)
        lines += [f"## {run['preset']}, {run['precision']}, batch {run['batch']}", "",
                  "| category | kernels measured | kernels counted | kernel time measured | predicted (a linear's copies "
                  "in gemm) |",
                  "|---|---|---|---|---|"]
        for label in sorted(set(measured_n) | set(model_n), key=lambda k: -measured_s[k]):
            lines.append(f"| {label} | {measured_n[label]} | {model_n[label]} | {measured_s[label] * 1e3:.3f} ms | "
                         f"{model_s[label] * 1e3:.3f} ms |")
        lines.append(f"| total | {sum(measured_n.values())} | {sum(model_n.values())} | "
                     f"{sum(measured_s.values()) * 1e3:.3f} ms | {sum(model_s.values()) * 1e3:.3f} ms |")
        by_op, count = Counter(), Counter()
        for name, microseconds, op, launches in _entries(run):
            key = op or re.sub(r"<.*", "", name)[:90]
            by_op[key] += microseconds * 1e-6
            count[key] += launches
        lines += ["", "Kernel time by the aten op that launched it (by kernel name where none did):", ""]
        lines += [f"- {key}: {count[key]} kernels, {seconds * 1e3:.3f} ms" for key, seconds in by_op.most_common(12)]
        if run.get("op_layouts"):
            matched, differ, total = layout_agreement(run)
            lines += ["", f"Memory layouts (contiguous, channels-last, strided) of each op's inputs and output: the "
                      f"meta trace's agree with the GPU's in {matched - len(differ)} of the {matched} ops both record "
                      f"({total} on the GPU)"
                      + (f"; the first apart: {differ[0][0][0]} {differ[0][0][1]}." if differ else ".")]
        lines.append("")
    if data.get("layouts"):
        lines += ["## The same ops on a contiguous input and on UNet2DModel's channels-last view", "",
                  "An attention block of diffusers' UNet2DModel returns (B, HW, C) transposed and reshaped to "
                  "(B, C, H, W): a view with channels-last strides, which the ops after it inherit. Timed alone "
                  "under CUDA graphs, fp16.", "",
                  "| op | shape | contiguous | channels-last view | ratio |", "|---|---|---|---|---|"]
        lines += [f"| {row['op']} | {'x'.join(map(str, row['shape']))} | {row['contiguous_s'] * 1e6:.1f} us | "
                  f"{row['channels_last_view_s'] * 1e6:.1f} us | "
                  f"{row['channels_last_view_s'] / row['contiguous_s']:.2f} |" for row in data["layouts"]]
        lines.append("")
    with replacing(output, "-o") as temporary:
        temporary.write_text("\n".join(lines))
    print(f"wrote {output}")


def _census_run(preset: str, precision: str, batch: str) -> tuple:
    from gpu_validation import DTYPES
    from simdq.presets import check_preset_name

    try:
        preset = check_preset_name(preset)
    except ValueError as err:
        raise CensusError(f"--run: {err}") from None
    if precision not in DTYPES:
        raise CensusError(f"--run {preset}: unknown precision {precision!r}; allowed: {', '.join(DTYPES)}")
    if not batch.isdigit() or int(batch) < 1:
        raise CensusError(f"--run {preset} {precision}: batch {batch!r} is not a whole number of 1 or more")
    return preset, precision, int(batch)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    m = commands.add_parser("measure", help="profile whole forwards on the GPU")
    m.add_argument("-o", "--out", type=Path, required=True)
    m.add_argument("--run", nargs=3, action="append", metavar=("PRESET", "PRECISION", "BATCH"),
                   help="profile these forwards instead of the census's own (repeatable)")
    r = commands.add_parser("report", help="set the census beside simdq's count (no GPU needed)")
    r.add_argument("census", type=Path)
    r.add_argument("--hw", default="h100")
    r.add_argument("-o", "--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "measure":
        try:
            runs = [_census_run(*run) for run in args.run] if args.run else CENSUS
        except CensusError as err:
            print(err, file=sys.stderr)
            return 2
        measure(args.out, runs)
        return 0
    try:
        report(args.census, args.hw, args.out)
    except CensusError as err:
        print(err, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
