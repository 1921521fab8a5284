"""The device interface: per-layer work in, per-layer time, energy and bottleneck out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from .workload import LayerWork

BOTTLENECKS = ("compute", "memory", "overhead")


@dataclass(frozen=True)
class LayerEstimate:
    """How one layer runs on a device.

    engine: the engine that runs it; compute_precision: the precision its GEMM runs at (None for
    non-GEMM layers); mapping: how the operand formats reach that precision. latency_s is the largest
    of compute_s, memory_s and overhead_s, and bottleneck names which. energy_j is None where the
    device model does not give energy.
    """

    engine: str
    compute_precision: Optional[str]
    mapping: str
    compute_s: float
    memory_s: float
    overhead_s: float
    latency_s: float
    bottleneck: str
    energy_j: Optional[float] = None


class Device:
    """A device model. Subclasses implement `estimate_layer`."""

    name: str
    description: str
    aliases: tuple = ()

    def estimate_layer(self, layer: LayerWork) -> LayerEstimate:
        raise NotImplementedError

    def estimate(self, layers: Sequence[LayerWork]) -> list:
        return [self.estimate_layer(layer) for layer in layers]
