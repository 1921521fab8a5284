"""`simdq parity model` (a calibrated UNet on the emulator against exact arithmetic, torch fake-quant and full
precision) and `simdq parity refs` (which named convention each installed reference implements)."""

from __future__ import annotations

import sys
from fnmatch import fnmatchcase

from ..errors import SimdqError
from .arguments import Parser, integer, seed
from .emulated import add_arithmetic_arguments, load_model, quiet_thread_pools, schedule

MAX_EXAMPLES = 10**6  # hypothesis cases per property or reference
MAX_PARITY_SAMPLES = 2**20  # outputs of a layer checked against the plain reference


def add_parser(commands) -> None:
    parity = commands.add_parser("parity", help="bit-for-bit checks against other implementations")
    parity_commands = parity.add_subparsers(dest="parity_command", parser_class=Parser)
    refs = parity_commands.add_parser(
        "refs", help="which named convention each installed reference (ml_dtypes, torch, torchao, gfloat) implements")
    refs.add_argument("--format", default="table", choices=("table", "markdown", "json"))
    refs.add_argument("--examples", type=integer(0, MAX_EXAMPLES), default=200,
                      help="hypothesis examples per convention after the boundary cases (default 200; 0: boundaries only)")
    refs.add_argument("--only", action="append", metavar="GLOB",
                      help="only references whose id matches, e.g. 'torch: quantize*' (repeatable)")
    refs.add_argument("--progress", action="store_true", help="show which reference runs, on stderr")
    refs.set_defaults(run=run_parity_refs)
    kernels = parity_commands.add_parser(
        "kernels", help="properties of every kernel, accumulator and requantization convention against every "
                        "installed reference (hypothesis; shrunk counterexamples)")
    kernels.add_argument("--examples", type=integer(0, MAX_EXAMPLES), default=100,
                         help="cases drawn per property (default 100)")
    kernels.add_argument("--seed", type=seed, default=0, help="seed of the (derandomized) search")
    kernels.add_argument("--vectors", metavar="DIR",
                         help="also replay the tensor-core vectors recorded on a GPU (tests/data/tensor_cores in a "
                              "source checkout, which is the default when it is there)")
    kernels.add_argument("--only", action="append", metavar="GLOB", help="only properties whose name matches")
    kernels.add_argument("--format", default="table", choices=("table", "markdown", "json"))
    kernels.add_argument("--progress", action="store_true", help="show which property runs, on stderr")
    kernels.set_defaults(run=run_parity_kernels)
    model = parity_commands.add_parser(
        "model", help="a calibrated UNet on the emulator: per layer and per step, against exact arithmetic, torch "
                      "fake-quant and full precision")
    add_arithmetic_arguments(model)
    model.add_argument("--samples", type=integer(0, MAX_PARITY_SAMPLES), default=4,
                       help="outputs per layer and call checked against the plain reference of a device rule "
                            "(default 4)")
    model.add_argument("--reference-checkpoint", metavar="DIR",
                       help="the full-precision UNet (save_pretrained folder), if not the artifact's own")
    model.add_argument("--format", default="table", choices=("table", "markdown", "json"))
    model.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE instead of stdout")
    model.add_argument("--plot", metavar="FILE", help="a chart of SQNR per layer and per step (needs matplotlib)")
    model.set_defaults(run=run_parity_model)


def run_parity_kernels(args) -> int:
    _need_hypothesis("kernels")
    from pathlib import Path

    from ..emulate.parity.kernels import KernelReport, kernel_properties, run_property
    from ..report.parity_kernels import render

    vectors = args.vectors
    if vectors is None:
        checkout = Path(__file__).resolve().parents[2] / "tests" / "data" / "tensor_cores"
        vectors = checkout if (checkout / "tensor_cores.json").exists() else None
    elif not (Path(vectors) / "tensor_cores.json").exists():
        raise SimdqError(f"--vectors {vectors}: no tensor_cores.json there (scripts/record-tensor-core-vectors "
                         "writes it)")
    properties, missing = kernel_properties(vectors)
    if args.only:
        properties = [p for p in properties if any(fnmatchcase(p.name, pattern) for pattern in args.only)]
        if not properties:
            raise SimdqError(f"--only {' '.join(args.only)} matches no property (see simdq parity kernels)")
    report = KernelReport(not_installed=missing)
    for index, prop in enumerate(properties, 1):
        if args.progress:
            print(f"\r[{index}/{len(properties)}] {prop.name[:70]:<70}", end="", file=sys.stderr, flush=True)
        report.results.append(run_property(prop, args.examples, args.seed))
    if args.progress:
        print(file=sys.stderr)
    sys.stdout.write(render(report, args.format))
    return 0 if report.passed else 1


def _need_hypothesis(command: str) -> None:
    try:
        import hypothesis  # noqa: F401
    except ImportError:
        raise SimdqError(f"simdq parity {command} needs hypothesis: pip install -e '.[test]' (or pip install "
                         "hypothesis)") from None


def run_parity_model(args) -> int:
    quiet_thread_pools()
    from ..emulate.parity.model import model_parity
    from ..emulate.progress import Progress
    from ..emulate.runtime import full_precision_unet
    from ..output import check_output_file, write_text
    from ..report.parity_model import plot_parity, render

    if args.output:
        check_output_file(args.output, "-o")
    if args.plot:
        from ..report.plots import check_plot_path

        check_plot_path(args.plot)  # before the run, not after it
    model, device = load_model(args)
    steps = schedule(model, args)
    fp_unet, how = full_precision_unet(args.artifact, model.metadata, model.config, args.reference_checkpoint)
    with Progress(model, enabled=sys.stderr.isatty()) as progress:
        progress.start(steps)
        report = model_parity(model, fp_unet, artifact=str(args.artifact),
                              device=device.name if device else (args.accumulator or "exact"), steps=steps,
                              seed=args.seed, guidance_scale=args.guidance_scale, samples=args.samples,
                              fp_reference=how if fp_unet is not None else f"none ({how})",
                              on_step=progress.step)
    text = render(report, args.format)
    if args.output:
        write_text(args.output, text, "-o")
    else:
        sys.stdout.write(text)
    if args.plot:
        plot_parity(report, args.plot)
    return 0 if report.passed else 1


def run_parity_refs(args) -> int:
    _need_hypothesis("refs")
    from ..emulate.parity.detect import detect
    from ..emulate.parity.refs import installed_references
    from ..report.parity import render

    references, missing = installed_references()
    if args.only:
        references = [r for r in references if any(fnmatchcase(r.id, pattern) for pattern in args.only)]
        if not references:
            raise SimdqError(f"--only {' '.join(args.only)} matches no installed reference (see simdq parity refs)")
    findings = []
    for index, reference in enumerate(references, 1):
        if args.progress:
            print(f"\r[{index}/{len(references)}] {reference.id:<70}", end="", file=sys.stderr, flush=True)
        findings.append(detect(reference, examples=args.examples))
    if args.progress:
        print(file=sys.stderr)
    sys.stdout.write(render(findings, missing, args.format))
    return 0 if all(f.matches for f in findings) else 1
