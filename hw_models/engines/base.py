"""What every engine model is: per-layer work in (hw_models.workload), per-layer time, energy and bottleneck out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..actions import Actions
from ..workload import LayerWork

@dataclass(frozen=True)
class LayerEstimate:
    """How one layer runs on a device.

    engine: the engine that runs it; compute_precision: the precision its GEMM runs at (None for
    non-GEMM layers); mapping: how the operand formats reach that precision. latency_s is the largest
    of compute_s, memory_s and overhead_s (or their sum where an engine overlaps only some), and
    bottleneck names which. actions: what the engine counted, which the device's energy model prices
    into energy_j (None where the device has no energy model).
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
    actions: Actions = field(default_factory=Actions)


@dataclass(frozen=True)
class EngineDescription:
    """How an engine presents itself (simdq hw list, the roofline chart): its model's name, its dense peaks
    (compute precision -> operations per second, a MAC being two) and a few words on its organisation."""

    model: str
    peaks: dict
    summary: str = ""

    @property
    def peaks_text(self) -> str:
        text = ", ".join(f"{precision} {value / 1e12:g}" for precision, value in self.peaks.items())
        return f"{text} ({self.summary})" if self.summary else text


class EngineModel:
    """One engine of a device (a GPU's tensor cores, a DLA, an NPU array, an XNOR array).

    kinds: the layer kinds it runs (None: all); energy: its hw_models.energy.EnergyModel, or None.
    Subclasses implement `can_run` beyond kinds (e.g. a precision the engine lacks), `estimate_layer`
    (time and counted actions; the device prices the actions) and `describe`."""

    name: str
    kinds = None
    energy = None
    dram_bandwidth: float

    def can_run(self, layer: LayerWork) -> bool:
        return self.kinds is None or layer.kind in self.kinds

    def estimate_layer(self, layer: LayerWork) -> LayerEstimate:
        raise NotImplementedError

    def workspace_bytes(self, layer: LayerWork) -> float:
        """Memory the layer's kernel asks for beside its operands, where that changes how it runs (none here)."""
        return 0.0

    def describe(self) -> EngineDescription:
        raise NotImplementedError
