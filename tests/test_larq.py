"""Binary convolutions against larq-compute-engine 0.16.0's LceBconv2d, from vectors it produced
(scripts/record-larq-vectors runs it in its own numpy < 2 environment; simdq/emulate/parity/data holds the result,
which `simdq parity refs` replays too).

LCE pads with +1 bits and corrects the border so that pad_values = 0 gives exact zero padding; pad_values = 1
keeps the +1 padding. Channel counts include non-multiples of LCE's 32-channel words.
"""

import json
from pathlib import Path

import numpy as np
import pytest

import emulator as em

DATA = Path(__file__).resolve().parent.parent / "simdq" / "emulate" / "parity" / "data"
META = json.loads((DATA / "larq_bconv2d.json").read_text())
ARRAYS = np.load(DATA / "larq_bconv2d.npz")


def run(case, padding_value):
    n = case["case"]
    x = (ARRAYS[f"x{n}"].transpose(0, 3, 1, 2) < 0).astype(np.uint8)  # NHWC floats -> NCHW binary codes
    w = (ARRAYS[f"w{n}"].transpose(0, 3, 1, 2) < 0).astype(np.uint8)  # OHWI -> OIHW
    # SAME padding of an odd kernel at stride 1 is (k - 1) * d / 2 on every side
    padding = 0 if case["padding"] == "VALID" else (case["kernel"] - 1) * case["dilation"] // 2
    return em.conv2d(x, w, x_format="binary", w_format="binary", stride=case["stride"], dilation=case["dilation"],
                     padding=padding, padding_value=padding_value)


@pytest.mark.parametrize("case", META["cases"], ids=lambda c: f"c{c['channels']}-k{c['kernel']}-s{c['stride']}-"
                         f"d{c['dilation']}-{c['padding']}-pad{c['pad_values']}-t{c['threads']}")
def test_binary_conv2d_matches_lce_bconv2d(case):
    padding_value = None if case["pad_values"] == 0 else 1
    expected = ARRAYS[f"y{case['case']}"].transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(run(case, padding_value), expected)


def test_the_padding_modes_differ_where_lce_pads():
    """Both modes were recorded, and on every SAME case the other mode would be wrong at the border."""
    same = [c for c in META["cases"] if c["padding"] == "SAME"]
    assert {c["pad_values"] for c in same} == {0, 1}
    assert any(c["channels"] % 32 for c in META["cases"]) and any(c["threads"] == 2 for c in META["cases"])
    for case in same:
        other = 1 if case["pad_values"] == 0 else None
        assert (run(case, other) != ARRAYS[f"y{case['case']}"].transpose(0, 3, 1, 2)).any()
    assert META["larq_compute_engine"] == "0.16.0"
