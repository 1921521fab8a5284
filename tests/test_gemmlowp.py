"""emulator.requantize(convention="gemmlowp") against gemmlowp's own fixedpoint.h, composed as TFLite's
MultiplyByQuantizedMultiplier (scripts/record-gemmlowp-vectors compiled scripts/gemmlowp_requant.cc against a
gemmlowp checkout; tests/data/gemmlowp holds what it printed). Half the multipliers are exact ties (1/2, 1/4,
1/8, 3/8, 3/2, 3), where the double rounding shows; every other convention disagrees somewhere on them.
"""

import json
from pathlib import Path

import numpy as np
import pytest

import emulator as em

DATA = Path(__file__).resolve().parent / "data" / "gemmlowp"
CASES = np.load(DATA / "requant.npz")


def requantize(convention):
    """One call per output zero point: each case is an output channel with its own weight scale (sx = sy = 1)."""
    assert (CASES["sx"] == 1).all() and (CASES["sy"] == 1).all()
    out = np.empty(CASES["acc"].size, dtype=np.int8)
    for zp in np.unique(CASES["zp"]):  # the output zero point is per tensor
        rows = CASES["zp"] == zp
        out[rows] = em.requantize(CASES["acc"][rows][None, :], 1.0, CASES["sw"][rows], 1.0,
                                  output_zero_point=int(zp), convention=convention).view(np.int8)[0]
    return out


def test_gemmlowp_convention_matches_fixedpoint_h():
    np.testing.assert_array_equal(requantize("gemmlowp"), CASES["y"])
    assert json.loads((DATA / "requant.json").read_text())["cases"] == CASES["y"].size


@pytest.mark.parametrize("convention", [c for c in em.REQUANT_CONVENTIONS if c != "gemmlowp"])
def test_the_other_conventions_differ_from_gemmlowp(convention):
    assert (requantize(convention) != CASES["y"]).sum() > 20
