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

`forward` follows SD-1.5's 3x3 convolutions through a whole fp32 forward captured as the validation captures it
(three eager warm-up calls on a side stream, then the graph), with some GB left free beside the model: for each
such convolution of the first warm-up calls and captured calls, the peak memory it added and what the caching
allocator held before it, so that which FFT workspaces were allocated, in which phase, shows (the memory model of
`runtime.gpu_memory_free_gb` is checked against it); and the graph's time per forward. The levels run in one
process, most memory first: PyTorch keeps the algorithm a shape last ran, so a fallback carries over to the
levels below, where the capture would fall back too (reports/gpu-fft-forward-h100.json: each capture allocated
exactly the FFTs simdq.cost.estimate.CachedWorkspaces takes, at 48 to 8 GB; the eager warm-up more, as a failed
allocation there releases the cached blocks and retries).

    python benchmarks/gpu_fft_workspace.py sweep -o OUT/fft-workspace.json                  # on the GPU
    python benchmarks/gpu_fft_workspace.py shapes SURVEY.json -o OUT/fft-shapes.json        # on the GPU
    python benchmarks/gpu_fft_workspace.py forward --leave-free-gb 32,24,20,8 -o OUT/fft-forward.json
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simdq.microbench.gpu_memory import GB, gb_list  # noqa: E402

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


FORWARD_PRESET = "sd15"
FORWARD_LEAVE_FREE_GB = (48, 32, 24, 20, 16, 12, 8)
# calls whose convolutions are recorded: the three warm-up calls and the first two captured ones
RECORDED_CALLS = 5
WARM_UP_CALLS = 3


def _allocator_state() -> dict:
    """The caching allocator's own counters: host-side, so they can be read while a graph is being captured."""
    import torch

    stats = torch.cuda.memory_stats()
    return {"allocated_bytes": stats["allocated_bytes.all.current"],
            "reserved_bytes": stats["reserved_bytes.all.current"], "alloc_retries": stats["num_alloc_retries"],
            "ooms": stats["num_ooms"]}


def _forward_probe(model, inputs: dict, free_gb: float) -> dict:
    import torch

    from simdq.microbench.gpu_memory import leave_free
    from simdq.microbench.timing import capture, replay_seconds

    device = torch.device("cuda")
    calls, convolutions, phases = [0], [], {}
    convs = [(name, m) for name, m in model.named_modules()
             if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3) and m.stride == (1, 1)]

    def before(module, args):
        module._probe = _allocator_state()
        torch.cuda.reset_peak_memory_stats()

    def after(module, args, output, name):
        if calls[0] > RECORDED_CALLS:
            return
        state = module._probe
        call = calls[0]
        convolutions.append(dict(
            name=name, phase="warm-up" if call <= WARM_UP_CALLS else "capture",
            call=call if call <= WARM_UP_CALLS else call - WARM_UP_CALLS, in_channels=module.in_channels,
            out_channels=module.out_channels, size=args[0].shape[-1],
            peak_added_bytes=torch.cuda.max_memory_allocated() - state["allocated_bytes"]
            - output.numel() * output.element_size(),
            reserved_before=state["reserved_bytes"], reserved_after=_allocator_state()["reserved_bytes"],
            alloc_retries=_allocator_state()["alloc_retries"] - state["alloc_retries"]))

    def run():
        calls[0] += 1
        if calls[0] in (1, WARM_UP_CALLS + 1):
            phases["warm-up" if calls[0] == 1 else "capture"] = _allocator_state()
        return model(**inputs)

    hooks = [h for name, m in convs for h in (m.register_forward_pre_hook(before), m.register_forward_hook(
        lambda m, a, o, name=name: after(m, a, o, name)))]
    taken = []
    free = leave_free(free_gb * GB, taken, device)
    try:
        graph = capture(run, device)
        phases["after capture"] = _allocator_state()
        seconds = replay_seconds(graph)
    finally:
        for hook in hooks:
            hook.remove()
    del graph, taken
    torch.cuda.empty_cache()
    return {"gpu_memory_free_gb": round(free / GB, 3), "forward_s": seconds, "allocator": phases,
            "convolutions": convolutions}


def forward(leave_free_gb: tuple, output: Path) -> None:
    import torch

    from gpu_validation import _inputs
    from simdq.microbench.timing import tf32_mode
    from simdq.model.unets import build_unet
    from simdq.output import write_text
    from simdq.presets import preset_spec

    torch.backends.cudnn.benchmark = False
    device = torch.device("cuda")
    runs = []
    with torch.no_grad(), tf32_mode(False):
        model = build_unet(preset_spec(FORWARD_PRESET), str(device)).float()
        inputs = _inputs(model, 1, device, torch.float32)
        for free_gb in leave_free_gb:
            run = _forward_probe(model, inputs, free_gb)
            ffts = sorted({(c["phase"], c["call"], c["name"]) for c in run["convolutions"]
                           if c["peak_added_bytes"] > 0.2 * GB})
            print(f"{run['gpu_memory_free_gb']} GB free: {run['forward_s'] * 1e3:.1f} ms; workspaces over 0.2 GB: "
                  f"{len(ffts)}: {ffts[:12]}", flush=True)
            runs.append(run)
    data = dict(_header(), model=f"{FORWARD_PRESET}, fp32 (TF32 off), batch 1, cudnn.benchmark off", runs=runs,
                capture="simdq.microbench.timing.capture: 3 eager calls on a side stream, then 20 calls captured")
    write_text(str(output), json.dumps(data, indent=1) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    s = commands.add_parser("sweep", help="one convolution with less and less memory free")
    s.add_argument("-o", "--out", type=Path, required=True)
    m = commands.add_parser("shapes", help="a survey's FFT convolutions: workspace, and time either side of it")
    m.add_argument("survey", type=Path)
    m.add_argument("-o", "--out", type=Path, required=True)
    f = commands.add_parser("forward", help="SD-1.5 fp32: which FFT workspaces a captured forward allocates")
    f.add_argument("--leave-free-gb", type=gb_list, default=FORWARD_LEAVE_FREE_GB)
    f.add_argument("-o", "--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "sweep":
        sweep(args.out)
    elif args.command == "forward":
        forward(args.leave_free_gb, args.out)
    else:
        shapes(args.survey, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
