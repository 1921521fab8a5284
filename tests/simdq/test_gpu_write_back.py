"""benchmarks/gpu_write_back.py without a GPU: the write-back's energy per byte recovered from two variants'
energies, the prices it is set against, and files it cannot use refused in one line (exit code 2)."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import gpu_write_back  # noqa: E402
from gpu_write_back import FORMAT, L2_SPAN, buffers_for, write_back_rows  # noqa: E402
from hw_models import load_device  # noqa: E402
from hw_models.energy import MeasuredEnergy  # noqa: E402

ENERGY = MeasuredEnergy(90.0, {"fp16": 1.5}, 40.0, 130.0, "test", busy_w=95.0, launch_gap_s=1.3e-6,
                        l2_pj_per_byte=60.0, l2_bytes=50e6)
MB = 2 ** 20


def _measurements(write_back_pj: float, energy=ENERGY, sizes=(2 * MB, 8 * MB)) -> list:
    """What a GPU whose energy is `energy`'s, plus `write_back_pj` per byte a rotating add writes, would read."""
    rows = []
    for size in sizes:
        for variant, seconds in (("same", 3e-6 + size / 6e12), ("rotating", 3e-6 + size / 3e12),
                                 ("rotating", 3.1e-6 + size / 3e12), ("same", 2.9e-6 + size / 6e12)):
            joules = energy.price(gpu_write_back._actions(size, False), seconds)
            joules += size * write_back_pj * 1e-12 if variant == "rotating" else 0.0
            rows.append({"operand_bytes": size, "variant": variant, "sustained_s": seconds, "energy_j": joules})
    return rows


@pytest.mark.parametrize("write_back_pj", [0.0, 75.0, 130.0])
def test_the_write_back_per_byte_is_what_the_rotating_add_costs_past_static_and_busy_power(write_back_pj):
    rows = write_back_rows(_measurements(write_back_pj), ENERGY)
    assert [r["operand_bytes"] for r in rows] == [2 * MB, 8 * MB]
    for row in rows:
        assert row["write_back_pj_per_byte"] == pytest.approx(write_back_pj, abs=1e-6)
        assert row["same_priced_j"] == pytest.approx(row["same_j"])
        # the rotating add priced with its write-back at the DRAM's energy, and without it
        assert row["rotating_priced_j"] - row["rotating_unpriced_j"] == pytest.approx(
            row["operand_bytes"] * ENERGY.dram_pj_per_byte * 1e-12)
        assert row["rotating_unpriced_j"] == pytest.approx(row["rotating_j"] - row["operand_bytes"] * write_back_pj
                                                           * 1e-12)


def test_the_rotating_buffers_span_enough_l2_capacities_that_each_line_is_evicted_before_its_buffer_returns():
    for size in gpu_write_back.SIZES:
        buffers = buffers_for(size, 50 * MB)
        assert (buffers - 1) * size < L2_SPAN * 50 * MB <= buffers * size


def test_the_report_prices_each_size_against_the_device_file(tmp_path):
    path = tmp_path / "write-back.json"
    path.write_text(json.dumps({"format": FORMAT, "date": "2026-12-07", "gpu": "NVIDIA H100 80GB HBM3",
                                "torch": "2.11", "cuda": "13.0", "l2_bytes": 50 * MB,
                                "measurements": _measurements(120.0, load_device("h100").primary.energy)}))
    out = tmp_path / "write-back.md"
    assert gpu_write_back.main(["report", str(path), "--hw", "h100", "-o", str(out)]) == 0
    table = [line for line in out.read_text().splitlines() if line.startswith("| 2 MB") or line.startswith("| 8 MB")]
    priced = f" {load_device('h100').primary.energy.dram_pj_per_byte:.0f} pJ/byte |"
    assert len(table) == 2 and all(line.endswith(" 120 pJ/byte |" + priced) for line in table)


@pytest.mark.parametrize("content, hw, message", [
    ("{", "h100", "not a readable write-back measurement"),
    (json.dumps({"format": "other"}), "h100", "not a write-back measurement"),
    (json.dumps({"format": FORMAT, "measurements": [{"operand_bytes": 1, "variant": "same"}]}), "h100",
     "needs both a 'same' and a 'rotating' measurement"),
    (json.dumps({"format": FORMAT, "measurements": _measurements(0.0)}), "jetson",
     "not measured on the GPU"),
    (json.dumps({"format": FORMAT, "measurements": _measurements(0.0)}), "h1OO", "unknown device"),
])
def test_a_file_or_device_it_cannot_use_is_refused_in_one_line(tmp_path, capsys, content, hw, message):
    path = tmp_path / "write-back.json"
    path.write_text(content)
    assert gpu_write_back.main(["report", str(path), "--hw", hw, "-o", str(tmp_path / "out.md")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0]
    assert not (tmp_path / "out.md").exists()
