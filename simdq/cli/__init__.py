"""The simdq command line (simdq.cli.main); `python -m simdq.cli` runs it too."""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
