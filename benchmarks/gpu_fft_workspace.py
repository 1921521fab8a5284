"""Whether cuDNN runs a convolution as an FFT depends on the GPU memory left free: its FFT needs a workspace of
several GB (the frequency-domain weights, twice), and where that cannot be allocated PyTorch falls back to the
next algorithm cuDNN proposes.

`sweep` times SD-1.5's 640-channel 3x3 convolution at 32x32 (fp32, TF32 off, batch 1: an FFT on an idle H100,
reports/gpu-conv-algorithms-h100.md) with the GPU's memory free, then with all but a few GB of it taken, and
records the time, the peak memory the call added and the kernels it ran (reports/gpu-fft-workspace-h100.json:
with 14 GB or more free an FFT, 10.9-12.3 ms; with 12 GB or less an implicit GEMM, 0.41 ms).

`shapes` takes every convolution a survey (benchmarks/gpu_conv_algorithms.py) saw run as an FFT and records the
workspace its FFT adds (the peak memory of one eager call less its output), then times it with a little more and
a little less than that left free: the workspace the model's `runtime.gpu_memory_free_gb` is compared against
(FftShape.workspace_bytes), and the algorithm, time and kernels of the fallback it prices.

    python benchmarks/gpu_fft_workspace.py sweep -o OUT/fft-workspace.json                  # on the GPU
    python benchmarks/gpu_fft_workspace.py shapes SURVEY.json -o OUT/fft-shapes.json        # on the GPU
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simdq.microbench.gpu_memory import GB  # noqa: E402

# GB left free after the first, unconstrained run
LEFT_FREE_GB = (24, 16, 14, 12, 8, 2)
BATCH, CHANNELS, SIZE = 1, 640, 32
# `shapes` leaves the measured workspace plus or minus this share of it (at least MARGIN_BYTES) free
MARGIN_SHARE, MARGIN_BYTES = 0.05, 0.25 * GB


def _conv(batch, cin, cout, size):
    import torch
    import torch.nn.functional as F

    device = torch.device("cuda")
    x = torch.randn(batch, cin, size, size, device=device)
    weight = torch.randn(cout, cin, 3, 3, device=device) * 0.02
    bias = torch.randn(cout, device=device)
    return lambda: F.conv2d(x, weight, bias, padding=1)


def _kernels(run) -> list:
    """[name, launches] of each kernel one call of `run` launched, most launched first."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        run()
        torch.cuda.synchronize()
    kernels = {}
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            kernels[event.name] = kernels.get(event.name, 0) + 1
    return sorted(kernels.items(), key=lambda k: -k[1])


def _timed(run) -> dict:
    """Time (as hw calibrate times) and kernels of `run` with TF32 off, in whatever memory is free now."""
    import torch

    from simdq.microbench.conv_algorithms import family
    from simdq.microbench.timing import capture, replay_seconds, tf32_mode

    with torch.no_grad(), tf32_mode(False):
        seconds = replay_seconds(capture(run, torch.device("cuda")))
        kernels = _kernels(run)
    return {"seconds": seconds, "kernels": kernels, "ran_as_fft": any(family(name) == "fft" for name, _ in kernels)}


def _workspace_bytes(run) -> int:
    """The memory one eager call adds beyond its output (cuDNN's workspace), all memory free."""
    import torch

    from simdq.microbench.timing import tf32_mode

    with torch.no_grad(), tf32_mode(False):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        output = run()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before - output.numel() * output.element_size()


def _header() -> dict:
    import torch

    device = torch.device("cuda")
    return {"gpu": torch.cuda.get_device_name(device), "date": date.today().isoformat(), "torch": torch.__version__,
            "cudnn": torch.backends.cudnn.version(), "memory_bytes": torch.cuda.mem_get_info(device)[1]}


def sweep(output: Path) -> None:
    import torch

    from simdq.microbench.gpu_memory import leave_free
    from simdq.output import write_text

    torch.backends.cudnn.benchmark = False
    run = _conv(BATCH, CHANNELS, CHANNELS, SIZE)
    device = torch.device("cuda")

    def probe(label: str) -> dict:
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        row = _timed(run)
        row.update(memory=label, free_bytes_after=torch.cuda.mem_get_info(device)[0],
                   peak_added_bytes=torch.cuda.max_memory_allocated() - before)
        print(f"{label}: {row['seconds'] * 1e6:.1f} us, {row['peak_added_bytes'] / GB:.2f} GB added, "
              f"{sum(n for _, n in row['kernels'])} kernels", flush=True)
        return row

    rows = [probe("free")]
    taken = []
    for left_gb in LEFT_FREE_GB:
        leave_free((left_gb + 1) * GB, taken, device)
        rows.append(probe(f"about {left_gb} GB free"))
    data = dict(_header(), convolution=f"{BATCH}x{CHANNELS}->{CHANNELS} at {SIZE}x{SIZE}, 3x3, fp32 (TF32 off), "
                "NCHW, cudnn.benchmark off", rows=rows)
    write_text(str(output), json.dumps(data, indent=1) + "\n")


def shapes(survey_path: Path, output: Path) -> None:
    import torch

    from simdq.microbench.conv_algorithms import fft_rows, read_survey
    from simdq.microbench.gpu_memory import leave_free
    from simdq.output import write_text

    torch.backends.cudnn.benchmark = False
    survey = read_survey(survey_path)
    rows = []
    for shape, _ in fft_rows(survey):
        run = _conv(shape.batch, shape.in_channels, shape.out_channels, shape.size)
        workspace = _workspace_bytes(run)
        row = {"batch": shape.batch, "in": shape.in_channels, "out": shape.out_channels, "size": shape.size,
               "workspace_bytes": workspace, "free": _timed(run)}
        margin = max(MARGIN_SHARE * workspace, MARGIN_BYTES)
        for label, target in (("above", workspace + margin), ("below", workspace - margin)):
            if target <= 0:
                continue
            taken = []
            free = leave_free(target, taken, torch.device("cuda"))
            row[label] = dict(_timed(run), free_bytes=free)
            del taken
            torch.cuda.empty_cache()
        print(f"{shape.batch}x{shape.in_channels}->{shape.out_channels} at {shape.size}: workspace "
              f"{workspace / GB:.2f} GB; " + ", ".join(
                  f"{label} {row[label]['seconds'] * 1e3:.2f} ms{' (FFT)' if row[label]['ran_as_fft'] else ''}"
                  for label in ("free", "above", "below") if label in row), flush=True)
        rows.append(row)
    data = dict(_header(), survey=str(survey_path), survey_gpu=survey["gpu"],
                convolution="3x3, fp32 (TF32 off), NCHW, padding 1, a bias, cudnn.benchmark off", rows=rows)
    write_text(str(output), json.dumps(data, indent=1) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    s = commands.add_parser("sweep", help="one convolution with less and less memory free")
    s.add_argument("-o", "--out", type=Path, required=True)
    m = commands.add_parser("shapes", help="a survey's FFT convolutions: workspace, and time either side of it")
    m.add_argument("survey", type=Path)
    m.add_argument("-o", "--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "sweep":
        sweep(args.out)
    else:
        shapes(args.survey, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
