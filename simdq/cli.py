"""The simdq command line."""

from __future__ import annotations

import argparse
import sys

from . import __version__


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
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="simdq", description=__doc__)
    parser.add_argument("--version", action="version", version=f"simdq {__version__}")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("formats", help="list every named number format with its range and special values")
    args = parser.parse_args(argv)
    if args.command == "formats":
        print(formats_table())
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
