"""How well the calibrated GPU model's fit generalises, from microbenchmark records alone: each class's error on
samples it was fitted without (k-fold), and a fit on one record predicting another GPU's (or another day's)
record. This is how to choose between ways of fitting without tuning on the validation forwards
(benchmarks/gpu_validation.py), which stay held out.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from hw_models.fit import cross_validated_errors, fit_classes, relative_errors

from ..errors import SimdqError
from . import CONVOLUTION_CLASSES, samples_of


def _samples(record: dict, transforms: bool) -> list:
    samples = samples_of(record)
    return samples if transforms else [replace(s, channels_first_bytes=0.0) for s in samples]


def _median(errors) -> float:
    return float(np.median(np.abs(errors))) if len(errors) else float("nan")


def _group(op_class: str) -> str:
    if op_class.startswith(CONVOLUTION_CLASSES):
        return "convolution"
    return "linear and attention" if op_class.startswith(("linear_", "attention_")) else "vector"


def fit_quality(record: dict, base, folds: int, against: dict = None, transforms: bool = True) -> tuple:
    """(rows, summary): per class its samples, median |error| in sample, held out by `folds`-fold
    cross-validation, and (with `against`) on the other record's samples of the class; the summary pools the
    samples by class group. transforms=False fits without cuDNN's layout transforms (the model before them)."""
    bandwidth, sms = base.primary.dram_bandwidth, record["sms"]
    samples = _samples(record, transforms)
    fits = fit_classes(samples, bandwidth, sms)
    if not fits:
        raise SimdqError("the record has no op class with the 3 microbenchmarks a fit needs")
    in_sample = relative_errors(fits, samples, bandwidth, sms)
    held_out = cross_validated_errors(samples, bandwidth, sms, folds)
    other = relative_errors(fits, _samples(against, transforms), bandwidth, sms) if against else {}
    rows = [[name, len(in_sample[name]), _median(in_sample[name]), _median(held_out.get(name, ())),
             _median(other.get(name, ()))] for name in fits]
    summary = {}
    for group in ("convolution", "linear and attention", "vector", "all"):
        pick = [name for name in fits if group == "all" or _group(name) == group]
        pooled = [np.concatenate([errors[n] for n in pick if n in errors] or [np.array([])])
                  for errors in (in_sample, held_out, other)]
        summary[group] = [sum(len(in_sample[n]) for n in pick)] + [_median(e) for e in pooled]
    return rows, summary
