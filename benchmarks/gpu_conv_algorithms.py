"""Which kernels cuDNN runs for a 3x3 or 1x1 convolution, shape by shape, and how fast: the algorithm choices
behind the calibrated model's per-shape misses (with TF32 off, SD-1.5's 640-channel convolutions at 32x32 run as
an FFT, about 30x slower than as an implicit GEMM). The shapes run as an FFT feed the device file's
`fft_convolutions`, the others the conv and pointwise classes' fit (`benchmarks/gpu_validation.py report
--conv-algorithms SURVEY`).

On the GPU (`measure`), each convolution of a grid of UNet shapes (batch, input and output channels, square size,
3x3 or 1x1; zero padding, stride 1, NCHW as PyTorch's UNets hold them, cudnn.benchmark off as a user runs them;
`--window 3` or `--window 1` surveys one kernel size alone) is timed under
CUDA graphs and profiled once for its kernels' names and times. Without a GPU (`report`), each shape's throughput
is set beside the algorithm cuDNN chose, and the shapes it ran otherwise than as an implicit GEMM are listed.

    python benchmarks/gpu_conv_algorithms.py measure -o OUT/conv-algorithms.json     # on the GPU
    python benchmarks/gpu_conv_algorithms.py report reports/gpu-conv-algorithms-h100.json -o FILE.md
    python benchmarks/gpu_conv_algorithms.py compare reports/gpu-conv-algorithms-h100-4calls.json \
        reports/gpu-conv-algorithms-h100.json
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from datetime import date
from itertools import product
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simdq.microbench.conv_algorithms import (FORMAT, SurveyError, family, ran_as_fft, read_survey,  # noqa: E402
                                              window)
from simdq.microbench.suite import CONVOLUTIONS  # noqa: E402
from simdq.output import replacing  # noqa: E402

PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
BATCHES = (1, 2)
SIZES = (16, 32, 64)
INPUT_CHANNELS = (224, 320, 448, 640, 960, 1280, 1920)
OUTPUT_CHANNELS = (224, 320, 448, 640, 1280)
# 1x1 convolutions (a UNet's shortcuts) also at batch 8, where LDM-4's reach GEMMs of 32,768 rows
POINTWISE_BATCHES = (1, 2, 8)
WINDOWS = (3, 1)


def tile(name: str) -> str:
    """The output tile in a kernel's name (xmma's tilesize128x64x8, an FFT's 64x64), or ""."""
    found = re.search(r"tilesize(\d+x\d+x\d+)", name) or re.search(r"_(\d+x\d+)(?:_|<|$)", name)
    return found.group(1) if found else ""


def grid(precisions=PRECISIONS, windows=WINDOWS) -> list:
    """(precision, batch, in, out, size, window) of the grid's 3x3 shapes, then, in fp32, the suite's own 3x3
    convolutions (batch 1-4: cuDNN runs some of those as an FFT too, at batch 4, 640 channels at 16x16, which the
    conv class's fit must leave to the FFT class), then the 1x1 grid."""
    shapes = []
    if 3 in windows:
        shapes = [(precision, batch, cin, cout, size, 3) for precision, batch, size, cin, cout
                  in product(precisions, BATCHES, SIZES, INPUT_CHANNELS, OUTPUT_CHANNELS)]
        suite = [("fp32", *shape, 3) for shape in CONVOLUTIONS if "fp32" in precisions]
        shapes += [shape for shape in suite if shape not in shapes]
    if 1 in windows:
        shapes += [(precision, batch, cin, cout, size, 1) for precision, batch, size, cin, cout
                   in product(precisions, POINTWISE_BATCHES, SIZES, INPUT_CHANNELS, OUTPUT_CHANNELS)]
    return shapes


def measure(output: Path, precisions=PRECISIONS, windows=WINDOWS) -> None:
    import torch
    import torch.nn.functional as F
    from torch.profiler import ProfilerActivity, profile

    from simdq.microbench.suite import float_dtype
    from simdq.microbench.timing import REPLAYS, REPS, capture, replay_seconds, tf32_mode

    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = False
    data = {"format": FORMAT, "gpu": torch.cuda.get_device_name(device), "date": date.today().isoformat(),
            "torch": torch.__version__,
            "cudnn": torch.backends.cudnn.version(),
            # timed as simdq hw calibrate times its microbenchmarks, which the survey's convolutions join in a fit:
            # each replay's launch costs a few microseconds, shared by the calls of the graph
            "timing": f"CUDA graphs, median of {REPLAYS} replays of {REPS} calls; kernels from one profiled call",
            "rows": []}
    output.parent.mkdir(parents=True, exist_ok=True)
    for index, (precision, batch, cin, cout, size, window) in enumerate(grid(precisions, windows)):
        dtype = float_dtype(precision)
        x = torch.randn(batch, cin, size, size, device=device, dtype=dtype)
        weight = torch.randn(cout, cin, window, window, device=device, dtype=dtype) * 0.02
        bias = torch.zeros(cout, device=device, dtype=dtype)
        with torch.no_grad(), tf32_mode(precision == "tf32"):
            def run():
                return F.conv2d(x, weight, bias, padding=window // 2)
            seconds = replay_seconds(capture(run, device))
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                run()
                torch.cuda.synchronize()
        kernels = by_name([[e.name, e.device_time] for e in prof.events()
                           if e.device_type == torch.autograd.DeviceType.CUDA])
        data["rows"].append({"precision": precision, "batch": batch, "in": cin, "out": cout, "size": size,
                             "window": window, "seconds": seconds, "kernels": kernels})
        print(f"{precision} {window}x{window} {batch}x{cin}->{cout} {size}x{size}: {seconds * 1e6:.1f} us, "
              f"{family(max(kernels, key=lambda k: k[1])[0]) if kernels else '-'}", flush=True)
        if index % 35 == 34:  # what was measured survives a run stopped at its time limit
            _write(output, data)
    _write(output, data)


def _write(output: Path, data: dict) -> None:
    with replacing(output, "-o") as temporary:
        temporary.write_text(json.dumps(data, indent=1) + "\n")


def by_name(kernels: list) -> list:
    """[name, total microseconds, launches] of each kernel name (an FFT convolution launches 2,112 GEMVs alike)."""
    totals = {}
    for name, microseconds in kernels:
        total = totals.setdefault(name, [name, 0.0, 0])
        total[1] += microseconds
        total[2] += 1
    return list(totals.values())


def macs(row: dict) -> int:
    return row["batch"] * row["size"] ** 2 * row["out"] * row["in"] * window(row) ** 2


def main_kernel(row: dict) -> str:
    """The longest kernel that is not a layout transform (the convolution itself)."""
    compute = [k for k in row["kernels"] if family(k[0]) != "layout transform"] or row["kernels"]
    return max(compute, key=lambda k: k[1])[0] if compute else ""


def report(path: Path, output: Path) -> None:
    data = read_survey(path)
    lines = [f"# cuDNN's convolution kernels shape by shape on {data['gpu']}", "",
             f"torch {data['torch']}, cuDNN {data['cudnn']}, cudnn.benchmark off; {data['timing']}.",
             f"Command: `python benchmarks/gpu_conv_algorithms.py report {path} -o {output}`.", ""]
    for size, precision in product(WINDOWS, PRECISIONS):
        rows = [r for r in data["rows"] if r["precision"] == precision and window(r) == size]
        if not rows:
            continue
        median = statistics.median(macs(r) / r["seconds"] for r in rows)
        lines += [f"## {precision}, {size}x{size}", "", f"Median {median / 1e12:.1f} TMAC/s over {len(rows)} shapes.",
                  "",
                  "| batch | in | out | size | time | TMAC/s | algorithm | tile | kernels |",
                  "|---|---|---|---|---|---|---|---|---|"]
        others = {}
        for r in rows:
            name = main_kernel(r)
            # at batch 2 and more an FFT's longest kernel is a batched complex GEMM over the bins, not a GEMV
            algorithm = "fft" if ran_as_fft(r) else family(name)
            lines.append(f"| {r['batch']} | {r['in']} | {r['out']} | {r['size']}x{r['size']} | "
                         f"{r['seconds'] * 1e6:.1f} us | {macs(r) / r['seconds'] / 1e12:.1f} | {algorithm} | "
                         f"{tile(name)} | {sum(k[2] for k in r['kernels'])} |")
            if algorithm != "implicit GEMM":
                others.setdefault(algorithm, []).append(r)
        lines += ["", "Shapes cuDNN ran otherwise than as an implicit GEMM, with their throughput against the median:",
                  ""]
        lines += [f"- {label}: " + ", ".join(f"{r['batch']}x{r['in']}->{r['out']} at {r['size']} "
                                            f"({macs(r) / r['seconds'] / median:.2f}x)" for r in group)
                  for label, group in sorted(others.items())] or ["- none"]
        lines.append("")
    with replacing(output, "-o") as temporary:
        temporary.write_text("\n".join(lines))
    print(f"wrote {output}")


def compare(first: Path, second: Path) -> list:
    """Two surveys' common shapes, per precision: how many ran the same kernel, and how far apart their times are
    (a second board, or the same one another day: which of cuDNN's choices and times are the GPU's own)."""
    a, b = read_survey(first), read_survey(second)

    def key(row):
        return row["precision"], row["batch"], row["in"], row["out"], row["size"], window(row)

    theirs = {key(r): r for r in b["rows"]}
    lines = [f"{first} ({a['gpu']}, {a.get('date', 'undated')}) against {second} ({b['gpu']}, "
             f"{b.get('date', 'undated')}):"]
    for precision in PRECISIONS:
        pairs = [(r, theirs[key(r)]) for r in a["rows"] if r["precision"] == precision and key(r) in theirs]
        if not pairs:
            continue
        same = sum(main_kernel(r) == main_kernel(s) for r, s in pairs)
        changes = sorted(abs(s["seconds"] / r["seconds"] - 1) for r, s in pairs)
        ratio = statistics.median(s["seconds"] / r["seconds"] for r, s in pairs)
        lines.append(f"{precision}: {len(pairs)} shapes, the same kernel in {same}; the second's times a median "
                     f"{ratio - 1:+.1%} off the first's (median |change| {statistics.median(changes):.1%}, "
                     f"largest {changes[-1]:.1%})")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    m = commands.add_parser("measure", help="time and profile the grid on the GPU")
    m.add_argument("-o", "--out", type=Path, required=True)
    m.add_argument("--precision", action="append", choices=PRECISIONS, help="survey only these (repeatable)")
    m.add_argument("--window", action="append", type=int, choices=WINDOWS,
                   help="survey only this kernel size (repeatable)")
    r = commands.add_parser("report", help="tabulate a survey (no GPU needed)")
    r.add_argument("survey", type=Path)
    r.add_argument("-o", "--out", type=Path, required=True)
    c = commands.add_parser("compare", help="two surveys' kernel choices and times, shape by shape")
    c.add_argument("first", type=Path)
    c.add_argument("second", type=Path)
    args = parser.parse_args(argv)
    if args.command == "measure":
        measure(args.out, tuple(args.precision or PRECISIONS), tuple(args.window or WINDOWS))
        return 0
    try:
        if args.command == "compare":
            print("\n".join(compare(args.first, args.second)))
        else:
            report(args.survey, args.out)
    except SurveyError as err:
        print(err, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
