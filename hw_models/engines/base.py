"""The device interface: per-layer work in, per-layer time, energy and bottleneck out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from .workload import LayerWork

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


class EngineModel:
    """One engine of a device (a GPU's tensor cores, a DLA, an NPU array, an XNOR array).

    kinds: the layer kinds it runs (None: all). Subclasses implement `can_run` beyond kinds (e.g. a
    precision the engine lacks) and `estimate_layer`."""

    name: str
    kinds = None

    def can_run(self, layer: LayerWork) -> bool:
        return self.kinds is None or layer.kind in self.kinds

    def estimate_layer(self, layer: LayerWork) -> LayerEstimate:
        raise NotImplementedError


class Device:
    """A device: engines tried in order (the default engine, then the fallback) for each layer."""

    def __init__(self, name: str, description: str, engines: dict, order: Sequence, aliases=(), spec=None,
                 mode: Optional[str] = None):
        self.name = name
        self.description = description
        self.engines = engines
        self.order = tuple(order)
        self.aliases = tuple(aliases)
        self.spec = spec or {}  # the device file's contents, as read
        self.mode = mode

    @property
    def label(self) -> str:
        """name, with :engine where the device has several and @mode where it has power modes."""
        engine = f":{self.order[0]}" if len(self.engines) > 1 else ""
        return f"{self.name}{engine}{'@' + self.mode if self.mode else ''}"

    @property
    def primary(self) -> EngineModel:
        return self.engines[self.order[0]]

    def estimate_layer(self, layer: LayerWork) -> LayerEstimate:
        for name in self.order:
            engine = self.engines[name]
            if engine.can_run(layer):
                return engine.estimate_layer(layer)
        raise ValueError(f"no engine of {self.name} runs {layer.kind} layer {layer.name}; "
                         f"engines tried: {', '.join(self.order)}")

    def estimate(self, layers: Sequence[LayerWork]) -> list:
        return [self.estimate_layer(layer) for layer in layers]
