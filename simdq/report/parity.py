"""`simdq parity refs` output: one row per reference, as a text table, Markdown or JSON."""

from __future__ import annotations

import json

from ..emulate.parity.detect import Finding
from ..emulate.parity.expected import expected_convention
from .tables import text_table

COLUMNS = ("reference", "version", "matches bit for bit", "table", "first counterexample")


def summary(finding: Finding) -> dict:
    """The finding as plain data; the counterexample shown is the expected convention's, when it fails,
    or the first one found when no convention matches."""
    expected = expected_convention(finding.reference, finding.version)
    if expected is None:
        table = "not in the table"
    elif expected in finding.matches:
        table = "as expected"
    else:
        table = f"expects {expected.name}"
    shown = None
    if expected is not None and expected not in finding.matches:
        shown = finding.counterexample_for(expected)
    elif not finding.matches and finding.counterexamples:
        shown = finding.counterexamples[0]
    return {
        "reference": finding.reference.id,
        "library": finding.reference.library,
        "version": finding.version,
        "matches": [c.name for c in finding.matches],
        "expected": expected.name if expected else None,
        "table": table,
        "domain": finding.reference.domain,
        "examples": finding.examples,
        "counterexample": shown.line() if shown else None,
        "rejected": {c.convention.name: c.line() for c in finding.counterexamples},
    }


def render(findings: list[Finding], missing: list[str], fmt: str) -> str:
    records = [summary(f) for f in findings]
    if fmt == "json":
        return json.dumps({"references": records, "not_installed": missing}, indent=2) + "\n"
    rows = [[r["reference"], r["version"], "; ".join(r["matches"]) or "none", r["table"], r["counterexample"] or ""]
            for r in records]
    rows += [[f"{library}: every reference", "not installed", "-", "-", ""] for library in missing]
    if fmt == "markdown":
        escape = lambda text: str(text).replace("|", "\\|")  # noqa: E731
        lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        lines += ["| " + " | ".join(escape(cell) for cell in row) + " |" for row in rows]
        return "\n".join(lines) + "\n"
    return text_table(COLUMNS, rows) + "\n"
