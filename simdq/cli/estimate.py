"""`simdq estimate MODEL.yaml --hw DEVICE`: the whole pipeline, model.yaml (or an artifact) -> traced layers
-> formats -> costs -> device time and energy -> a table, CSV, JSON, Markdown or LaTeX, and charts.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..scheme import CONVENTIONS
from .arguments import batch, steps

RENDER_FORMATS = ("table", "csv", "json", "markdown", "latex")


def add_parser(commands) -> None:
    estimate = commands.add_parser("estimate", help="per-layer and total cost of a quantized UNet on a device")
    estimate.add_argument("model", metavar="MODEL.yaml",
                          help="model, input, quantization scheme (see README), or an artifact of simdq calibrate")
    estimate.add_argument("--hw", required=True, metavar="DEVICE",
                          help="device name (simdq hw list) or a device .yaml file")
    estimate.add_argument("--per-layer", action="store_true", help="show every layer, not only the heaviest")
    estimate.add_argument("--format", default="table", choices=RENDER_FORMATS)
    estimate.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    estimate.add_argument("--batch", type=batch, help="override input.batch")
    estimate.add_argument("--steps", type=steps, help="override input.steps")
    estimate.add_argument("--convention", choices=CONVENTIONS, help="override the counting convention")
    estimate.add_argument("--plot", action="append", default=[], metavar="FILE",
                          help="write a chart: roofline.png (the device roofline, a point per layer) or "
                               "breakdown.png (per-layer time); repeatable; needs matplotlib")
    estimate.set_defaults(run=run)


def run_estimate(config, device, *, batch=None, steps=None, convention=None):
    """The simdq.cost.estimate.Estimate of model.yaml's model (a simdq.config.EstimateConfig) on `device`
    (a name or device file for hw_models.load_device, or a Device)."""
    from hw_models import Device, load_device

    from ..config import unet_spec
    from ..cost.estimate import estimate_layers, overridden_input
    from ..scheme.accumulators import device_accumulators
    from ..model.grouping import layers_of
    from ..model.unets import build_unet

    timings = {}
    started = time.perf_counter()
    run_input = overridden_input(config, batch, steps)
    device = device if isinstance(device, Device) else load_device(device)
    device_accumulators(device)  # a device file naming an unknown accumulator fails before the work
    spec = unet_spec(config)
    model = build_unet(spec)
    timings["model build"] = time.perf_counter() - started

    started = time.perf_counter()
    layers = layers_of(model, spec, run_input.batch, run_input.sample_size, run_input.context_length,
                       config.runtime.fused_attention)
    timings["tracing"] = time.perf_counter() - started
    return estimate_layers(layers, config, device, spec, run_input, convention or config.convention, timings)


def traced_layers(config, batch=None) -> list:
    """The layers of the model of model.yaml, traced at its input (or `batch`)."""
    from ..config import unet_spec
    from ..cost.estimate import overridden_input
    from ..model.grouping import layers_of
    from ..model.unets import build_unet

    spec = unet_spec(config)
    run_input = overridden_input(config, batch, None)
    return layers_of(build_unet(spec), spec, run_input.batch, run_input.sample_size, run_input.context_length,
                     config.runtime.fused_attention)


def artifact_config(directory: str):
    """The estimate config of a calibrated artifact: its model and scheme (checked as loading checks them)."""
    from ..calibrate.persist import check_artifact

    return check_artifact(directory)[1]


def run(args) -> int:
    from hw_models import load_device

    from ..config import load_config
    from ..output import check_output_file, write_text
    from ..report.render import render

    config = artifact_config(args.model) if Path(args.model).is_dir() else load_config(args.model)
    if args.output:
        check_output_file(args.output, "-o")
    if args.plot:
        from ..report.plots import chart_kind, check_plot_path

        for path in args.plot:  # a bad name fails before the work
            chart_kind(path)
            check_plot_path(path)
    device = load_device(args.hw)
    estimate = run_estimate(config, device, batch=args.batch, steps=args.steps, convention=args.convention)
    if args.plot:
        from ..report.plots import write_plots

        write_plots(estimate, device, args.plot)
    text = render(estimate, args.format, per_layer=args.per_layer)
    if args.output:
        write_text(args.output, text)
    else:
        sys.stdout.write(text)
    return 0
