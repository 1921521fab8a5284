"""The sweep's rows as one pandas table: a row per point, in plan order, with fixed columns and dtypes (so a
serial run, a cluster run and a run read back from the store give equal tables), each estimate joined with the
quality of its scheme: parity on the same device where one was run, else with exact accumulation."""

from __future__ import annotations

from .spec import EXACT
from .tasks import ESTIMATE_METRICS, QUALITY_METRICS

LABELS = ("preset", "scheme", "weights", "activations", "policy", "device", "batch", "steps")
COLUMNS = ("kind",) + LABELS + ESTIMATE_METRICS + QUALITY_METRICS + ("quality_device", "error", "key")
_SCHEME = ("preset", "scheme", "policy")


def _with_quality(rows: list) -> list:
    quality = {}
    for row in rows:
        if row["kind"] == "quality" and row["error"] is None:
            quality[tuple(row[k] for k in _SCHEME) + (row["device"],)] = row
    joined = []
    for row in rows:
        row = {**row, "quality_device": row["device"] if row["kind"] == "quality" else None}
        if row["kind"] == "estimate":
            scheme = tuple(row[k] for k in _SCHEME)
            found = quality.get(scheme + (row["device"],)) or quality.get(scheme + (EXACT,))
            if found is not None:
                row.update({m: found[m] for m in QUALITY_METRICS}, quality_device=found["device"])
        joined.append(row)
    return joined


def sweep_frame(rows: list):
    import pandas as pd

    frame = pd.DataFrame([{c: row.get(c) for c in COLUMNS} for row in _with_quality(rows)], columns=list(COLUMNS))
    for column in ESTIMATE_METRICS + QUALITY_METRICS[:-1]:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    frame["parity_passed"] = frame["parity_passed"].astype("boolean")
    for column in ("batch", "steps"):
        frame[column] = frame[column].astype("Int64")
    for column in ("kind",) + LABELS[:6] + ("quality_device", "error", "key"):
        frame[column] = frame[column].astype("string")
    return frame
