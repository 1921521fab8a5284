"""A GPU's own energy counter (NVML's total energy, millijoules since the driver loaded) read around work.

The counter advances in steps (every few to tens of milliseconds), so a window is taken between two steps
(edges) seen while the GPU is kept busy: the GPU's average power over that window, idle and static power
included, is (E2 - E1) / (t2 - t1), and an op's energy per call is that power x its time per call. The GPU is
kept busy by keeping enough graph replays in flight (tracked by CUDA events) to cover a few tens of
milliseconds, so the window never sees the GPU starve; a launch that blocks only slows the polling.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from dataclasses import dataclass
from math import ceil

from ..errors import SimdqError

AHEAD_S = 0.03  # GPU work kept in flight
WARM_S = 0.1  # busy time before the window opens (power and clocks settle)
SLACK_S = 3.0  # a window that has not closed this long after it should have is abandoned
GRAPH_S = 2e-3  # an energy graph runs at least this long per replay


@dataclass(frozen=True)
class PowerReading:
    watts: float
    window_s: float
    sm_clock_mhz: int
    temperature_c: int
    sustained_replay_s: float = 0.0  # GPU time of one replay back to back, clocks as the power limit sets them


class EnergyMeter:
    def __init__(self, index: int = 0):
        try:
            import pynvml
        except ImportError:
            raise SimdqError("energy: nvidia-ml-py (pynvml) is not installed") from None
        try:
            pynvml.nvmlInit()
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
        except pynvml.NVMLError as err:
            raise SimdqError(f"energy: NVML cannot read the total-energy counter of GPU {index}: {err}") from None
        self.nvml = pynvml
        self.interval_s = self._update_interval()
        # metering every other microbenchmark leaves enough to fit; a slow counter needs long windows: fewer
        self.stride = 2 if self.window() <= 0.45 else 4

    def millijoules(self) -> int:
        return self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)

    def _edge(self, keep_busy=None, timeout_s: float = SLACK_S):
        """(time, counter) at the counter's next step, topping up the GPU's queue while polling."""
        first = self.millijoules()
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            if keep_busy:
                keep_busy()
            value = self.millijoules()
            if value != first:
                return time.perf_counter(), value
        raise SimdqError(f"energy: NVML's counter did not move in {timeout_s} s")

    def _update_interval(self) -> float:
        edges = [self._edge()[0] for _ in range(6)]
        return statistics.median(b - a for a, b in zip(edges, edges[1:]))

    def window(self) -> float:
        return min(1.0, max(0.25, 4 * self.interval_s))

    def _state(self):
        clock = self.nvml.nvmlDeviceGetClockInfo(self.handle, self.nvml.NVML_CLOCK_SM)
        temperature = self.nvml.nvmlDeviceGetTemperature(self.handle, self.nvml.NVML_TEMPERATURE_GPU)
        return clock, temperature

    def idle_power(self, seconds: float = 2.0) -> PowerReading:
        import torch

        torch.cuda.synchronize()
        t1, e1 = self._edge()
        time.sleep(seconds)
        t2, e2 = self._edge()
        return PowerReading((e2 - e1) / 1e3 / (t2 - t1), t2 - t1, *self._state())

    def busy_power(self, replay, replay_s: float, window_s: float = None) -> PowerReading:
        """Average power while `replay()` (one graph replay of about replay_s seconds) runs back to back."""
        import torch

        window_s = max(window_s or self.window(), 10 * replay_s)
        in_flight, finished = deque(), []
        depth = min(256, max(2, ceil(AHEAD_S / max(replay_s, 1e-6))))

        def keep_busy():
            while in_flight and in_flight[0].query():
                finished.append(in_flight.popleft())
            while len(in_flight) < depth:
                replay()
                done = torch.cuda.Event(enable_timing=True)
                done.record()
                in_flight.append(done)

        start = time.perf_counter()
        while time.perf_counter() - start < WARM_S:
            keep_busy()
        t1, e1 = self._edge(keep_busy)
        first = len(finished)
        while time.perf_counter() - t1 < window_s:
            keep_busy()
        t2, e2 = self._edge(keep_busy)
        last = len(finished) - 1
        state = self._state()
        torch.cuda.synchronize()
        # the replays that ended inside the window, timed by their own completion events
        sustained = finished[first].elapsed_time(finished[last]) / 1e3 / (last - first) if last > first else replay_s
        return PowerReading((e2 - e1) / 1e3 / (t2 - t1), t2 - t1, *state, sustained_replay_s=sustained)


def energy_calls(seconds_per_call: float, window_s: float) -> int:
    """Calls per energy graph: enough that one replay runs GRAPH_S (launches never starve the GPU), few
    enough that a window holds ten replays or more (the count of finished replays times the window)."""
    fill = int(GRAPH_S / max(seconds_per_call, 1e-7)) + 1
    return max(1, min(5000, fill, int(window_s / 10 / max(seconds_per_call, 1e-7))))
