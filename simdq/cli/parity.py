"""`simdq parity refs`: which named convention each installed reference implements."""

from __future__ import annotations

import sys
from fnmatch import fnmatchcase

from ..errors import SimdqError


def run_parity_refs(args) -> int:
    try:
        import hypothesis  # noqa: F401
    except ImportError:
        raise SimdqError("simdq parity refs needs hypothesis: pip install -e '.[test]' (or pip install hypothesis)") from None
    from .detect import detect
    from .refs import installed_references
    from .report import render

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
