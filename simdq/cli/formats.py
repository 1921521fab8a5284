"""`simdq formats`: every named number format with its bits, range, special values and overflow policy."""

from __future__ import annotations

from ..report.tables import text_table


def add_parser(commands) -> None:
    formats = commands.add_parser("formats", help="list every named number format with its range and special values")
    formats.set_defaults(run=lambda args: print(formats_table()))


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
