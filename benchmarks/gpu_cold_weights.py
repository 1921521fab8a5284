"""How much slower a layer runs when its weights come from DRAM, as in a whole forward, than when they stay in L2,
as in a microbenchmark that repeats it.

A microbenchmark (simdq hw calibrate, the survey, gpu_validation.py's per-layer rows) calls one op again and again
on the same weights, which stay in the L2 cache after the first call; in a forward each layer's weights are read
once, from DRAM (LDM-4's fp32 weights are 1.1 GB, an H100's L2 50 MB). `measure` times every conv and linear
module of each run alone, on the inputs it sees in a real forward, two ways:
- warm: the module called again and again (what gpu_validation.py's per-layer rows time);
- cold: the module's weights copied enough times that the copies span three L2 capacities, each call on the next
  copy, so each call reads its weights from DRAM while its input stays in L2 (as a forward's layer finds them);
and the whole forward once, under CUDA graphs.

    python benchmarks/gpu_cold_weights.py measure -o OUT/cold-weights.json               # on the GPU
    python benchmarks/gpu_cold_weights.py measure --runs ldm4-lsun-bedrooms:fp32:1 -o OUT/cold-weights.json
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from math import ceil
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

FORMAT = "simdq-cold-weights-1"
RUNS = "ldm4-lsun-bedrooms:fp32:1,ldm4-lsun-bedrooms:fp32:8,ldm4-lsun-bedrooms:tf32:1,ldm4-lsun-bedrooms:fp16:1"
# the copies of a layer's weights span this many L2 capacities, and there are at least MIN_COPIES of them
L2_SPAN, MIN_COPIES, MAX_COPIES = 3, 8, 512


def copies_for(weight_bytes: float, l2_bytes: float) -> int:
    """How many copies of a layer's weights each call cycles through, so that a copy is evicted from an L2 of
    `l2_bytes` before it is read again."""
    return max(MIN_COPIES, min(MAX_COPIES, ceil(L2_SPAN * l2_bytes / max(weight_bytes, 1.0))))


def _functional(module):
    """(call(weight, bias, x), weight, bias) of a conv or linear module."""
    import torch
    import torch.nn.functional as F

    if isinstance(module, torch.nn.Conv2d):
        def call(weight, bias, x):
            return F.conv2d(x, weight, bias, module.stride, module.padding, module.dilation, module.groups)
    else:
        def call(weight, bias, x):
            return F.linear(x, weight, bias)
    return call, module.weight, module.bias


def layer_times(model, inputs: dict, device, l2_bytes: float) -> dict:
    """name -> {warm_s, cold_s, copies, weight_bytes} of every conv and linear module."""
    import torch

    from simdq.microbench.timing import capture, replay_seconds

    captured = {}

    def keep(module, args, name):
        captured.setdefault(name, (module, args))

    hooks = [module.register_forward_pre_hook(lambda m, args, name=name: keep(m, args, name))
             for name, module in model.named_modules() if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear))]
    model(**inputs)
    for hook in hooks:
        hook.remove()
    rows = {}
    for name, (module, args) in captured.items():
        call, weight, bias = _functional(module)
        weight_bytes = weight.numel() * weight.element_size() + (bias.numel() * bias.element_size() if bias is not None
                                                                 else 0)
        copies = copies_for(weight_bytes, l2_bytes)
        stack = [(weight.clone(), None if bias is None else bias.clone()) for _ in range(copies)]
        turn = iter(range(10 ** 9))

        def cold():
            w, b = stack[next(turn) % copies]
            return call(w, b, *args)

        warm_s = replay_seconds(capture(lambda: call(weight, bias, *args), device))
        cold_s = replay_seconds(capture(cold, device, calls=copies))
        rows[name] = {"warm_s": warm_s, "cold_s": cold_s, "copies": copies, "weight_bytes": weight_bytes}
        del stack
    return rows


def measure(runs: list, output: Path) -> None:
    import torch

    from gpu_validation import DTYPES, _inputs
    from simdq.microbench.timing import capture, replay_seconds, tf32_mode
    from simdq.model.unets import build_unet
    from simdq.output import replacing
    from simdq.presets import preset_spec

    device = torch.device("cuda")
    properties = torch.cuda.get_device_properties(device)
    data = {"format": FORMAT, "gpu": properties.name, "date": date.today().isoformat(), "torch": torch.__version__,
            "cudnn": torch.backends.cudnn.version(), "l2_bytes": properties.L2_cache_size,
            "timing": "CUDA graphs: median of 7 replays; warm: 20 calls of the module, cold: one call on each copy",
            "runs": []}
    for preset, precision, batch in runs:
        dtype = getattr(torch, DTYPES[precision])
        with torch.no_grad(), tf32_mode(precision == "tf32"):
            model = build_unet(preset_spec(preset), str(device)).to(dtype)
            inputs = _inputs(model, batch, device, dtype)
            forward_s = replay_seconds(capture(lambda: model(**inputs), device))
            layers = layer_times(model, inputs, device, properties.L2_cache_size)
        data["runs"].append({"preset": preset, "precision": precision, "batch": batch, "forward_s": forward_s,
                             "layers": layers})
        warm, cold = (sum(r[key] for r in layers.values()) for key in ("warm_s", "cold_s"))
        print(f"{preset}:{precision}:{batch}: forward {forward_s * 1e3:.3f} ms; conv and linear layers warm "
              f"{warm * 1e3:.3f} ms, cold {cold * 1e3:.3f} ms", flush=True)
        model = inputs = None
        torch.cuda.empty_cache()
        with replacing(output, "-o") as temporary:
            temporary.write_text(json.dumps(data, indent=1))


def run_list(text: str) -> list:
    """Comma-separated PRESET:PRECISION:BATCH runs (gpu_validation.run_spec each); an argparse type."""
    from gpu_validation import run_spec

    return [run_spec(part) for part in text.split(",")]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    m = commands.add_parser("measure", help="time each layer with warm and cold weights (needs a CUDA GPU)")
    m.add_argument("-o", "--out", type=Path, required=True)
    m.add_argument("--runs", type=run_list, default=RUNS, help="PRESET:PRECISION:BATCH,... (default: %(default)s)")
    args = parser.parse_args(argv)
    measure(args.runs, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
