"""What a worker runs for one point. Each task returns a row (a flat dict: the point's labels, its numbers, or
its one-line error) and never raises for bad input, so one bad point cannot stop a sweep.

Torch is imported only by the tasks that build a UNet (tracing, calibration, parity); an estimate from a
stored trace is torch-free, like the cost model it calls.
"""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

from ..cost.estimate import TOTAL_KEYS
from ..errors import SimdqError

ESTIMATE_METRICS = TOTAL_KEYS + ("ops_per_image", "latency_per_image_s", "energy_per_image_j", "size_saving",
                                 "latency_saving", "energy_saving")
QUALITY_METRICS = ("sqnr_db", "cosine", "mse", "sqnr_vs_fake_quant_db", "min_step_sqnr_db", "parity_passed")


@dataclass(frozen=True)
class Failure:
    """A task's one-line error; `stable` errors (bad input: the same every time) are stored like results."""

    error: str
    stable: bool


def failure_of(err: BaseException) -> Failure:
    from hw_models import DeviceFileError

    if isinstance(err, (SimdqError, DeviceFileError)):
        return Failure(str(err), True)
    return Failure(f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no message'}", False)


def empty_row(point) -> dict:
    metrics = ESTIMATE_METRICS + QUALITY_METRICS
    return {"key": point.key, "kind": point.kind, **dict(point.labels), **{m: None for m in metrics},
            "error": None}


def failed_row(point, failure: Failure) -> dict:
    return {**empty_row(point), "error": failure.error}


def trace_task(trace):
    """The layers of one traced forward (simdq.model.layer.Layer records), or a Failure."""
    try:
        from ..model.grouping import layers_of
        from ..model.unets import build_unet

        return layers_of(build_unet(trace.spec), trace.spec, trace.batch, trace.sample_size, trace.context_length,
                         trace.fused_attention)
    except Exception as err:  # noqa: BLE001  every failure becomes the points' error, not the sweep's
        return failure_of(err)


def estimate_task(point, layers) -> tuple:
    """(row, Failure or None) of an EstimatePoint from its trace's result (layers, or the trace's Failure)."""
    if isinstance(layers, Failure):
        return failed_row(point, layers), layers
    try:
        return estimate_row(point, layers), None
    except Exception as err:  # noqa: BLE001
        failure = failure_of(err)
        return failed_row(point, failure), failure


@lru_cache(maxsize=64)
def _device(point):
    """A DevicePoint's Device, parsed and its accumulators checked once per process, not once per estimate."""
    from ..scheme.accumulators import device_accumulators

    device = point.load()
    device_accumulators(device)
    return device


# full-precision totals per (trace, device, dtype, convention, runtime): the same for every scheme, priced once
# per process
_BASELINES: dict = {}
_BASELINES_KEPT = 256


def estimate_row(point, layers) -> dict:
    from ..config import parse_config
    from ..cost.estimate import baseline_totals, estimate_layers
    from ..report.render import savings

    config = parse_config(json.loads(point.config_json), f"sweep point {point.key}")
    device = _device(point.device)
    reference = (point.trace.key, point.device, config.model.dtype, config.convention,
                 config.runtime.model_dump_json())
    if reference not in _BASELINES:
        if len(_BASELINES) >= _BASELINES_KEPT:
            _BASELINES.pop(next(iter(_BASELINES)))
        _BASELINES[reference] = baseline_totals(layers, config, config.convention, device)
    estimate = estimate_layers(layers, config, device, point.spec, config.input, config.convention, {},
                               baseline=_BASELINES[reference])
    totals, per_image, ratios = estimate.totals, estimate.per_image, savings(estimate)
    row = empty_row(point)
    row.update({key: totals[key] for key in TOTAL_KEYS})
    row.update(ops_per_image=per_image["ops"], latency_per_image_s=per_image["latency_s"],
               energy_per_image_j=per_image["energy_j"], size_saving=ratios["size_mib"],
               latency_saving=ratios["latency_s"], energy_saving=ratios["energy_j"])
    return row


@contextmanager
def _torch_single_threaded():
    """torch's float32 reductions split by thread count: one thread everywhere makes a quality point's numbers
    the same on any worker, serial or not (points run side by side instead)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def calibrate_task(calibration, directory: str):
    """The artifact directory of a CalibrationPoint (calibrated now, or found there whole from an earlier run),
    or a Failure."""
    from pathlib import Path

    try:
        from ..calibrate.persist import check_artifact
        from ..calibrate.run import CalibrationSettings, calibrate_artifact
        from ..config import parse_config

        folder = Path(directory)
        if folder.exists():  # artifacts appear whole or not at all: one here is from an earlier run
            try:
                check_artifact(folder)
                return str(folder)
            except SimdqError:
                shutil.rmtree(folder)  # damaged, and the store's own: calibrated again below
        config = parse_config(json.loads(calibration.config_json), f"sweep calibration {calibration.key}")
        with _torch_single_threaded():
            calibrate_artifact(config, folder, CalibrationSettings(**dict(calibration.settings)), progress=False)
        return str(folder)
    except Exception as err:  # noqa: BLE001
        return failure_of(err)


def quality_task(point, artifact) -> tuple:
    """(row, Failure or None) of a QualityPoint: simdq parity model on the calibrated artifact. A worker that
    cannot see the artifact (a cluster without a shared store) calibrates its own copy first."""
    import os

    if isinstance(artifact, Failure):
        return failed_row(point, artifact), artifact
    if not os.path.isdir(artifact):
        artifact = calibrate_task(point.calibration, artifact)
        if isinstance(artifact, Failure):
            return failed_row(point, artifact), artifact
    try:
        with _torch_single_threaded():
            return quality_row(point, artifact), None
    except Exception as err:  # noqa: BLE001
        failure = failure_of(err)
        return failed_row(point, failure), failure


def quality_row(point, artifact: str) -> dict:
    from ..artifact import read_metadata
    from ..emulate.parity.model import model_parity
    from ..emulate.runtime import artifact_config, check_timesteps, device_layers, full_precision_unet, load_emulated
    from ..model.sampling import ddim_timesteps

    metadata = read_metadata(artifact)
    device = point.device.load() if point.device else None
    mapping = device_layers(artifact_config(artifact, metadata), device) if device else None
    model = load_emulated(artifact, device=device, device_layers=mapping)
    steps = dict(point.calibration.settings)["steps"]
    check_timesteps(model, ddim_timesteps(steps))
    fp_unet, how = full_precision_unet(artifact, model.metadata, model.config)
    parity = dict(point.parity)
    report = model_parity(model, fp_unet, artifact=artifact, device=device.name if device else "exact", steps=steps,
                          seed=parity["seed"], guidance_scale=parity["guidance_scale"], samples=parity["samples"],
                          fp_reference=how if fp_unet is not None else f"none ({how})")
    row = empty_row(point)
    vs_fake = report.trajectories["device vs fake-quant"]
    row.update(sqnr_vs_fake_quant_db=vs_fake["sqnr_db"], parity_passed=report.passed)
    final = report.trajectories.get("device vs full precision")
    if final is not None:
        row.update(sqnr_db=final["sqnr_db"], cosine=final["cosine"], mse=final["mse"])
        steps_sqnr = [s["vs_full_precision"]["sqnr_db"] for s in report.per_step if "vs_full_precision" in s]
        row["min_step_sqnr_db"] = min(steps_sqnr) if steps_sqnr else None
    return row
