"""benchmarks/gpu_cold_weights.py without a GPU: how many copies of a layer's weights keep each call's from L2, and
the runs it is asked for refused in one line (exit code 2) before anything is timed."""

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import gpu_cold_weights  # noqa: E402
from gpu_cold_weights import L2_SPAN, MAX_COPIES, MIN_COPIES, copies_for  # noqa: E402

L2 = 50 * 2 ** 20


@pytest.mark.parametrize("weight_bytes", [224 * 224 * 9 * 4, 1e6, L2 / 4])
def test_the_copies_span_three_l2_capacities_so_each_is_evicted_before_it_is_read_again(weight_bytes):
    copies = copies_for(weight_bytes, L2)
    assert (copies - 1) * weight_bytes < L2_SPAN * L2 <= copies * weight_bytes


def test_the_copies_are_bounded_for_tiny_and_huge_weights():
    assert copies_for(4 * 224 * 27, L2) == MAX_COPIES  # conv_in: 24 KB would need 6,000 copies
    assert copies_for(896 * 896 * 9 * 4, L2) == copies_for(1e9, L2) == MIN_COPIES


@pytest.mark.parametrize("runs, message", [
    ("sd15:fp64:1", "PRECISION:BATCH expected, with a precision of fp16, bf16, fp32, tf32"),
    ("sd15:fp32:0", "a batch of 1 or more"),
    ("sd15:fp32", "PRESET:PRECISION:BATCH expected"),
    ("sd51:fp32:1", "unknown preset 'sd51' \\(did you mean 'sd15'\\?\\)"),
])
def test_a_run_it_cannot_measure_is_refused_in_one_line(tmp_path, capsys, runs, message):
    with pytest.raises(SystemExit) as exit_info:
        gpu_cold_weights.main(["measure", "-o", str(tmp_path / "out.json"), "--runs", f"ldm4-lsun-bedrooms:fp32:1,{runs}"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "argument --runs:" in error and re.search(message, error)
    assert not (tmp_path / "out.json").exists()


def test_aliases_read_as_the_preset_they_name():
    assert gpu_cold_weights.run_list("sd1.5:fp16:4,ldm4-lsun-bedrooms:tf32:1") == [
        ("sd15", "fp16", 4), ("ldm4-lsun-bedrooms", "tf32", 1)]
