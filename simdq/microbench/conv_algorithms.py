"""cuDNN's algorithm choices for 3x3 and 1x1 convolutions, from a survey recorded on the GPU
(benchmarks/gpu_conv_algorithms.py): which kernels each shape ran, and, for the 3x3 shapes that ran as an FFT in
full fp32, the calibrated model's FFT class. cuDNN's heuristics (cudnn.benchmark off, as users run) pick FFT for a few
shapes with no pattern a model could learn from the others (at 32x32, batch 1: every 224- to 960-channel input
into 640 channels, none into 448 or 1280), so which shapes do is recorded, and only their time is fitted. The
survey's other convolutions are measurements of the conv (3x3) and pointwise (1x1) classes like the
microbenchmarks' own.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from hw_models.engines.calibrated import FFT_CLASS, FftShape, fft_side_class
from hw_models.fit import Sample, fit_class

from ..errors import SimdqError
from .suite import FLOAT_BYTES, conv_shape, tf32_flag

FORMAT = "simdq-conv-algorithms-1"
# cuDNN's heuristics pick an FFT only with TF32 off (no TF32, fp16 or bf16 convolution of the survey ran as one)
FFT_PRECISION = "fp32"
# first match wins: kernel name pattern -> algorithm family
FAMILIES = ((r"winograd", "winograd"), (r"fft|gemvx|region_transform|flip_filter", "fft"),
            (r"implicit_convolve_sgemm|explicit_convolve", "direct"),
            (r"implicit_gemm|xmma_fprop|fprop", "implicit GEMM"), (r"gemm", "GEMM"),
            (r"nchwToNhwc|nhwcToNchw|transpose", "layout transform"))


class SurveyError(SimdqError):
    """A survey that cannot be used; the message is one line for the user."""


def family(name: str) -> str:
    for pattern, label in FAMILIES:
        if re.search(pattern, name, re.IGNORECASE):
            return label
    return "other"


def read_survey(path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SurveyError(f"{path}: not a readable convolution survey ({err})") from None
    return check_survey(data, str(path))


def read_surveys(paths: list) -> dict:
    """Surveys of one GPU under one torch and cuDNN (a kernel size each, say) as one: their rows together."""
    surveys = [read_survey(path) for path in paths]
    first = surveys[0]
    for path, survey in zip(paths[1:], surveys[1:]):
        if (survey["gpu"], survey["torch"], survey["cudnn"]) != (first["gpu"], first["torch"], first["cudnn"]):
            raise SurveyError(f"{path}: surveyed on {survey['gpu']}, torch {survey['torch']}, cuDNN {survey['cudnn']}; "
                              f"{paths[0]} on {first['gpu']}, torch {first['torch']}, cuDNN {first['cudnn']}: "
                              "surveys read together must be of one GPU and software")
    dates = dict.fromkeys(survey.get("date", "undated") for survey in surveys)
    return dict(first, date=", ".join(dates), rows=[row for survey in surveys for row in survey["rows"]])


# a row's square kernel size (a survey from before 1x1 convolutions were surveyed has 3x3 rows only) -> its class
WINDOW_CLASSES = {3: "conv", 1: "pointwise"}


def window(row: dict) -> int:
    return row.get("window", 3)


def _row_is_whole(row) -> bool:
    return (isinstance(row, dict) and isinstance(row.get("precision"), str) and window(row) in WINDOW_CLASSES
            and all(isinstance(row.get(key), int) and row[key] > 0 for key in ("batch", "in", "out", "size"))
            and isinstance(row.get("seconds"), (int, float)) and row["seconds"] > 0
            and isinstance(row.get("kernels"), list)
            and all(isinstance(k, list) and len(k) == 3 and isinstance(k[0], str) and isinstance(k[2], int)
                    and k[2] > 0 for k in row["kernels"]))


def check_survey(data, where: str) -> dict:
    """The survey, or SurveyError naming the first row that is not whole (a damaged file)."""
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("rows"), list):
        raise SurveyError(f"{where}: not a convolution survey (format {FORMAT!r} expected)")
    if not (isinstance(data.get("gpu"), str) and isinstance(data.get("torch"), str)
            and isinstance(data.get("cudnn"), int)):
        raise SurveyError(f"{where}: the survey does not say what it ran on (gpu, torch and cudnn expected)")
    for index, row in enumerate(data["rows"]):
        if not _row_is_whole(row):
            raise SurveyError(f"{where}: row {index} is malformed (precision, batch, in, out, size, seconds, "
                              "kernels as [name, microseconds, launches] and a window of 1 or 3 expected)")
    return data


def ran_as_fft(row: dict) -> bool:
    return any(family(name) == "fft" for name, *_ in row["kernels"])


def fft_rows(survey: dict) -> list:
    """(FftShape, measured seconds) of every full-fp32 shape of the survey that ran an FFT kernel (a row's kernels:
    [name, total microseconds, launches] of each kernel name)."""
    return [(FftShape(row["batch"], row["size"], row["in"], row["out"], sum(k[2] for k in row["kernels"])),
             row["seconds"])
            for row in survey["rows"]
            if row["precision"] == FFT_PRECISION and window(row) == 3 and ran_as_fft(row)]


def _fft_entry(fit) -> dict:
    return {"kernel_s": float(f"{fit.params.kernel_s:.4g}"), "efficiency": 1.0,
            "memory_efficiency": round(fit.params.memory_efficiency, 4), "median_error": round(fit.median_error, 4),
            "samples": fit.samples}


def fft_calibration(survey: dict, where: str, bandwidth: float, sms: int, held_out: set = frozenset()) -> tuple:
    """(a device file's `fft_convolutions` block, its FFT classes) from a survey: every FFT shape is recorded, the
    FFT class is fitted on those whose GEMM shape is not in `held_out` (the validated layers'), and a class for
    each FFT side with at least two of them on those alone. Cheap: call it before the other classes' fit, so that
    a survey it cannot use is refused first."""
    rows = fft_rows(check_survey(survey, where))
    training = [(shape, Sample(FFT_CLASS, shape.kernels, (), 0.0, shape.traffic_bytes, 1.0, seconds))
                for shape, seconds in rows if shape.gemm_dims not in held_out]
    if len(training) < 2:
        raise SurveyError(f"{where}: {len(training)} FFT convolutions to fit the FFT class on; at least 2 needed")
    fit = fit_class([sample for _, sample in training], bandwidth, sms)
    classes = {FFT_CLASS: _fft_entry(fit)}
    for side in sorted({shape.side for shape, _ in training}):
        samples = [sample for shape, sample in training if shape.side == side]
        if len(samples) >= 2:
            classes[fft_side_class(side)] = _fft_entry(fit_class(samples, bandwidth, sms))
    block = {
        "source": (f"cuDNN {survey['cudnn']} on {survey['gpu']}, torch {survey['torch']}, cudnn.benchmark off "
                   f"(benchmarks/gpu_conv_algorithms.py, {where}); the FFT class fitted on {fit.samples} of its "
                   f"{len(rows)} FFT shapes" + (" (the others are validated layers')" if fit.samples < len(rows)
                                                else "")),
        "shapes": [{"batch": s.batch, "size": s.size, "in_channels": s.in_channels, "out_channels": s.out_channels,
                    "kernels": s.kernels} for s, _ in rows]}
    return block, classes


def add_fft_calibration(calibration: dict, fft: tuple) -> None:
    """Put fft_calibration's block and classes into a device file's `calibration:` block."""
    calibration["fft_convolutions"], classes = fft
    calibration["classes"].update(classes)


def survey_measurements(survey: dict, record: dict) -> list:
    """The survey's convolutions that did not run as an FFT, as measurements of a record's conv (3x3) and pointwise
    (1x1) classes, described as simdq.microbench.suite describes the convolutions it times alike (NCHW, a bias,
    zero padding). Its grid (batch 1-2, 16x16 to 64x64, 224 to 1920 channels; 1x1 at batch 8 too) is where
    cuDNN's choice of kernel scatters a convolution's time most, which the record's few convolutions of each
    precision sample thinly. A precision the record has no conv class of is left out: the record gives each class
    its compute peak; so is a shape the record times itself in that class (the survey also profiles the suite's
    own fp32 convolutions, for their algorithm)."""
    peaks = {m["precision"]: m["peak"] for m in record["measurements"]
             if m["op_class"].startswith("conv_") and m.get("precision") in FLOAT_BYTES}  # older records lack it
    recorded = {(m["op_class"], tuple(m["gemm_dims"][0])) for m in record["measurements"] if m["gemm_dims"]}
    measurements = []
    for row in survey["rows"]:
        precision, size = row["precision"], window(row)
        op_class = f"{WINDOW_CLASSES[size]}_{precision}"
        dims, elements = conv_shape(row["batch"], row["in"], row["out"], row["size"], kernel=size)
        if precision not in peaks or ran_as_fft(row) or (op_class, dims[0]) in recorded:
            continue
        traffic = elements * FLOAT_BYTES[precision]
        measurements.append({
            "label": f"survey {op_class} {row['batch']}x{row['in']}->{row['out']} {row['size']}x{row['size']}",
            "tf32": tf32_flag(precision), "op_class": op_class, "kernels": 1,
            "gemm_dims": [list(d) for d in dims], "vector_flops": 0, "traffic_bytes": traffic,
            "peak": peaks[precision], "measured_s": row["seconds"], "precision": precision, "parallel_rows": 0,
            "channels_first_bytes": traffic})
    return measurements


def fft_gemm_shapes(survey: dict) -> set:
    """The GEMM shapes of the survey's convolutions that cuDNN ran as an FFT (all in full fp32)."""
    return {shape.gemm_dims for shape, _ in fft_rows(survey)}


def with_survey_convolutions(record: dict, survey: dict, held_out: set = frozenset()) -> dict:
    """The record, its conv classes measured by the survey's convolutions too, less those of a GEMM shape in
    `held_out` (the validated layers'), and less its own fp32 3x3 convolutions that the survey saw cuDNN run as
    an FFT (the FFT class prices those: fft_calibration). `survey_convolutions` and `survey_held_out` say how
    many of the survey's were added and held out, `record_ran_as_fft` how many of the record's were dropped, and
    `survey_gpu` which GPU the survey timed (a survey as check_survey passes it)."""
    ffts = fft_gemm_shapes(survey)
    kept = [m for m in record["measurements"] if not (
        m["op_class"] == f"conv_{FFT_PRECISION}" and m["gemm_dims"] and tuple(m["gemm_dims"][0]) in ffts)]
    measurements = survey_measurements(survey, record)
    added = [m for m in measurements if tuple(m["gemm_dims"][0]) not in held_out]
    return dict(record, measurements=kept + added, survey_convolutions=len(added),
                survey_held_out=len(measurements) - len(added), survey_gpu=survey["gpu"],
                record_ran_as_fft=len(record["measurements"]) - len(kept))
