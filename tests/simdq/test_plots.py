"""--plot: both charts are written, and no layer sits above the device's roofline."""

from pathlib import Path

import pytest

from hw_models import load_device
from simdq.cli import main
from simdq.cli.estimate import run_estimate
from simdq.config import load_config
from simdq.report.plots import roofline_points

EXAMPLE = str(Path(__file__).parents[2] / "examples" / "ldm4-bedrooms-w1a4.yaml")


def test_both_charts_are_written(tmp_path, capsys):
    roofline, breakdown = tmp_path / "roofline.png", tmp_path / "layer-breakdown.png"
    assert main(["estimate", EXAMPLE, "--hw", "jetson", "--plot", str(roofline), "--plot", str(breakdown)]) == 0
    for path in (roofline, breakdown):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_a_chart_name_must_say_which_chart(tmp_path, capsys):
    assert main(["estimate", EXAMPLE, "--hw", "jetson", "--plot", str(tmp_path / "chart.png")]) == 2
    assert "must say which chart it is: one of roofline, breakdown" in capsys.readouterr().err


@pytest.mark.parametrize("hw", ["jetson", "h100"])
def test_no_layer_above_the_roofline(hw):
    device = load_device(hw)
    estimate = run_estimate(load_config(EXAMPLE), device)
    engine = device.primary
    peak = max(list(engine.rates.peaks.values()) + [engine.rates.vector_peak])
    points = roofline_points(estimate)
    assert len(points) > 100
    for intensity, achieved, kind in points:
        assert achieved <= min(peak, intensity * engine.dram_bandwidth) * (1 + 1e-9), kind


def test_breakdown_draws_the_slowest_layers_slowest_on_top(tmp_path):
    pytest.importorskip("matplotlib")
    from simdq.report.plots import plot_breakdown

    estimate = run_estimate(load_config(EXAMPLE), load_device("jetson"))
    timed = sorted((r for r in estimate.layers if r.device is not None and r.device.latency_s),
                   key=lambda r: r.device.latency_s, reverse=True)
    drawn = plot_breakdown(estimate, str(tmp_path / "breakdown.png"), count=12)
    assert drawn == [f"{r.layer.name} [{r.layer.kind}]" for r in timed[:12]]
    latencies = {f"{r.layer.name} [{r.layer.kind}]": r.device.latency_s for r in timed}
    assert [latencies[label] for label in drawn] == sorted((latencies[label] for label in drawn), reverse=True)
    assert latencies[drawn[-1]] >= timed[12].device.latency_s
