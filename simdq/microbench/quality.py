"""How well the calibrated GPU model's fit generalises, from microbenchmark records alone: each class's error, and
the energy fit's, on samples it was fitted without (k-fold), and a fit on one record predicting another GPU's (or
another day's) record. This is how to choose between ways of fitting without tuning on the validation forwards
(benchmarks/gpu_validation.py), which stay held out.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from hw_models.engines.calibrated import strided_class
from hw_models.fit import (cross_validated_energy_errors, cross_validated_errors, energy_errors, fit_classes,
                           fit_energy, relative_errors)

from ..errors import SimdqError
from . import CONVOLUTION_CLASSES, l2_bytes_of, samples_of


def _samples(record: dict, transforms: bool) -> list:
    samples = samples_of(record)
    return samples if transforms else [replace(s, channels_first_bytes=0.0, channels_last_bytes=0.0) for s in samples]


def _median(errors) -> float:
    """The median |error|; nan where there is none (nothing predicted)."""
    known = np.abs(np.asarray(errors, dtype=float))
    known = known[np.isfinite(known)]
    return float(np.median(known)) if len(known) else float("nan")


def _mean(errors) -> float:
    """The mean signed error; nan where there is none."""
    known = np.asarray(errors, dtype=float)
    known = known[np.isfinite(known)]
    return float(np.mean(known)) if len(known) else float("nan")


def _group(op_class: str) -> str:
    if op_class.startswith(CONVOLUTION_CLASSES):
        return "convolution"
    return "linear and attention" if op_class.startswith(("linear_", "attention_")) else "vector"


def fit_quality(record: dict, base, folds: int, against: dict = None, transforms: bool = True,
                strided_energy: bool = True, symmetric_energy: bool = True) -> tuple:
    """(rows, summary): per class its samples, median |error| in sample, held out by `folds`-fold
    cross-validation, and (with `against`) on the other record's samples of the class; the summary pools the
    samples by class group, and adds the energy fit's errors where the record carries energy. transforms=False
    fits without cuDNN's layout transforms (their time, and the bytes they move), strided_energy=False without
    the strided classes' extra energy per byte, symmetric_energy=False the energy with each error relative to its
    measurement alone (the models before them)."""
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
    if any(s.energy_j for s in samples):
        summary.update(_energy_quality(samples, base, record, folds, against, transforms, strided_energy,
                                       symmetric_energy))
    return rows, summary


def _energy_quality(samples: list, base, record: dict, folds: int, against, transforms: bool, strided: bool,
                    symmetric: bool) -> dict:
    """The energy fit's rows: over every metered sample, over the strided classes' alone, and the signed mean
    error over every metered sample (where the fit leans)."""
    l2_bytes = l2_bytes_of(record, base)
    fit = fit_energy(samples, l2_bytes, strided, symmetric)
    metered = [s for s in samples if s.energy_j]
    others = [s for s in _samples(against, transforms) if s.energy_j] if against else []
    errors = [energy_errors(fit, metered), cross_validated_energy_errors(samples, l2_bytes, folds, strided, symmetric),
              # the other GPU's samples stay in its own L2 where they fit there
              energy_errors(fit, others, l2_bytes_of(against, base)) if against else np.array([])]
    mine = np.array([strided_class(s.op_class) for s in metered])
    theirs = np.array([strided_class(s.op_class) for s in others], dtype=bool)
    return {"energy": [len(metered)] + [_median(e) for e in errors],
            "energy, strided classes": [int(mine.sum())] + [_median(e[pick]) for e, pick in
                                                            zip(errors, (mine, mine, theirs))],
            "energy: signed mean, not median": [len(metered)] + [_mean(e) for e in errors]}
