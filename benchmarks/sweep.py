"""A 200-point estimate sweep (2 presets x 10 schemes x 5 devices x 2 batches) run four ways in one process:
serially, on a LocalCluster of N workers (default 2), on it again with every trace stored (a changed scheme axis),
again from the filled store, and, as the baseline, one
`run_estimate` per point (what 200 `simdq estimate` calls do, less their process start-up: each builds and
traces its UNet). Prints wall times, their ratios and the share of task time spent tracing.

    python benchmarks/sweep.py [--workers 2] [--quality [--worker-numba-threads N]]

--quality adds the heavy points: the quality tasks of examples/sweep-tiny-quality.yaml (2 calibrations, 4 parity
runs of the tiny UNet), serially and on the LocalCluster (torch runs one thread per task either way);
--worker-numba-threads N gives that cluster's workers N Numba threads each instead of cores / workers.

Every run starts from an empty store in a temporary folder, except the repeat, which reads the serial run's.
torch and diffusers are imported before any timing; LocalCluster start-up is timed apart from the sweep.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import yaml

PRESETS = ["ldm4-lsun-bedrooms", "ddpm-cifar10"]
SCHEMES = {
    "fp16": {"weights": "fp16", "activations": "fp16"},
    "w8a8": {"weights": "int8", "activations": "int8"},
    "fp8": {"weights": "e4m3fn", "activations": "e4m3fn"},
    "w4a8": {"weights": "int4", "activations": "int8"},
    "w4a4": {"weights": "int4", "activations": "int4"},
    "mxfp8": {"weights": "mxfp8_e4m3", "activations": "mxfp8_e4m3"},
    "mxfp4": {"weights": "mxfp4", "activations": "mxfp4"},
    "nvfp4": {"weights": "nvfp4", "activations": "nvfp4"},
    "w1a4": {"weights": "binary", "activations": "int4"},
    "w1a1": {"weights": "binary", "activations": "binary"},
}
DEVICES = ["h100-calibrated", "a100", "jetson:dla@30W", "edgetpu-like", "xne-like"]
BATCHES = [1, 8]


def sweep_plan(folder: Path):
    from simdq.sweep.plan import expand
    from simdq.sweep.spec import load_sweep

    path = folder / "bench-sweep.yaml"
    path.write_text(yaml.safe_dump({
        "base": {"model": {"preset": PRESETS[0]}, "quant": {"policy": "binarydm"}, "input": {"steps": 50}},
        "presets": PRESETS, "schemes": SCHEMES, "devices": DEVICES, "batch": BATCHES}))
    spec, where = load_sweep(path)
    return expand(spec, where, str(path))


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quality", action="store_true", help="also time the heavy (quality) points")
    parser.add_argument("--worker-numba-threads", type=int, metavar="N",
                        help="Numba threads per worker for the heavy points (default: cores / workers)")
    args = parser.parse_args()

    started = time.perf_counter()
    from simdq.model.unets import _import_diffusers

    _import_diffusers()  # torch and diffusers, as tracing imports them, before any timing

    import_s = time.perf_counter() - started

    from simdq.cli.estimate import run_estimate
    from simdq.config import parse_config
    from simdq.sweep.plan import expand
    from simdq.sweep.run import local_cluster, run_dask, run_serial
    from simdq.sweep.spec import load_sweep
    from simdq.sweep.store import ResultStore
    from simdq.sweep.table import sweep_frame

    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        plan = sweep_plan(root)
        points = len(plan.estimates)
        print(f"{points} points, {len(plan.traces)} traces")
        serial, serial_s = timed(run_serial, plan, ResultStore(root / "serial"))
        repeat, repeat_s = timed(run_serial, plan, ResultStore(root / "serial"))
        client, startup_s = timed(local_cluster, args.workers)
        try:
            dask, dask_s = timed(run_dask, plan, ResultStore(root / "dask"), client)
            # a changed axis: no point stored, every trace is (the workers then never import torch)
            shutil.copytree(root / "serial" / "traces", root / "traced" / "traces")
            client.restart()
            traced, traced_s = timed(run_dask, plan, ResultStore(root / "traced"), client)
        finally:
            client.close()
            client.cluster.close()
        assert sweep_frame(dask.rows).equals(sweep_frame(serial.rows)), "the cluster's table differs"
        assert repeat.computed == 0 and sweep_frame(repeat.rows).equals(sweep_frame(serial.rows))
        assert traced.traces_computed == 0 and sweep_frame(traced.rows).equals(sweep_frame(serial.rows))

        heavy = None
        if args.quality:
            from simdq.sweep.plan import SweepPlan

            example = Path(__file__).resolve().parents[1] / "examples" / "sweep-tiny-quality.yaml"
            spec, where = load_sweep(example)
            qualities = SweepPlan(qualities=expand(spec, where, str(example)).qualities)
            heavy_serial, heavy_serial_s = timed(run_serial, qualities, ResultStore(root / "heavy-serial"))
            client = local_cluster(args.workers, args.worker_numba_threads)
            try:
                heavy_dask, heavy_dask_s = timed(run_dask, qualities, ResultStore(root / "heavy-dask"), client)
            finally:
                client.close()
                client.cluster.close()
            assert sweep_frame(heavy_dask.rows).equals(sweep_frame(heavy_serial.rows))
            heavy = (len(qualities.points), heavy_serial_s, heavy_dask_s)

        started = time.perf_counter()
        for point in plan.estimates:
            run_estimate(parse_config(json.loads(point.config_json), "bench"), dict(point.labels)["device"])
        baseline_s = time.perf_counter() - started

    def share(outcome):
        total = sum(outcome.seconds.values())
        return outcome.seconds.get("trace", 0.0) / total if total else 0.0

    failed = sum(r["error"] is not None for r in serial.rows)
    print(f"serial sweep:          {serial_s:7.2f} s  ({serial.traces_computed} traces, tracing "
          f"{share(serial):.0%} of task time; {failed} points failed; torch and diffusers imported before, "
          f"in {import_s:.2f} s)")
    print(f"repeat from the store: {repeat_s:7.2f} s  ({repeat.reused} points read back)")
    print(f"LocalCluster({args.workers}):       {dask_s:7.2f} s  (+ {startup_s:.2f} s start-up; tracing "
          f"{share(dask):.0%} of task time, torch imports on the workers included)")
    print(f"LocalCluster({args.workers}), traces stored: {traced_s:7.2f} s  (restarted workers, no torch import)")
    print(f"baseline, {points} x run_estimate (a trace each): {baseline_s:7.2f} s")
    if heavy:
        count, heavy_serial_s, heavy_dask_s = heavy
        print(f"heavy points ({count} parity runs, 2 calibrations): serial {heavy_serial_s:.2f} s, "
              f"LocalCluster({args.workers}) {heavy_dask_s:.2f} s: {heavy_serial_s / heavy_dask_s:.2f}x")
    print(f"ratios: baseline / serial {baseline_s / serial_s:.1f}x, serial / LocalCluster "
          f"{serial_s / dask_s:.2f}x ({(serial_s + import_s) / (dask_s + startup_s):.2f}x with start-up and the "
          f"serial run's torch import), serial / LocalCluster with traces stored {serial_s / traced_s:.2f}x, "
          f"serial / repeat {serial_s / repeat_s:.0f}x")


if __name__ == "__main__":
    main()
