"""The simdq command line: estimate a quantized UNet's cost, calibrate it, check parity, list devices and formats."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .accounting import CONVENTIONS
from .errors import SimdqError
from .text_table import text_table

RENDER_FORMATS = ("table", "csv", "json", "markdown", "latex")


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line and exit code 2, like every other bad input."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def _format_number(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def formats_table() -> str:
    from emulator import list_formats

    columns = ("name", "kind", "bits", "max_finite", "min_normal", "min_subnormal", "specials", "overflow")
    rows = [[_format_number(fmt.describe()[c]) for c in columns] for fmt in list_formats()]
    return text_table(columns, rows)


def devices_table() -> str:
    from hw_models import list_devices

    rows = []
    for device in list_devices():
        for index, (name, engine) in enumerate(device.engines.items()):
            if hasattr(engine, "rates"):
                peaks = ", ".join(f"{p} {v / 1e12:g}" for p, v in engine.rates.peaks.items())
            elif hasattr(engine, "macs_per_pe"):
                array = engine.rows * engine.cols * engine.clock_hz * 2 / 1e12
                peaks = ", ".join(f"{p} {array * r:g}" for p, r in engine.macs_per_pe.items()) + \
                    f" ({engine.rows}x{engine.cols} {engine.dataflow.replace('_', '-')})"
            else:
                peaks = f"binary {2 * engine.binary_macs_per_s / 1e12:g} (XNOR array)"
            first = index == 0
            rows.append([device.name if first else "", ", ".join(device.aliases) if first else "", name,
                         f"{engine.dram_bandwidth / 1e9:g} GB/s", peaks])
    return text_table(("name", "aliases", "engine", "DRAM", "dense peak T(FL)OP/s"), rows)


def _artifact_config(directory: str):
    """The estimate config of a calibrated artifact: its model and scheme (checked as loading checks them)."""
    from .artifact import check_tensors, read_metadata
    from .model_config import parse_config

    metadata = read_metadata(directory)
    check_tensors(directory, metadata)
    return parse_config({"model": metadata["model"], "quant": metadata["quant"]}, f"{directory}/quant.yaml")


def _estimate(args) -> int:
    from hw_models import load_device

    from .estimate import run_estimate
    from .model_config import load_config
    from .render import render

    config = _artifact_config(args.model) if Path(args.model).is_dir() else load_config(args.model)
    if args.plot:
        from .plots import chart_kind

        for path in args.plot:
            chart_kind(path)  # a bad name fails before the work
    device = load_device(args.hw)
    estimate = run_estimate(config, device, batch=args.batch, steps=args.steps, convention=args.convention)
    if args.plot:
        from .plots import write_plots

        write_plots(estimate, device, args.plot)
    text = render(estimate, args.format, per_layer=args.per_layer)
    if args.output:
        try:
            with open(args.output, "w") as handle:
                handle.write(text)
        except OSError as err:
            raise SimdqError(f"{args.output}: cannot write ({err.strerror})") from None
    else:
        sys.stdout.write(text)
    return 0


def _show_device(name: str) -> str:
    import yaml

    from hw_models import load_device

    return yaml.safe_dump(load_device(name).spec, sort_keys=False, width=120).rstrip()


def _calibrate(args) -> int:
    import yaml

    from .gpu_calibration import calibrate

    def progress(done, total):
        print(f"\rmicrobenchmarks {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)

    name = args.name or f"{args.base}-calibrated"
    layers = None
    if args.model:
        from .estimate import traced_layers
        from .model_config import load_config

        layers = traced_layers(load_config(args.model))
    spec = calibrate(args.device, args.base, name, quick=args.quick, progress=progress, model_layers=layers)
    try:
        with open(args.output, "w") as handle:
            yaml.safe_dump(spec, handle, sort_keys=False, width=120)
    except OSError as err:
        raise SimdqError(f"{args.output}: cannot write ({err.strerror})") from None
    classes = spec["engines"][spec["default_engine"]]["calibration"]["classes"]
    rows = [[c, f"{p['kernel_s'] * 1e6:.2f} us", p["efficiency"], p["memory_efficiency"],
             f"{p['tile_m']}x{p['tile_n']}", f"{p['median_error']:.1%}", p["samples"]] for c, p in classes.items()]
    print(text_table(("class", "kernel", "efficiency", "memory eff.", "tile", "median error", "samples"), rows))
    print(f"wrote {args.output}: use it with --hw {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="simdq", description=__doc__)
    parser.add_argument("--version", action="version", version=f"simdq {__version__}")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)
    commands.add_parser("formats", help="list every named number format with its range and special values")

    estimate = commands.add_parser("estimate", help="per-layer and total cost of a quantized UNet on a device")
    estimate.add_argument("model", metavar="MODEL.yaml",
                          help="model, input, quantization scheme (see README), or an artifact of simdq calibrate")
    estimate.add_argument("--hw", required=True, metavar="DEVICE",
                          help="device name (simdq hw list) or a device .yaml file")
    estimate.add_argument("--per-layer", action="store_true", help="show every layer, not only the heaviest")
    estimate.add_argument("--format", default="table", choices=RENDER_FORMATS)
    estimate.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    estimate.add_argument("--batch", type=_positive, help="override input.batch")
    estimate.add_argument("--steps", type=_positive, help="override input.steps")
    estimate.add_argument("--convention", choices=CONVENTIONS, help="override the counting convention")
    estimate.add_argument("--plot", action="append", default=[], metavar="FILE",
                          help="write a chart: roofline.png (the device roofline, a point per layer) or "
                               "breakdown.png (per-layer time); repeatable; needs matplotlib")

    calibrate_cmd = commands.add_parser("calibrate", help="quantize and calibrate a UNet, write the artifact")
    calibrate_cmd.add_argument("model", metavar="MODEL.yaml", help="model and quantization scheme (see README)")
    calibrate_cmd.add_argument("-o", "--output", required=True, metavar="ART_DIR", help="artifact directory to write")
    calibrate_cmd.add_argument("--samples", type=_positive, default=8, help="DDIM trajectories (default 8)")
    calibrate_cmd.add_argument("--steps", type=_positive, default=10, help="DDIM steps per trajectory (default 10)")
    calibrate_cmd.add_argument("--calibrator", choices=("minmax", "percentile", "mse"), default="minmax")
    calibrate_cmd.add_argument("--timestep-groups", default="per_step", metavar="per_step|merged|N",
                               help="activation ranges per DDIM step, one merged range, or N timestep bins")
    calibrate_cmd.add_argument("--checkpoint", metavar="DIR", help="a local diffusers UNet (save_pretrained) to quantize")
    calibrate_cmd.add_argument("--calib-data", metavar="FILE", help="safetensors file with 'latents' to start from")
    calibrate_cmd.add_argument("--seed", type=int, default=0)
    calibrate_cmd.add_argument("--batch", type=_positive, default=8, help="trajectories per UNet call")

    parity = commands.add_parser("parity", help="bit-for-bit checks against other implementations")
    parity_commands = parity.add_subparsers(dest="parity_command", parser_class=_Parser)
    refs = parity_commands.add_parser(
        "refs", help="which named convention each installed reference (ml_dtypes, torch, torchao, gfloat) implements")
    refs.add_argument("--format", default="table", choices=("table", "markdown", "json"))
    refs.add_argument("--examples", type=_non_negative, default=200,
                      help="hypothesis examples per convention after the boundary cases (default 200; 0: boundaries only)")
    refs.add_argument("--only", action="append", metavar="GLOB",
                      help="only references whose id matches, e.g. 'torch: quantize*' (repeatable)")
    refs.add_argument("--progress", action="store_true", help="show which reference runs, on stderr")

    hw = commands.add_parser("hw", help="device models")
    hw_commands = hw.add_subparsers(dest="hw_command", parser_class=_Parser)
    hw_commands.add_parser("list", help="list the devices in the catalogue")
    show = hw_commands.add_parser("show", help="print a device's file, every number with its source")
    show.add_argument("device", metavar="DEVICE", help="device name or .yaml file")
    calibrate = hw_commands.add_parser("calibrate", help="fit the calibrated GPU model on a real device")
    calibrate.add_argument("--device", default="cuda", help="torch device to measure (default: cuda)")
    calibrate.add_argument("-o", "--output", required=True, metavar="FILE", help="device .yaml to write")
    calibrate.add_argument("--base", default="h100-sxm", metavar="DEVICE",
                           help="catalogue device whose peaks and bandwidth the fit starts from")
    calibrate.add_argument("--name", help="name of the new device (default: BASE-calibrated)")
    calibrate.add_argument("--quick", action="store_true", help="a few small shapes (to test the pipeline)")
    calibrate.add_argument("--model", metavar="MODEL.yaml",
                           help="time the conv, linear and attention shapes of this model instead of the default grid")
    return parser


def main(argv=None) -> int:
    from hw_models import DeviceFileError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "formats":
            print(formats_table())
        elif args.command == "estimate":
            return _estimate(args)
        elif args.command == "calibrate":
            from .calibrate_command import run_calibrate

            return run_calibrate(args)
        elif args.command == "parity" and args.parity_command == "refs":
            from .parity.command import run_parity_refs

            return run_parity_refs(args)
        elif args.command == "hw" and args.hw_command == "list":
            print(devices_table())
        elif args.command == "hw" and args.hw_command == "show":
            print(_show_device(args.device))
        elif args.command == "hw" and args.hw_command == "calibrate":
            return _calibrate(args)
        else:
            parser.print_help()
    except (SimdqError, DeviceFileError) as err:
        print(f"simdq: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
