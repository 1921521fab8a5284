"""The simdq command line: estimate a quantized UNet's cost, calibrate it, emulate it, check parity, recount the papers' tables, sweep a design space, list devices and formats.

One module per command; each adds its parser and sets `run`, the function that carries it out.
"""

from __future__ import annotations

import sys

from .. import __version__
from ..errors import SimdqError
from . import calibrate, emulate, estimate, formats, hw, parity, sweep, tables
from .arguments import Parser

COMMANDS = (formats, estimate, calibrate, emulate, parity, tables, sweep, hw)


def build_parser() -> Parser:
    parser = Parser(prog="simdq", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"simdq {__version__}")
    commands = parser.add_subparsers(dest="command", parser_class=Parser)
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def main(argv=None) -> int:
    from hw_models import DeviceFileError

    parser = build_parser()
    args = parser.parse_args(argv)
    run = getattr(args, "run", None)
    if run is None:
        parser.print_help()
        return 0
    try:
        return run(args) or 0
    except (SimdqError, DeviceFileError) as err:
        print(f"simdq: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # outputs are written atomically: nothing partial is left behind
        print("simdq: interrupted; no output written", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `simdq hw show h100 | head`: the reader left; end quietly, as a shell tool does
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the interpreter's last flush must not fail
        return 141
    except OSError as err:  # a path the system refuses (too long, not permitted) wherever it is first touched
        where = f"{err.filename}: " if err.filename else ""
        print(f"simdq: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
