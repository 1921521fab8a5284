"""Which kernels cuDNN runs for a 3x3 convolution, shape by shape, and how fast: the algorithm choices behind the
calibrated model's per-shape misses (with TF32 off, SD-1.5's 640-channel convolutions at 32x32 run as an FFT,
about 30x slower than as an implicit GEMM). The shapes run as an FFT feed the device file's `fft_convolutions`
(`benchmarks/gpu_validation.py report --conv-algorithms SURVEY`).

On the GPU (`measure`), each convolution of a grid of UNet shapes (batch, input and output channels, square size;
padding 1, stride 1, NCHW as PyTorch's UNets hold them, cudnn.benchmark off as a user runs them) is timed under
CUDA graphs and profiled once for its kernels' names and times. Without a GPU (`report`), each shape's throughput
is set beside the algorithm cuDNN chose, and the shapes it ran otherwise than as an implicit GEMM are listed.

    python benchmarks/gpu_conv_algorithms.py measure -o OUT/conv-algorithms.json     # on the GPU
    python benchmarks/gpu_conv_algorithms.py report reports/gpu-conv-algorithms-h100.json -o FILE.md
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from itertools import product
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simdq.microbench.conv_algorithms import FORMAT, SurveyError, family, read_survey  # noqa: E402
from simdq.output import replacing  # noqa: E402

PRECISIONS = ("fp32", "tf32", "fp16")
BATCHES = (1, 2)
SIZES = (16, 32, 64)
INPUT_CHANNELS = (224, 320, 448, 640, 960, 1280, 1920)
OUTPUT_CHANNELS = (224, 320, 448, 640, 1280)
# few calls per graph and few replays: a slow fp32 shape takes 15 ms a call
CALLS, REPLAYS = 4, 3


def tile(name: str) -> str:
    """The output tile in a kernel's name (xmma's tilesize128x64x8, an FFT's 64x64), or ""."""
    found = re.search(r"tilesize(\d+x\d+x\d+)", name) or re.search(r"_(\d+x\d+)(?:_|<|$)", name)
    return found.group(1) if found else ""


def grid(precisions=PRECISIONS) -> list:
    return [(precision, batch, cin, cout, size) for precision, batch, size, cin, cout
            in product(precisions, BATCHES, SIZES, INPUT_CHANNELS, OUTPUT_CHANNELS)]


def measure(output: Path, precisions=PRECISIONS) -> None:
    import torch
    import torch.nn.functional as F
    from torch.profiler import ProfilerActivity, profile

    from simdq.microbench.timing import capture, replay_seconds, tf32_mode

    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = False
    data = {"format": FORMAT, "gpu": torch.cuda.get_device_name(device), "torch": torch.__version__,
            "cudnn": torch.backends.cudnn.version(),
            "timing": f"CUDA graphs, median of {REPLAYS} replays of {CALLS} calls; kernels from one profiled call",
            "rows": []}
    output.parent.mkdir(parents=True, exist_ok=True)
    for index, (precision, batch, cin, cout, size) in enumerate(grid(precisions)):
        dtype = torch.float16 if precision == "fp16" else torch.float32
        x = torch.randn(batch, cin, size, size, device=device, dtype=dtype)
        weight = torch.randn(cout, cin, 3, 3, device=device, dtype=dtype) * 0.02
        bias = torch.zeros(cout, device=device, dtype=dtype)
        with torch.no_grad(), tf32_mode(precision == "tf32"):
            def run():
                return F.conv2d(x, weight, bias, padding=1)
            seconds = replay_seconds(capture(run, device, CALLS), REPLAYS)
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                run()
                torch.cuda.synchronize()
        kernels = by_name([[e.name, e.device_time] for e in prof.events()
                           if e.device_type == torch.autograd.DeviceType.CUDA])
        data["rows"].append({"precision": precision, "batch": batch, "in": cin, "out": cout, "size": size,
                             "seconds": seconds, "kernels": kernels})
        print(f"{precision} {batch}x{cin}->{cout} {size}x{size}: {seconds * 1e6:.1f} us, "
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
    return row["batch"] * row["size"] ** 2 * row["out"] * row["in"] * 9


def main_kernel(row: dict) -> str:
    """The longest kernel that is not a layout transform (the convolution itself)."""
    compute = [k for k in row["kernels"] if family(k[0]) != "layout transform"] or row["kernels"]
    return max(compute, key=lambda k: k[1])[0] if compute else ""


def report(path: Path, output: Path) -> None:
    data = read_survey(path)
    lines = [f"# cuDNN's convolution kernels shape by shape on {data['gpu']}", "",
             f"torch {data['torch']}, cuDNN {data['cudnn']}, cudnn.benchmark off; {data['timing']}.",
             f"Command: `python benchmarks/gpu_conv_algorithms.py report {path} -o {output}`.", ""]
    for precision in PRECISIONS:
        rows = [r for r in data["rows"] if r["precision"] == precision]
        if not rows:
            continue
        median = statistics.median(macs(r) / r["seconds"] for r in rows)
        lines += [f"## {precision}", "", f"Median {median / 1e12:.1f} TMAC/s over {len(rows)} shapes.", "",
                  "| batch | in | out | size | time | TMAC/s | algorithm | tile | kernels |",
                  "|---|---|---|---|---|---|---|---|---|"]
        others = {}
        for r in rows:
            name = main_kernel(r)
            lines.append(f"| {r['batch']} | {r['in']} | {r['out']} | {r['size']}x{r['size']} | "
                         f"{r['seconds'] * 1e6:.1f} us | {macs(r) / r['seconds'] / 1e12:.1f} | {family(name)} | "
                         f"{tile(name)} | {sum(k[2] for k in r['kernels'])} |")
            if family(name) != "implicit GEMM":
                others.setdefault(family(name), []).append(r)
        lines += ["", "Shapes cuDNN ran otherwise than as an implicit GEMM, with their throughput against the median:",
                  ""]
        lines += [f"- {label}: " + ", ".join(f"{r['batch']}x{r['in']}->{r['out']} at {r['size']} "
                                            f"({macs(r) / r['seconds'] / median:.2f}x)" for r in group)
                  for label, group in sorted(others.items())] or ["- none"]
        lines.append("")
    with replacing(output, "-o") as temporary:
        temporary.write_text("\n".join(lines))
    print(f"wrote {output}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    m = commands.add_parser("measure", help="time and profile the grid on the GPU")
    m.add_argument("-o", "--out", type=Path, required=True)
    m.add_argument("--precision", action="append", choices=PRECISIONS, help="survey only these (repeatable)")
    r = commands.add_parser("report", help="tabulate a survey (no GPU needed)")
    r.add_argument("survey", type=Path)
    r.add_argument("-o", "--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "measure":
        measure(args.out, tuple(args.precision or PRECISIONS))
        return 0
    try:
        report(args.survey, args.out)
    except SurveyError as err:
        print(err, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
