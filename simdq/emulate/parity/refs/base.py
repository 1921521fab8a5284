"""What every reference adapter provides to the detector: run the library, run a convention, draw cases.

A case is a dict of numpy arrays and numbers. Both sides return an integer array of shape (units, k):
one row per unit the library computes independently (an element, or a whole block), holding the bit
patterns of that unit's outputs, so that a mismatch can be cut down to the one unit that shows it.
"""

from __future__ import annotations

import numpy as np

from ..conventions import Convention

NAN = -1  # canonical code of a NaN whose sign is not compared


class Reference:
    """One function of one installed library, and the emulator conventions that might reproduce it."""

    library: str  # the distribution whose version is reported ("ml_dtypes", "torch", ...)
    id: str  # "ml_dtypes: astype(float8_e4m3fn) from float64"
    conventions: list[Convention]
    domain = "every input"  # what is drawn; anything left out, and why
    recorded_version = None  # set by references replayed from vectors a library made elsewhere

    def reference(self, case: dict) -> np.ndarray:
        raise NotImplementedError

    def emulate(self, convention: Convention, case: dict) -> np.ndarray:
        raise NotImplementedError

    def boundary_cases(self) -> list[dict]:
        """Deterministic cases that put every tie and overflow point of the format in front of both sides."""
        raise NotImplementedError

    def strategy(self):
        """A hypothesis strategy of small cases, biased to the same boundaries."""
        raise NotImplementedError

    def narrow(self, case: dict, unit: int) -> dict:
        """The smallest case that still contains `unit` (elementwise functions: that one element)."""
        return case

    def show(self, case: dict) -> str:
        raise NotImplementedError

    def show_output(self, rows: np.ndarray) -> str:
        return " ".join(_hex(v) for v in rows.reshape(-1)[:40])


def _hex(value) -> str:
    value = int(value)
    return "NaN" if value == NAN else hex(value)


def float_text(values) -> str:
    """Values as Python floats and as exact hexadecimal floats, which is what a tie needs."""
    arr = np.asarray(values).reshape(-1)
    shown = [f"{float(v)!r} ({float(v).hex()})" for v in arr[:8]]
    more = f" ... ({arr.size} values)" if arr.size > 8 else ""
    return "[" + ", ".join(shown) + more + "]"


def rows(codes) -> np.ndarray:
    """Elementwise outputs as one unit per row."""
    return np.asarray(codes).astype(np.int64).reshape(-1, 1)
