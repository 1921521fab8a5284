"""One emulated UNet forward of LDM-4 LSUN-Bedrooms (64x64 latent, batch 1) against torch's float32 forward of
the same UNet, timed in the same process, alternating: W4A4 int4, W1A1 binary (XNOR-popcount) and W8A8 e4m3 with
Hopper's sm90_fp8 accumulation. Prints the ratio of the fastest of each, the time split of the emulated forward
(kernels and their epilogue, activation quantization, the float32 torch ops around them) and the peak memory of
loading and running the emulated model (before the float32 baseline is built).

    python benchmarks/emulate.py --artifacts DIR [--repeat 3]

Each scheme runs in its own process. Artifacts missing under DIR are calibrated first (seeded random weights, one
two-step trajectory: calibration quality does not change the arithmetic's speed); that takes about a minute each.
Each process runs with OMP_WAIT_POLICY=PASSIVE, as `simdq emulate` sets it before torch loads
(simdq/cli/emulated.py); `--omp-wait-policy unset` measures what that saves.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SCHEMES = {  # name -> (weights, activations, accumulator, goal: emulated / torch float32 at most)
    "W4A4 int4": ("int4", "int4", "exact", 2.0),
    "W1A1 binary": ("binary", "binary", "exact", 1.0),
    "W8A8 e4m3, sm90_fp8": ("e4m3fn", "e4m3fn", "sm90_fp8", 20.0),
}
PRESET = "ldm4-lsun-bedrooms"


def artifact(root: Path, name: str) -> Path:
    weights, activations, _, _ = SCHEMES[name]
    directory = root / f"{PRESET}-{weights}-{activations}"
    if not (directory / "quant.yaml").exists():
        model = root / f"{directory.name}.yaml"
        model.write_text(f"model: {{preset: {PRESET}}}\nquant: {{weights: {weights}, activations: {activations}}}\n")
        subprocess.run([sys.executable, "-m", "simdq.cli.main", "calibrate", str(model), "-o", str(directory),
                        "--samples", "1", "--steps", "2", "--batch", "1"], check=True, stdout=subprocess.DEVNULL)
    return directory


def child(directory: str, accumulator: str, repeat: int) -> dict:
    import resource

    import torch

    from simdq.emulate.runtime import build_artifact_unet, load_emulated

    model = load_emulated(directory, accumulator=accumulator)
    inputs = {"sample": torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)),
              "timestep": torch.tensor([500])}
    model(**inputs)  # compiles what the Numba cache does not hold yet
    emulated = []
    for _ in range(repeat):
        clock = model.clock()
        start = time.perf_counter()
        model(**inputs)
        emulated.append((time.perf_counter() - start, clock.kernels, clock.quantize))
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    baseline = build_artifact_unet(model.config)
    torch_times = []
    with torch.no_grad():
        baseline(**inputs)
        for _ in range(repeat):  # alternate, so that both see the same state of the machine
            start = time.perf_counter()
            baseline(**inputs)
            torch_times.append(time.perf_counter() - start)
            clock = model.clock()
            start = time.perf_counter()
            model(**inputs)
            emulated.append((time.perf_counter() - start, clock.kernels, clock.quantize))
    total, kernels, quantize = min(emulated)
    return {"emulated_s": total, "kernels_s": kernels, "quantize_s": quantize, "float_ops_s": total - kernels - quantize,
            "torch_s": min(torch_times), "peak_gb": peak_gb, "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", required=True, type=Path, help="folder of the calibrated artifacts")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=sorted(SCHEMES), action="append")
    parser.add_argument("--omp-wait-policy", choices=("PASSIVE", "ACTIVE", "unset"), default="PASSIVE",
                        help="OpenMP's wait policy for the runs (default PASSIVE, as simdq emulate sets it; unset: "
                             "libgomp's own default, spinning a while after each op)")
    parser.add_argument("--child", nargs=2, metavar=("ART_DIR", "ACCUMULATOR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.repeat)))
        return
    args.artifacts.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if args.omp_wait_policy != "unset":
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy
    print("| scheme | accumulator | emulated s | torch float32 s | emulated / torch | goal | kernels s | "
          "activation quantization s | float ops s | peak memory GB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.only or SCHEMES:
        directory = artifact(args.artifacts, name)
        accumulator, goal = SCHEMES[name][2], SCHEMES[name][3]
        result = subprocess.run([sys.executable, __file__, "--artifacts", str(args.artifacts), "--repeat",
                                 str(args.repeat), "--child", str(directory), accumulator], check=True,
                                capture_output=True, text=True, env=env)
        r = json.loads(result.stdout.strip().splitlines()[-1])
        ratio = r["emulated_s"] / r["torch_s"]
        print(f"| {name} | {accumulator} | {r['emulated_s']:.2f} | {r['torch_s']:.2f} | {ratio:.2f}x | "
              f"<= {goal:g}x {'met' if ratio <= goal else 'NOT met'} | {r['kernels_s']:.2f} | {r['quantize_s']:.2f} | "
              f"{r['float_ops_s']:.2f} | {r['peak_gb']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
