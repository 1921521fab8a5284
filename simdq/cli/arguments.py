"""What every command's arguments share: usage errors as one line and exit code 2, and count types."""

from __future__ import annotations

import argparse


class Parser(argparse.ArgumentParser):
    """Usage errors as one line and exit code 2, like every other bad input."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


import math

from ..config import MAX_BATCH, MAX_STEPS

MAX_SEED = 2**63 - 1  # what numpy's and torch's generators both take
MAX_THREADS = 4096
MAX_SAMPLES = 2**16
DDIM_TRAIN_TIMESTEPS = 1000  # DDIMScheduler's; it refuses more inference steps than this


def integer(smallest: int, largest: int):
    """An argparse type: an integer from `smallest` to `largest`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not smallest <= value <= largest:
            raise argparse.ArgumentTypeError(f"expected an integer from {smallest} to {largest}, got {text!r}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its message
    return parse


def finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


batch = integer(1, MAX_BATCH)
steps = integer(1, MAX_STEPS)
ddim_steps = integer(1, DDIM_TRAIN_TIMESTEPS)
timestep = integer(0, DDIM_TRAIN_TIMESTEPS - 1)
samples = integer(1, MAX_SAMPLES)
seed = integer(0, MAX_SEED)
threads = integer(1, MAX_THREADS)
