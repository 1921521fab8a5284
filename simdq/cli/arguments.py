"""What every command's arguments share: usage errors as one line and exit code 2, and count types."""

from __future__ import annotations

import argparse


class Parser(argparse.ArgumentParser):
    """Usage errors as one line and exit code 2, like every other bad input."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _integer(text: str, smallest: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}") from None
    if value < smallest:
        raise argparse.ArgumentTypeError(f"expected a {what} integer, got {value}")
    return value


def positive(text: str) -> int:
    return _integer(text, 1, "positive")


def non_negative(text: str) -> int:
    return _integer(text, 0, "non-negative")
