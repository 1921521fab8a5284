"""`simdq parity refs`: which named convention each installed reference implements."""

from __future__ import annotations

import sys
from fnmatch import fnmatchcase

from ..errors import SimdqError
from .arguments import Parser, non_negative


def add_parser(commands) -> None:
    parity = commands.add_parser("parity", help="bit-for-bit checks against other implementations")
    parity_commands = parity.add_subparsers(dest="parity_command", parser_class=Parser)
    refs = parity_commands.add_parser(
        "refs", help="which named convention each installed reference (ml_dtypes, torch, torchao, gfloat) implements")
    refs.add_argument("--format", default="table", choices=("table", "markdown", "json"))
    refs.add_argument("--examples", type=non_negative, default=200,
                      help="hypothesis examples per convention after the boundary cases (default 200; 0: boundaries only)")
    refs.add_argument("--only", action="append", metavar="GLOB",
                      help="only references whose id matches, e.g. 'torch: quantize*' (repeatable)")
    refs.add_argument("--progress", action="store_true", help="show which reference runs, on stderr")
    refs.set_defaults(run=run_parity_refs)


def run_parity_refs(args) -> int:
    try:
        import hypothesis  # noqa: F401
    except ImportError:
        raise SimdqError("simdq parity refs needs hypothesis: pip install -e '.[test]' (or pip install hypothesis)") from None
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
