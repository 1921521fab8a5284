"""`simdq parity model` output: per layer, where the device's arithmetic departs from exact and by how much;
per step, the output against full precision and the fake-quantized UNet; and the trajectories' final latents.
A text table, Markdown or JSON; and a chart of SQNR per layer and per step."""

from __future__ import annotations

import json
import math

from .tables import markdown_table, text_table

LAYER_COLUMNS = ("layer", "kernel", "accumulator", "(a) checked", "(a) mismatched", "(b) max |diff|",
                 "(b) ULPs 0/1/2+", "(b) SQNR dB", "(c) max diff / bound")
STEP_COLUMNS = ("timestep", "vs full precision: MSE", "cosine", "SQNR dB", "vs fake-quant: SQNR dB", "max |diff|")


def _db(value: float) -> str:
    return "exact" if value == math.inf else f"{value:.1f}"


def _layer_row(row) -> list:
    ulps = row.ulps
    beyond = sum(v for k, v in ulps.items() if k not in ("0", "1"))
    return [row.name, row.kernel, row.accumulator, row.checked, row.mismatched, f"{row.max_abs_diff:.3g}",
            f"{ulps.get('0', 0)}/{ulps.get('1', 0)}/{beyond}", _db(row.sqnr_db), f"{row.fake_max_ratio:.3f}"]


def _step_row(entry) -> list:
    fp = entry.get("vs_full_precision")
    fake = entry["vs_fake_quant"]
    return [entry["timestep"], f"{fp['mse']:.3g}" if fp else "-", f"{fp['cosine']:.5f}" if fp else "-",
            _db(fp["sqnr_db"]) if fp else "-", _db(fake["sqnr_db"]), f"{fake['max_abs_diff']:.3g}"]


def headline(report) -> list:
    rows = report.layers
    mismatched = sum(r.mismatched for r in rows)
    outside = sum(r.fake_outside for r in rows)
    moved = [r for r in rows if r.noise > 0]
    lines = [f"{report.artifact} on {report.device}: {len(rows)} emulated GEMMs, {report.steps} DDIM steps, seed "
             f"{report.seed}",
             f"(a) emulator against its references: {sum(r.checked for r in rows)} outputs checked, "
             f"{mismatched} mismatched",
             "(b) device arithmetic against exact accumulation: " + (
                 "every accumulator is exact" if report.exact_everywhere else
                 f"{len(moved)} of {len(rows)} layers differ; lowest SQNR " + (
                     ", ".join(f"{r.name} {_db(r.sqnr_db)} dB" for r in sorted(moved, key=lambda r: r.sqnr_db)[:3])
                     if moved else "none")),
             f"(c) exact emulation against torch fake-quant: largest difference "
             f"{max((r.fake_max_ratio for r in rows), default=0):.3f} of the float32 bound, {outside} outputs past it",
             f"full-precision reference: {report.reference}"]
    return lines


def render(report, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report.as_dict(), indent=2, default=_plain) + "\n"
    table = markdown_table if fmt == "markdown" else text_table
    trajectory_rows = [[name, f"{c['mse']:.3g}", f"{c['cosine']:.5f}", _db(c["sqnr_db"])]
                       for name, c in report.trajectories.items()]
    parts = ["\n".join(headline(report)),
             table(LAYER_COLUMNS, [_layer_row(r) for r in report.layers]),
             table(STEP_COLUMNS, [_step_row(e) for e in report.per_step]),
             table(("final latents", "MSE", "cosine", "SQNR dB"), trajectory_rows)]
    return "\n\n".join(parts) + "\n"


def _plain(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def plot_parity(report, path: str) -> None:
    """SQNR of the device's arithmetic against exact per layer, and of the output per step."""
    from .plots import _pyplot, save_figure

    plt = _pyplot()
    figure, (layers, steps) = plt.subplots(1, 2, figsize=(14, 4.5), gridspec_kw={"width_ratios": [3, 1]})
    finite = [r.sqnr_db if math.isfinite(r.sqnr_db) else None for r in report.layers]
    cap = max([v for v in finite if v is not None], default=100.0) + 10
    layers.bar(range(len(report.layers)), [cap if v is None else v for v in finite],
               color=["tab:gray" if v is None else "tab:blue" for v in finite])
    layers.set_xlabel("emulated GEMM (model order; grey: identical to exact)")
    layers.set_ylabel("SQNR vs exact accumulation (dB)")
    layers.set_title(f"(b) {report.device}: device arithmetic against exact")
    timesteps = [e["timestep"] for e in report.per_step]
    for key, label in (("vs_full_precision", "vs full precision"), ("vs_fake_quant", "vs fake-quant")):
        values = [e[key]["sqnr_db"] for e in report.per_step if key in e]
        if values:
            steps.plot(timesteps[:len(values)], [min(v, 200) for v in values], marker="o", label=label)
    steps.invert_xaxis()
    steps.set_xlabel("timestep")
    steps.set_ylabel("output SQNR (dB)")
    steps.legend()
    figure.tight_layout()
    save_figure(figure, path)
