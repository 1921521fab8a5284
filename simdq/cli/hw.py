"""`simdq hw list | show | calibrate`: the device catalogue, one device's file, and fitting the calibrated
GPU model on a real device from microbenchmarks (simdq.microbench).
"""

from __future__ import annotations

import sys

from ..report.tables import text_table
from .arguments import Parser, integer


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
    calibrate.add_argument("--record", metavar="FILE.json",
                           help="also write every measurement (times, energy, idle power), to refit with `hw fit`")
    calibrate.add_argument("--no-energy", action="store_true",
                           help="time only: skip reading the GPU's energy counter (NVML)")
    calibrate.set_defaults(run=run_calibrate)
    fit = hw_commands.add_parser("fit", help="fit a calibrated device file from a `hw calibrate --record` file")
    fit.add_argument("record", metavar="RECORD.json")
    fit.add_argument("-o", "--output", required=True, metavar="FILE", help="device .yaml to write")
    fit.add_argument("--base", metavar="DEVICE", help="catalogue device the fit starts from (default: the record's)")
    fit.add_argument("--name", help="name of the new device (default: BASE-calibrated)")
    fit.add_argument("--conv-algorithms", metavar="SURVEY.json", action="append",
                     help="a benchmarks/gpu_conv_algorithms.py survey of the same GPU (repeatable: 3x3 and 1x1 "
                          "apart): record the convolutions cuDNN runs as an FFT and fit their class; fit the conv "
                          "and pointwise classes on its other convolutions too")
    fit.set_defaults(run=run_fit)
    quality = hw_commands.add_parser("crossval", help="how well a record's fit predicts microbenchmarks it was "
                                     "fitted without (k-fold), and another record's")
    quality.add_argument("record", metavar="RECORD.json")
    quality.add_argument("--against", metavar="RECORD.json",
                         help="also predict this record's microbenchmarks (another GPU, another day)")
    quality.add_argument("--folds", type=integer(2, 20), default=5, help="folds per class (default: 5)")
    quality.add_argument("--base", metavar="DEVICE",
                         help="catalogue device the fit starts from (default: the record's)")
    quality.add_argument("--without-transforms", action="store_true",
                         help="fit convolutions without cuDNN's layout transforms, their time and the bytes they "
                         "move (the model before them)")
    quality.add_argument("--without-strided-energy", action="store_true",
                         help="fit energy without the strided classes' extra per byte (the model before it)")
    quality.add_argument("--energy-relative-to-measurement", action="store_true",
                         help="fit energy with each error relative to its measurement alone, which leans low (the "
                         "model before the symmetric fit)")
    quality.add_argument("--conv-algorithms", metavar="SURVEY.json", action="append",
                         help="fit the conv and pointwise classes on this survey's convolutions too (they join "
                         "the record's samples, in the folds as well; repeatable)")
    quality.set_defaults(run=run_crossval)


def _model_of(device) -> str:
    """calibrated or roofline, and the energy model: a column of `hw list`."""
    energy = device.primary.energy
    energy_text = "no energy" if energy is None else ("energy measured" if "measured" in energy.kind else
                                                       "energy: dynamic only, node table")
    calibrated = hasattr(device.primary, "classes")
    return f"{'calibrated' if calibrated else 'roofline'}, {energy_text}"


def _calibration_notes(devices) -> list:
    notes = []
    for device in devices:
        for engine in device.spec.get("engines", {}).values():
            calibration = engine.get("calibration")
            if calibration:
                notes.append(f"{device.name}: {calibration['source']}; "
                             f"{calibration.get('validation', 'not validated on whole models')}; "
                             f"its plain roofline: --hw {device.name}-roofline")
    return notes


def devices_table() -> str:
    from hw_models import list_devices

    rows = []
    devices = list_devices()
    for device in devices:
        for index, (name, engine) in enumerate(device.engines.items()):
            description = engine.describe()
            first = index == 0
            rows.append([device.name if first else "", ", ".join(device.aliases) if first else "", name,
                         f"{engine.dram_bandwidth / 1e9:g} GB/s", description.peaks_text,
                         _model_of(device) if first else ""])
    table = text_table(("name", "aliases", "engine", "DRAM", "dense peak T(FL)OP/s", "model"), rows)
    return "\n".join([table, ""] + _calibration_notes(devices))


def device_file(name: str) -> str:
    import yaml

    from hw_models import load_device

    from ..scheme.accumulators import device_accumulators

    device = load_device(name)
    device_accumulators(device)
    return yaml.safe_dump(device.spec, sort_keys=False, width=120).rstrip()


def _write_fitted(record: dict, base_name: str, name: str, output: str, survey_paths: list = None) -> int:
    import yaml

    from hw_models import load_device

    from ..microbench import calibrated_spec, tiling_label
    from ..microbench.conv_algorithms import (add_fft_calibration, fft_calibration, read_surveys,
                                              with_survey_convolutions)
    from ..output import write_text

    base = load_device(base_name)
    survey = read_surveys(survey_paths) if survey_paths else None
    fft = (fft_calibration(survey, " ".join(survey_paths), base.primary.dram_bandwidth, record["sms"]) if survey
           else None)
    if survey:
        record = with_survey_convolutions(record, survey)
    spec = calibrated_spec(base, record, name or f"{base_name}-calibrated")
    calibration = spec["engines"][spec["default_engine"]]["calibration"]
    if fft:
        add_fft_calibration(calibration, fft)
    write_text(output, yaml.safe_dump(spec, sort_keys=False, width=120))
    rows = [[c, f"{p['kernel_s'] * 1e6:.2f} us", p["efficiency"], p["memory_efficiency"],
             tiling_label(p), p.get("transform_efficiency") or "-",
             f"{p['median_error']:.1%}", p["samples"]] for c, p in calibration["classes"].items()]
    print(text_table(("class", "kernel", "efficiency", "memory eff.", "tile", "transforms", "median error",
                      "samples"), rows))
    print(f"wrote {output}: use it with --hw {output}")
    return 0


def run_calibrate(args) -> int:
    import json

    from ..config import load_config
    from ..microbench import measure_device
    from ..output import check_output_file, write_text
    from .estimate import traced_layers

    def progress(done, total, record):
        print(f"\rmicrobenchmarks {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)
        if args.record and done % 25 == 0:  # what a run cut short had measured is kept
            write_text(args.record, json.dumps(record, indent=1))

    check_output_file(args.output, "-o")  # before minutes of microbenchmarks
    if args.record:
        check_output_file(args.record, "--record")
    layers = traced_layers(load_config(args.model)) if args.model else None
    record = measure_device(args.device, args.base, quick=args.quick, progress=progress, model_layers=layers,
                            energy=not args.no_energy)
    if args.record:
        write_text(args.record, json.dumps(record, indent=1))
    return _write_fitted(record, args.base, args.name, args.output)


def run_fit(args) -> int:
    from ..microbench import read_record
    from ..output import check_output_file

    check_output_file(args.output, "-o")
    record = read_record(args.record)
    return _write_fitted(record, args.base or record["base"], args.name, args.output, args.conv_algorithms)


def run_crossval(args) -> int:
    from hw_models import load_device

    from ..errors import SimdqError
    from ..microbench import read_record
    from ..microbench.conv_algorithms import read_surveys, with_survey_convolutions
    from ..microbench.quality import fit_quality

    record = read_record(args.record)
    if args.conv_algorithms:
        record = with_survey_convolutions(record, read_surveys(args.conv_algorithms))
    against = read_record(args.against) if args.against else None
    base = load_device(args.base or record["base"])
    try:
        rows, summary = fit_quality(record, base, args.folds, against, transforms=not args.without_transforms,
                                    strided_energy=not args.without_strided_energy,
                                    symmetric_energy=not args.energy_relative_to_measurement)
    except SimdqError as err:
        raise SimdqError(f"{args.record}: {err}") from None
    percent = lambda value: "-" if value != value else f"{value:.1%}"  # noqa: E731  (nan: nothing to predict)
    header = ("class", "samples", "in sample", f"held out ({args.folds}-fold)",
              *(("fit predicting --against",) if against else ()))
    keep = len(header)
    print(text_table(header, [[*row[:2], *map(percent, row[2:])][:keep] for row in rows]))
    print(text_table(("median |error| of", *header[1:]),
                     [[group, values[0], *map(percent, values[1:])][:keep] for group, values in summary.items()]))
    return 0
