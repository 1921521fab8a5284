"""`simdq hw list | show | calibrate`: the device catalogue, one device's file, and fitting the calibrated
GPU model on a real device from microbenchmarks (simdq.microbench).
"""

from __future__ import annotations

import sys

from ..report.tables import text_table
from .arguments import Parser


def add_parser(commands) -> None:
    hw = commands.add_parser("hw", help="device models")
    hw_commands = hw.add_subparsers(dest="hw_command", parser_class=Parser)
    hw_commands.add_parser("list", help="list the devices in the catalogue").set_defaults(
        run=lambda args: print(devices_table()))
    show = hw_commands.add_parser("show", help="print a device's file, every number with its source")
    show.add_argument("device", metavar="DEVICE", help="device name or .yaml file")
    show.set_defaults(run=lambda args: print(device_file(args.device)))
    calibrate = hw_commands.add_parser("calibrate", help="fit the calibrated GPU model on a real device")
    calibrate.add_argument("--device", default="cuda", help="torch device to measure (default: cuda)")
    calibrate.add_argument("-o", "--output", required=True, metavar="FILE", help="device .yaml to write")
    calibrate.add_argument("--base", default="h100-sxm", metavar="DEVICE",
                           help="catalogue device whose peaks and bandwidth the fit starts from")
    calibrate.add_argument("--name", help="name of the new device (default: BASE-calibrated)")
    calibrate.add_argument("--quick", action="store_true", help="a few small shapes (to test the pipeline)")
    calibrate.add_argument("--model", metavar="MODEL.yaml",
                           help="time the conv, linear and attention shapes of this model instead of the default grid")
    calibrate.set_defaults(run=run_calibrate)


def devices_table() -> str:
    from hw_models import list_devices

    rows = []
    for device in list_devices():
        for index, (name, engine) in enumerate(device.engines.items()):
            description = engine.describe()
            first = index == 0
            rows.append([device.name if first else "", ", ".join(device.aliases) if first else "", name,
                         f"{engine.dram_bandwidth / 1e9:g} GB/s", description.peaks_text])
    return text_table(("name", "aliases", "engine", "DRAM", "dense peak T(FL)OP/s"), rows)


def device_file(name: str) -> str:
    import yaml

    from hw_models import load_device

    from ..scheme.accumulators import device_accumulators

    device = load_device(name)
    device_accumulators(device)
    return yaml.safe_dump(device.spec, sort_keys=False, width=120).rstrip()


def run_calibrate(args) -> int:
    import yaml

    from ..config import load_config
    from ..microbench import fit_device
    from ..output import check_output_file, write_text
    from .estimate import traced_layers

    def progress(done, total):
        print(f"\rmicrobenchmarks {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)

    check_output_file(args.output, "-o")  # before minutes of microbenchmarks
    name = args.name or f"{args.base}-calibrated"
    layers = traced_layers(load_config(args.model)) if args.model else None
    spec = fit_device(args.device, args.base, name, quick=args.quick, progress=progress, model_layers=layers)
    write_text(args.output, yaml.safe_dump(spec, sort_keys=False, width=120))
    classes = spec["engines"][spec["default_engine"]]["calibration"]["classes"]
    rows = [[c, f"{p['kernel_s'] * 1e6:.2f} us", p["efficiency"], p["memory_efficiency"],
             f"{p['tile_m']}x{p['tile_n']}", f"{p['median_error']:.1%}", p["samples"]] for c, p in classes.items()]
    print(text_table(("class", "kernel", "efficiency", "memory eff.", "tile", "median error", "samples"), rows))
    print(f"wrote {args.output}: use it with --hw {args.output}")
    return 0
