"""Where the time of `simdq estimate` goes: imports, model build, tracing, accounting and rendering
(in this process), then the wall time of the whole command in fresh processes (median of 3).

    python benchmarks/estimate_speed.py [--preset sd15] [--hw h100]

The goal (issue: the estimate command) is under 5 s for sd15 on the 2-core machine, most of it imports.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="sd15")
    parser.add_argument("--hw", default="h100")
    args = parser.parse_args()
    config_data = {"model": {"preset": args.preset}, "input": {"steps": 50, "guidance": True},
                   "quant": {"weights": "int4", "activations": "int8", "policy": "binarydm"}}

    split = {}
    started = time.perf_counter()
    import torch  # noqa: F401

    split["import torch"] = time.perf_counter() - started
    started = time.perf_counter()
    from simdq.model.unets import _import_diffusers

    _import_diffusers()
    split["import diffusers"] = time.perf_counter() - started
    started = time.perf_counter()
    from simdq.cli.estimate import run_estimate
    from simdq.config import parse_config
    from simdq.report.render import render

    split["import simdq (emulator, hw_models, pydantic)"] = time.perf_counter() - started
    estimate = run_estimate(parse_config(config_data, "benchmark"), args.hw)
    split.update(estimate.timings)
    started = time.perf_counter()
    render(estimate, "table")
    split["rendering"] = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.yaml"
        path.write_text(yaml.safe_dump(config_data))
        command = [sys.executable, "-m", "simdq.cli", "estimate", str(path), "--hw", args.hw]
        walls = []
        for _ in range(3):
            started = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            walls.append(time.perf_counter() - started)

    print(f"simdq estimate, preset {args.preset}, {len(estimate.layers)} layers, device {args.hw}")
    for stage, seconds in split.items():
        print(f"  {stage:<45} {seconds:6.3f} s")
    print(f"  {'sum of stages':<45} {sum(split.values()):6.3f} s")
    print(f"whole command in a fresh process (median of 3): {statistics.median(walls):.3f} s "
          f"(runs: {', '.join(f'{w:.2f}' for w in walls)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
