"""Whether cuDNN runs a convolution as an FFT depends on the GPU memory left free: its FFT needs a workspace of
several GB (the frequency-domain weights, twice), and where that cannot be allocated PyTorch falls back to the
next algorithm cuDNN proposes. This times SD-1.5's 640-channel 3x3 convolution at 32x32 (fp32, TF32 off, batch
1: an FFT on an idle H100, reports/gpu-conv-algorithms-h100.md) with the GPU's memory free, then with all but a
few GB of it taken, and records the time, the peak memory the call added and the kernels it ran.

    python benchmarks/gpu_fft_workspace.py -o OUT/fft-workspace.json     # on the GPU
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# GB left free after the first, unconstrained run
LEFT_FREE_GB = (24, 16, 14, 12, 8, 2)
BATCH, CHANNELS, SIZE = 1, 640, 32


def measure(output: Path) -> None:
    import torch
    import torch.nn.functional as F
    from torch.profiler import ProfilerActivity, profile

    from simdq.microbench.timing import capture, replay_seconds, tf32_mode
    from simdq.output import write_text

    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = False
    x = torch.randn(BATCH, CHANNELS, SIZE, SIZE, device=device)
    weight = torch.randn(CHANNELS, CHANNELS, 3, 3, device=device)
    bias = torch.randn(CHANNELS, device=device)

    def run():
        return F.conv2d(x, weight, bias, padding=1)

    def probe(label: str) -> dict:
        with tf32_mode(False):
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            seconds = replay_seconds(capture(run, device))
            added = torch.cuda.max_memory_allocated() - before
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                run()
                torch.cuda.synchronize()
        kernels = {}
        for event in prof.events():
            if event.device_type == torch.autograd.DeviceType.CUDA:
                kernels[event.name] = kernels.get(event.name, 0) + 1
        row = {"memory": label, "free_bytes_after": torch.cuda.mem_get_info(device)[0], "seconds": seconds,
               "peak_added_bytes": added, "kernels": sorted(kernels.items(), key=lambda k: -k[1])}
        print(f"{label}: {seconds * 1e6:.1f} us, {added / 1e9:.2f} GB added, {sum(kernels.values())} kernels",
              flush=True)
        return row

    rows = [probe("free")]
    taken = []
    for left_gb in LEFT_FREE_GB:
        torch.cuda.empty_cache()  # the workspace the last call kept cached is asked for again
        while torch.cuda.mem_get_info(device)[0] > (left_gb + 1) * 1e9:
            taken.append(torch.empty(10**9, dtype=torch.uint8, device=device))
        rows.append(probe(f"about {left_gb} GB free"))
    data = {"gpu": torch.cuda.get_device_name(device), "date": date.today().isoformat(), "torch": torch.__version__,
            "cudnn": torch.backends.cudnn.version(), "convolution": f"{BATCH}x{CHANNELS}->{CHANNELS} at {SIZE}x{SIZE}, "
            "3x3, fp32 (TF32 off), NCHW, cudnn.benchmark off", "rows": rows}
    write_text(str(output), json.dumps(data, indent=1) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--out", type=Path, required=True)
    measure(parser.parse_args(argv).out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
