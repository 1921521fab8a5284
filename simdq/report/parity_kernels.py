"""`simdq parity kernels` output: one row per property, as a text table, Markdown or JSON."""

from __future__ import annotations

import json
from dataclasses import asdict

from .tables import markdown_table, text_table

COLUMNS = ("property", "reference", "checks", "failing", "first counterexample (shrunk)")


def render(report, fmt: str) -> str:
    if fmt == "json":
        return json.dumps({"properties": [{**asdict(r), "holds": r.holds} for r in report.results],
                           "not_installed": report.not_installed}, indent=2) + "\n"
    rows = [[r.name, r.reference, r.checks, r.failures, r.error or r.counterexample or ""] for r in report.results]
    rows += [[f"{library}: its properties", "not installed", "-", "-", ""] for library in report.not_installed]
    table = markdown_table if fmt == "markdown" else text_table
    held = sum(r.holds for r in report.results)
    return f"{held} of {len(report.results)} properties hold\n\n" + table(COLUMNS, rows) + "\n"
