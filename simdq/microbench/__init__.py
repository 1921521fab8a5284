"""GPU microbenchmarks for `simdq hw calibrate`: time (and, where NVML can read the GPU's energy counter,
measure the energy of) the ops simdq's layers map to, keep every measurement as a record, and fit the
calibrated GPU model's per-class parameters from it (hw_models.fit). Fitting needs no GPU: `simdq hw fit`
refits a device file from a record.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import asdict, fields

from hw_models.fit import Sample, fit_classes, fit_energy

from ..errors import SimdqError
from .energy import EnergyMeter, energy_calls
from .suite import FLOAT_BYTES, default_suite, model_suite
from .timing import capture, precision_mode, replay_seconds

RECORD_FORMAT = "simdq-microbenchmarks-1"
SAMPLE_FIELDS = {f.name for f in fields(Sample)}


def _peak(base, precision: str) -> float:
    rates = base.primary.rates
    return rates.peaks.get(precision, rates.vector_peak) if precision else rates.vector_peak


def measure(suite: list, device, base, meter=None, progress=None, records=None) -> list:
    """One record per benchmark, appended to `records`: the Sample fields, its label and TF32 mode, and (with
    a meter, on every meter.stride-th benchmark) the busy power, SM clock and temperature of its energy."""
    records = [] if records is None else records
    for index, bench in enumerate(suite):
        with precision_mode(bench.tf32):
            captured = capture(bench.run, device)
            seconds = replay_seconds(captured)
            record = {"label": bench.label, "tf32": bench.tf32, "op_class": bench.op_class, "kernels": bench.kernels,
                      "gemm_dims": bench.gemm_dims, "vector_flops": bench.vector_flops,
                      "traffic_bytes": bench.traffic_bytes, "peak": _peak(base, bench.precision),
                      "measured_s": seconds, "precision": bench.precision, "parallel_rows": bench.parallel_rows,
                      "channels_first_bytes": bench.channels_first_bytes}
            if meter is not None and index % meter.stride == 0:
                calls = energy_calls(seconds, meter.window())
                graph = captured if calls == captured.calls else capture(bench.run, device, calls)
                try:
                    reading = meter.busy_power(graph.graph.replay, seconds * calls)
                except SimdqError as err:  # one unread window costs one sample, not the run
                    record["energy_error"] = str(err)
                else:
                    sustained_s = reading.sustained_replay_s / calls
                    record.update(energy_j=reading.watts * sustained_s, power_w=reading.watts,
                                  sustained_s=sustained_s, energy_window_s=reading.window_s,
                                  sm_clock_mhz=reading.sm_clock_mhz, temperature_c=reading.temperature_c)
                del graph
            del captured
        records.append(record)
        if progress:
            progress(index + 1, len(suite))
    return records


def interleaved(suite: list) -> list:
    """The benchmarks taken one class at a time in turn, so that a run cut short has measured every class."""
    by_class = {}
    for bench in suite:
        by_class.setdefault(bench.op_class, []).append(bench)
    queues = list(by_class.values())
    return [queue[i] for i in range(max(map(len, queues))) for queue in queues if i < len(queue)]


THROTTLED = 0.95  # an SM clock under this share of the highest seen: the power limit was lowering it


def _energy_usable(measurement: dict, top_clock: float) -> bool:
    """Energy read at a throttled clock is usable only with the time per call at that clock (sustained_s);
    records made before it was measured price it at the unthrottled time, so it is left out of the fit."""
    return "sustained_s" in measurement or measurement.get("sm_clock_mhz", top_clock) >= THROTTLED * top_clock


# the convolution classes, whose benchmarks (before records carried channels_first_bytes) were all NCHW throughout
CONVOLUTION_CLASSES = ("conv_", "pointwise_", "downsample_")


def weights_from_dram(measurement: dict, l2_bytes: float) -> bool:
    """Whether a GEMM benchmark's weights (N x K of its precision) outgrow half the L2 (an H100's is two halves),
    so that each call reads them from DRAM as a layer of a forward does: on an H100, a 3x3 convolution's 16 MB of
    fp32 weights stayed in L2 between calls and its 29 MB did not (reports/gpu-cold-weights-h100.json)."""
    if not measurement["gemm_dims"] or not l2_bytes or measurement["op_class"].startswith("attention_"):
        return False
    element_bytes = FLOAT_BYTES.get(measurement.get("precision"), 1)
    return sum(n * k for _, _, n, k in measurement["gemm_dims"]) * element_bytes > l2_bytes / 2


def samples_of(record: dict) -> list:
    """The fit's Samples from a record's measurements."""
    top_clock = max((m.get("sm_clock_mhz", 0) for m in record["measurements"]), default=0)
    samples = []
    for m in record["measurements"]:
        fields_ = {k: (tuple(tuple(d) for d in v) if k == "gemm_dims" else v) for k, v in m.items() if k in SAMPLE_FIELDS}
        fields_["weights_from_dram"] = weights_from_dram(m, record.get("l2_bytes", 0))
        if "channels_first_bytes" not in m and m["op_class"].startswith(CONVOLUTION_CLASSES):
            fields_["channels_first_bytes"] = m["traffic_bytes"]
        if "energy_j" in fields_ and not _energy_usable(m, top_clock):
            del fields_["energy_j"]
        samples.append(Sample(**fields_))
    return samples


def l2_bytes_of(record: dict, base) -> float:
    """The GPU's L2 capacity: as torch read it during the run, else the base device file's."""
    l2 = base.spec.get("memory", {}).get("l2") or {}
    return float(record.get("l2_bytes") or l2.get("capacity") or 0.0)


def _measured_energy(samples: list, record: dict, l2_bytes: float):
    if not any(s.energy_j for s in samples):
        return None
    fit = fit_energy(samples, l2_bytes)
    idle = record.get("idle_before", {}).get("watts")
    return {
        "static_w": round(fit.static_w, 2), "busy_w": round(fit.busy_w, 2),
        "launch_gap_s": float(f"{fit.launch_gap_s:.4g}"), "mac_pj": {p: round(v, 4) for p, v in fit.mac_pj.items()},
        "conv_mac_pj": round(fit.conv_mac_pj, 4),
        "vector_op_pj": round(fit.vector_op_pj, 4), "dram_pj_per_byte": round(fit.dram_pj_per_byte, 4),
        "l2_pj_per_byte": round(fit.l2_pj_per_byte, 4), "l2_bytes": fit.l2_bytes,
        "strided_pj_per_byte": round(fit.strided_pj_per_byte, 4),
        "source": (f"fitted by simdq hw calibrate to NVML's total-energy counter on {record['gpu']}, "
                   f"{record['date']}: {fit.samples} microbenchmarks, each the board's average power while it ran "
                   f"back to back x its time" + (f"; idle {idle:.0f} W" if idle else "")),
        "median_error": round(fit.median_error, 4), "samples": fit.samples,
    }


def tiling_label(fit: dict) -> str:
    """A fitted class's output tiling as a device file states it: tile_m x tile_n, a fused attention kernel's
    head dimension granule, a wide second tiling at its efficiency, the least time per K of weights streamed
    from DRAM; "-" for a class without a tiling (the FFT's)."""
    if "tile_m" not in fit:
        return "-"
    fused = f" (fused, head dim rounded up to {fit['head_dim_granule']})" if fit.get("head_dim_granule") else ""
    wide = (f", or {fit['wide_tile_m']}x{fit['wide_tile_n']} at {fit['wide_efficiency']} where faster"
            if fit.get("wide_efficiency") else "")
    latency = (f"; weights from DRAM: at least {fit['dram_latency_per_k_s'] * 1e9:.1f} ns per K"
               if fit.get("dram_latency_per_k_s") else "")
    return f"{fit['tile_m']}x{fit['tile_n']}{fused}{wide}{latency}"


def calibrated_spec(base, record: dict, name: str) -> dict:
    """The base device's file contents with a fitted `calibration:` block in its default engine."""
    import copy

    samples = samples_of(record)
    # simdq.microbench.conv_algorithms.with_survey_convolutions
    surveyed, as_fft = record.get("survey_convolutions", 0), record.get("record_ran_as_fft", 0)
    fits = fit_classes(samples, base.primary.dram_bandwidth, record["sms"])
    spec = copy.deepcopy(base.spec)
    spec["name"] = name
    spec["aliases"] = list(base.aliases) if name == base.name else []
    spec["description"] = f"{base.description.split('; calibrated on ')[0]}; calibrated on {record['gpu']}"
    energy = _measured_energy(samples, record, l2_bytes_of(record, base))
    if energy and spec.get("energy"):
        spec["energy"]["measured"] = energy
    engine = spec["engines"][spec["default_engine"]]
    engine["calibration"] = {
        "source": (f"fitted by simdq hw calibrate on {record['gpu']}, {record['date']}, torch {record['torch']}, "
                   f"{len(samples) - surveyed} microbenchmarks" + (f" and {surveyed} convolutions of a cuDNN "
                                                                    f"algorithm survey on {record['survey_gpu']}"
                                                                    if surveyed else "")
                   + " under CUDA graphs" + (f"; {as_fft} more, which the survey saw run as an FFT, go to the "
                                             "FFT class" if as_fft else "")),
        "sms": record["sms"],
        "classes": {
            op_class: {
                "kernel_s": float(f"{fit.params.kernel_s:.4g}"), "efficiency": round(fit.params.efficiency, 4),
                "memory_efficiency": round(fit.params.memory_efficiency, 4), "tile_m": fit.params.tile_m,
                "tile_n": fit.params.tile_n, "split_k_min": fit.params.split_k_min,
                **({"head_dim_granule": fit.params.head_dim_granule} if op_class.startswith("attention_") else {}),
                **({"transform_efficiency": round(fit.params.transform_efficiency, 4)}
                   if fit.params.transform_efficiency else {}),
                **({"wide_tile_m": fit.params.wide_tile_m, "wide_tile_n": fit.params.wide_tile_n,
                    "wide_efficiency": round(fit.params.wide_efficiency, 4)} if fit.params.wide_efficiency else {}),
                **({"dram_latency_per_k_s": float(f"{fit.params.dram_latency_per_k_s:.4g}")}
                   if fit.params.dram_latency_per_k_s else {}),
                "median_error": round(fit.median_error, 4), "samples": fit.samples,
            }
            for op_class, fit in fits.items()
        },
    }
    return spec


def energy_meter(device, energy: bool):
    if not energy or device.type != "cuda":
        return None
    return EnergyMeter(device.index or 0)


def measure_device(torch_device: str, base_name: str, quick: bool = False, progress=None, model_layers=None,
                   energy: bool = True, classes: tuple = ()) -> dict:
    """The record of a calibration run: the GPU, its software, idle power and every measurement.
    model_layers: the traced layers of a model, to time its GEMM shapes instead of the default grid;
    classes: only the suite's benchmarks of these op classes (to extend a record: benchmarks/gpu_record_extend.py);
    progress(done, total, record so far)."""
    import torch

    from hw_models import load_device

    try:
        device = torch.device(torch_device)
    except RuntimeError as err:
        raise SimdqError(f"--device {torch_device!r}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SimdqError("--device cuda: no CUDA device is visible to torch")
    base = load_device(base_name)
    record = {"format": RECORD_FORMAT, "base": base_name, "date": datetime.date.today().isoformat(),
              "torch": torch.__version__, "cuda": torch.version.cuda}
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        record.update(gpu=properties.name, sms=properties.multi_processor_count,
                      l2_bytes=getattr(properties, "L2_cache_size", 0))
    else:
        record.update(gpu=f"{device.type} (pipeline test, not a GPU)", sms=1)
    meter = energy_meter(device, energy)
    if meter is not None:
        record.update(energy_counter_interval_s=meter.interval_s, idle_before=asdict(meter.idle_power()))
    record["measurements"] = []
    with torch.no_grad():
        suite = default_suite(device, quick)
        if model_layers is not None:
            suite = [b for b in suite if not b.gemm_dims] + model_suite(model_layers, device)
        if classes:
            known = sorted({b.op_class for b in suite})
            unknown = [name for name in classes if name not in known]
            if unknown:
                raise SimdqError(f"classes {', '.join(unknown)}: not in this device's suite; it has {', '.join(known)}")
            suite = [b for b in suite if b.op_class in classes]
        suite = interleaved(suite)
        measure(suite, device, base, meter, lambda done, total: progress and progress(done, total, record),
                record["measurements"])
    if meter is not None:
        record["idle_after"] = asdict(meter.idle_power())
    return record


def read_record(path: str) -> dict:
    try:
        record = json.loads(open(path, encoding="utf-8").read())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SimdqError(f"{path}: not a readable microbenchmark record ({err})") from None
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        raise SimdqError(f"{path}: not a microbenchmark record (format {RECORD_FORMAT!r} expected)")
    try:
        samples_of(record)
    except (KeyError, TypeError, ValueError) as err:
        raise SimdqError(f"{path}: a measurement is malformed ({err})") from None
    return record
