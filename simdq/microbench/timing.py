"""Timing one op on a real device: warmed up, captured many times into a CUDA graph, the graph replayed.

The result is the median over replays of replay time / calls, so launch gaps are those of a graph (what a
deployed UNet sees) and clock jitter is averaged out. On a CPU device (for tests) a plain loop is timed.
"""

from __future__ import annotations

import statistics
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Callable

REPS = 20
REPLAYS = 7


@contextmanager
def tf32_mode(enabled: bool):
    """cuBLAS and cuDNN fp32 work on TF32 tensor cores (True) or in full fp32 (False), restored after.
    torch's defaults differ (matmuls off, convolutions on), so every fp32 measurement states its mode."""
    import torch

    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def precision_mode(tf32):
    """tf32_mode for an fp32 measurement (tf32 True or False); nothing for other precisions (None)."""
    return nullcontext() if tf32 is None else tf32_mode(tf32)


@dataclass
class Captured:
    """A CUDA graph of `calls` back-to-back calls of one op (None on a CPU device)."""

    graph: object
    calls: int
    run: Callable


def capture(run: Callable, device, calls: int = REPS) -> Captured:
    import torch

    if device.type != "cuda":
        return Captured(None, calls, run)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            run()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            run()
    graph.replay()
    torch.cuda.synchronize()
    return Captured(graph, calls, run)


def replay_seconds(captured: Captured, replays: int = REPLAYS) -> float:
    """Median seconds per call over `replays` replays of the graph."""
    import torch

    if captured.graph is None:
        for _ in range(2):
            captured.run()
        times = []
        for _ in range(replays):
            start = time.perf_counter()
            captured.run()
            times.append(time.perf_counter() - start)
        return statistics.median(times)
    times = []
    for _ in range(replays):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        captured.graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3 / captured.calls)
    return statistics.median(times)


def time_op(run: Callable, device, tf32=None) -> float:
    """Median seconds per call of `run` (see the module docstring); tf32: the fp32 mode, None otherwise."""
    with precision_mode(tf32):
        return replay_seconds(capture(run, device))
