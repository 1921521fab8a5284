"""larq-compute-engine's LceBconv2d, replayed from vectors it produced (simdq/emulate/parity/data/larq_bconv2d.*,
made by scripts/record-larq-vectors in its own numpy < 2 environment: LCE cannot be installed beside numpy 2).

One reference per pad_values mode; candidates are emulator.conv2d's binary padding modes (padding_value None:
exact zero padding; 1; -1). VALID cases carry no padding and match every mode.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import emulator as em

from ..conventions import Convention
from .base import Reference, rows

DATA = Path(__file__).resolve().parent.parent / "data"
PADDINGS = {"zero": None, "plus_one": 1, "minus_one": -1}


class RecordedBconv2d(Reference):
    library = "larq_compute_engine"
    domain = "the recorded cases only (the library does not run beside numpy 2)"

    def __init__(self, pad_values: int, cases: list, arrays, version: str):
        self.id = f"larq_compute_engine: LceBconv2d pad_values={pad_values} (recorded)"
        self.recorded_version = version
        self.conventions = [Convention.of(padding=name) for name in PADDINGS]
        self.cases = [self._case(c, arrays) for c in cases if c["pad_values"] == pad_values or c["padding"] == "VALID"]

    @staticmethod
    def _case(meta, arrays):
        n = meta["case"]
        return {"meta": meta, "x": (arrays[f"x{n}"].transpose(0, 3, 1, 2) < 0).astype(np.uint8),
                "w": (arrays[f"w{n}"].transpose(0, 3, 1, 2) < 0).astype(np.uint8),
                "y": arrays[f"y{n}"].transpose(0, 3, 1, 2).astype(np.int64)}

    def reference(self, case):
        return rows(case["y"])

    def emulate(self, convention, case):
        meta = case["meta"]
        padding = 0 if meta["padding"] == "VALID" else (meta["kernel"] - 1) * meta["dilation"] // 2  # SAME, odd k
        return rows(em.conv2d(case["x"], case["w"], x_format="binary", w_format="binary", stride=meta["stride"],
                              dilation=meta["dilation"], padding=padding,
                              padding_value=PADDINGS[convention.get("padding")]))

    def boundary_cases(self):
        return self.cases

    def strategy(self):
        from hypothesis import strategies as st

        return st.sampled_from(self.cases)

    def show(self, case):
        meta = case["meta"]
        return (f"x {case['x'].shape} (NCHW), w {case['w'].shape}, stride {meta['stride']}, dilation "
                f"{meta['dilation']}, {meta['padding']}, pad_values {meta['pad_values']}, {meta['threads']} threads")


def larq_recorded_references() -> list[Reference]:
    meta = json.loads((DATA / "larq_bconv2d.json").read_text())
    arrays = np.load(DATA / "larq_bconv2d.npz")
    version = f"{meta['larq_compute_engine']} (recorded)"
    return [RecordedBconv2d(pad, meta["cases"], arrays, version) for pad in (0, 1)]
