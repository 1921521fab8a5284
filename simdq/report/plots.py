"""Charts of an estimate: the device's roofline with every layer as a point, and a per-layer time breakdown."""

from __future__ import annotations

from pathlib import Path

from ..errors import SimdqError
from ..output import check_output_file, replacing

CHARTS = ("roofline", "breakdown")
KIND_COLOURS = {"conv": "tab:blue", "linear": "tab:orange", "attention_matmul": "tab:red", "norm": "tab:green",
                "softmax": "tab:purple", "elementwise": "tab:gray", "resample": "tab:brown", "concat": "tab:pink",
                "embedding": "tab:olive"}
BOTTLENECK_COLOURS = {"compute": "tab:blue", "memory": "tab:orange", "overhead": "tab:gray"}


def chart_kind(path: str) -> str:
    name = Path(path).name.lower()
    kinds = [kind for kind in CHARTS if kind in name]
    if len(kinds) != 1:
        raise SimdqError(f"--plot {path}: the file name must say which chart it is: one of {', '.join(CHARTS)} "
                         "(e.g. roofline.png, breakdown.pdf)")
    return kinds[0]


def check_plot_path(path: str, what: str = "--plot") -> None:
    """A chart file matplotlib can write, in a folder that exists: checked before the work."""
    _pyplot(what)  # matplotlib present, or one line saying how to get it
    from matplotlib.backend_bases import FigureCanvasBase

    suffix = Path(path).suffix.lower().lstrip(".")
    supported = FigureCanvasBase.get_supported_filetypes()
    if suffix not in supported:
        raise SimdqError(f"{what} {path}: unknown chart format {suffix or '(none)'!r}; allowed: "
                         f"{', '.join(sorted(supported))}")
    check_output_file(path, what)


def save_figure(figure, path: str, what: str = "--plot") -> None:
    """Write a matplotlib figure atomically, in the format its suffix names, and close it."""
    import matplotlib.pyplot as plt

    try:
        with replacing(path, what) as temporary:
            figure.savefig(temporary, format=Path(path).suffix.lstrip(".").lower(), dpi=150)
    finally:
        plt.close(figure)


def _pyplot(what: str = "--plot"):
    try:
        import matplotlib
    except ImportError:
        raise SimdqError(f"{what} needs matplotlib: pip install 'simdq[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def roofline_points(estimate):
    """(arithmetic intensity in ops/byte, achieved ops/s, kind) of every layer that moves data."""
    points = []
    for result in estimate.layers:
        if result.device is None or not result.device.latency_s:
            continue
        layer, cost = result.layer, result.cost
        ops = 2 * layer.macs + layer.vector_flops
        traffic = cost.weight_bytes + cost.read_bytes + cost.write_bytes  # the DRAM traffic the device priced
        if ops and traffic:
            points.append((ops / traffic, ops / result.device.latency_s, layer.kind))
    return points


def plot_roofline(estimate, device, path: str) -> None:
    plt = _pyplot()
    engine = device.primary
    figure, axes = plt.subplots(figsize=(8, 5.5))
    points = roofline_points(estimate)
    intensities = [p[0] for p in points] or [1.0]
    low, high = min(intensities) / 2, max(intensities) * 2
    bandwidth = engine.dram_bandwidth
    peaks = engine.describe().peaks
    for precision, peak in sorted(peaks.items(), key=lambda item: item[1]):
        ridge = peak / bandwidth
        xs = [low, max(min(ridge, high), low), high]
        axes.plot(xs, [min(peak, x * bandwidth) for x in xs], linewidth=1, label=f"{precision} {peak / 1e12:g} T/s")
    for kind, colour in KIND_COLOURS.items():
        chosen = [p for p in points if p[2] == kind]
        if chosen:
            axes.scatter([p[0] for p in chosen], [p[1] for p in chosen], s=12, color=colour, label=kind, alpha=0.8)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("arithmetic intensity (ops / DRAM byte)")
    axes.set_ylabel("achieved ops / s")
    axes.set_title(f"{estimate.model} on {estimate.device} ({device.order[0]} engine roofline)")
    axes.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    save_figure(figure, path)


def breakdown_bars(estimate, count: int = 40) -> list:
    """(label, latency in us, bottleneck) of the `count` slowest layers, slowest first: the chart's bars
    from the top down."""
    timed = [r for r in estimate.layers if r.device is not None and r.device.latency_s]
    heaviest = sorted(timed, key=lambda r: -r.device.latency_s)[:count]
    return [(f"{r.layer.name} [{r.layer.kind}]", r.device.latency_s * 1e6, r.device.bottleneck) for r in heaviest]


def plot_breakdown(estimate, path: str, count: int = 40) -> list:
    """Writes the chart; returns its bar labels as drawn, from the top down."""
    plt = _pyplot()
    timed = [r for r in estimate.layers if r.device is not None and r.device.latency_s]
    bars = breakdown_bars(estimate, count)
    figure, axes = plt.subplots(figsize=(8, 0.22 * len(bars) + 1.5))
    # barh draws its first bar at the bottom: reversed, the slowest layer is on top
    names = [label for label, _, _ in bars][::-1]
    times = [time_us for _, time_us, _ in bars][::-1]
    colours = [BOTTLENECK_COLOURS[bottleneck] for _, _, bottleneck in bars][::-1]
    axes.barh(names, times, color=colours)
    axes.set_xlabel("latency per forward (us)")
    total = sum(r.device.latency_s for r in timed)
    axes.set_title(f"{estimate.model} on {estimate.device}: {len(bars)} slowest of {len(timed)} layers, "
                   f"{total * 1e3:.2f} ms in all", fontsize=9)
    from matplotlib.patches import Patch

    axes.legend(handles=[Patch(color=c, label=f"{b}-bound") for b, c in BOTTLENECK_COLOURS.items()], fontsize=7,
                loc="lower right")
    axes.tick_params(axis="y", labelsize=6)
    figure.tight_layout()
    drawn = [label.get_text() for label in axes.get_yticklabels()][::-1]
    save_figure(figure, path)
    return drawn


def write_plots(estimate, device, paths) -> None:
    for path in paths:
        if chart_kind(path) == "roofline":
            plot_roofline(estimate, device, path)
        else:
            plot_breakdown(estimate, path)
