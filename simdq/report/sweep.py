"""A sweep's table (simdq.sweep.table's DataFrame) as text, Markdown, CSV or Parquet, and its Pareto charts:
latency vs size and energy vs quality, the frontier marked, a colour per device."""

from __future__ import annotations

import io
import math

from ..output import replacing
from .plots import _pyplot, save_figure
from .render import human
from .tables import markdown_table, text_table

_SHOWN = (("preset", None), ("scheme", None), ("policy", None), ("device", None), ("batch", None),
          ("steps", None), ("size_mib", "mib"), ("ops_per_image", "count"), ("latency_per_image_s", "seconds"),
          ("energy_per_image_j", "joules"), ("sqnr_db", "db"), ("error", None))
_HEADERS = {"size_mib": "size", "ops_per_image": "OPs/image", "latency_per_image_s": "latency/image",
            "energy_per_image_j": "energy/image", "sqnr_db": "SQNR"}


def _cell(value, unit, isna):
    if isna(value):
        return "-"
    if unit == "db":
        return f"{value:.1f} dB"
    return human(value, unit) if unit else str(value)


def _shown(frame):
    from pandas import isna

    columns = list(_SHOWN)
    if (frame["kind"] == "quality").any():
        columns.insert(0, ("kind", None))
    rows = [[_cell(record[c], unit, isna) for c, unit in columns] for record in frame.to_dict("records")]
    return [_HEADERS.get(c, c) for c, _ in columns], rows


def render_sweep(frame, fmt: str) -> str:
    """Text or Markdown: the axes and headline numbers; CSV: every column."""
    if fmt == "csv":
        buffer = io.StringIO()
        frame.to_csv(buffer, index=False)
        return buffer.getvalue()
    header, rows = _shown(frame)
    return (markdown_table(header, rows) if fmt == "markdown" else text_table(header, rows)) + "\n"


def write_sweep(frame, path, fmt: str) -> None:
    """The table to `path`, atomically; Parquet keeps every column and dtype."""
    if fmt == "parquet":
        with replacing(path, "-o") as temporary:
            frame.to_parquet(temporary, index=False)
        return
    with replacing(path, "-o") as temporary:
        temporary.write_text(render_sweep(frame, fmt))


def pareto_mask(xs, ys, maximize_y: bool = False) -> list:
    """True where no other point is at least as good on both axes and better on one (smaller x; smaller y, or
    larger with maximize_y). NaN points are never on the frontier. One sort, then one pass: O(n log n), for
    sweeps of any size."""
    sign = -1.0 if maximize_y else 1.0
    valid = [i for i, (x, y) in enumerate(zip(xs, ys)) if not (math.isnan(x) or math.isnan(y))]
    order = sorted(valid, key=lambda i: (xs[i], sign * ys[i]))
    mask, best, start = [False] * len(xs), math.inf, 0
    while start < len(order):  # points of equal x: only those at the group's best y can be on the frontier
        end = start
        while end < len(order) and xs[order[end]] == xs[order[start]]:
            end += 1
        lowest = sign * ys[order[start]]
        if lowest < best:
            for i in order[start:end]:
                mask[i] = sign * ys[i] == lowest
            best = lowest
        start = end
    return mask


def _panel(axes, frame, x, y, maximize_y, xlabel, ylabel, title):
    import numpy as np

    data = frame[frame[x].notna() & frame[y].notna()]
    if data.empty:
        axes.text(0.5, 0.5, f"no points with {xlabel} and {ylabel}", ha="center", va="center", fontsize=8,
                  transform=axes.transAxes)
        axes.set_title(title, fontsize=9)
        return []
    xs, ys = data[x].to_numpy(float), data[y].to_numpy(float)
    colours = {device: f"C{i % 10}" for i, device in enumerate(dict.fromkeys(data["device"]))}
    for device, colour in colours.items():
        chosen = (data["device"] == device).to_numpy()
        axes.scatter(xs[chosen], ys[chosen], s=18, color=colour, label=device, alpha=0.8)
    front = np.array(pareto_mask(xs, ys, maximize_y))
    order = np.argsort(xs[front])
    axes.plot(xs[front][order], ys[front][order], "k--", linewidth=0.8, drawstyle="steps-post", label="Pareto frontier")
    axes.scatter(xs[front], ys[front], s=60, facecolors="none", edgecolors="black", linewidths=1.0)
    positive = (xs > 0).all()
    if positive and xs.max() / max(xs.min(), 1e-300) > 100:
        axes.set_xscale("log")
    if not maximize_y and (ys > 0).all() and ys.max() / max(ys.min(), 1e-300) > 100:
        axes.set_yscale("log")
    axes.set_xlabel(xlabel, fontsize=8)
    axes.set_ylabel(ylabel, fontsize=8)
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=6)
    return list(data["key"][front])


def plot_pareto(frame, path: str) -> dict:
    """Writes the two panels; returns the keys on each frontier ({"latency_size": [...], "energy_quality": [...]})."""
    plt = _pyplot()
    estimates = frame[frame["kind"] == "estimate"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    fronts = {
        "latency_size": _panel(left, estimates, "size_mib", "latency_per_image_s", False, "size (MiB)",
                               "latency per image (s)", "latency vs size"),
        "energy_quality": _panel(right, estimates, "energy_per_image_j", "sqnr_db", True, "energy per image (J)",
                                 "SQNR vs full precision (dB)", "quality vs energy"),
    }
    figure.tight_layout()
    save_figure(figure, path)
    return fronts
