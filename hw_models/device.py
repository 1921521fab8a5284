"""A device: its engines, tried in order for each layer, and the name it is shown by."""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

from .engines.base import EngineModel, LayerEstimate
from .workload import LayerWork


class DeviceFileError(ValueError):
    """A device name or file that cannot be used; the message is one line for the user."""


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

    @property
    def memory_bytes(self):
        """The DRAM capacity the device file gives (memory.dram.capacity), or None."""
        return self.spec.get("memory", {}).get("dram", {}).get("capacity")

    def engine_for(self, layer: LayerWork):
        """The first engine, in order, that runs the layer, or None."""
        return next((self.engines[name] for name in self.order if self.engines[name].can_run(layer)), None)

    def workspace_bytes(self, layer: LayerWork) -> float:
        """The workspace the engine that runs the layer asks for beside its operands (a cuDNN FFT's), else 0."""
        engine = self.engine_for(layer)
        return engine.workspace_bytes(layer) if engine is not None else 0.0

    def estimate_layer(self, layer: LayerWork) -> LayerEstimate:
        engine = self.engine_for(layer)
        if engine is None:
            raise DeviceFileError(f"{self.name}: no engine runs {layer.kind} layer {layer.name} (engines tried: "
                                  f"{', '.join(self.order)}); name one that does as the device's fallback_engine")
        estimate = engine.estimate_layer(layer)
        if engine.energy is None:
            return estimate
        return dataclasses.replace(estimate, energy_j=engine.energy.price(estimate.actions, estimate.latency_s))

    def estimate(self, layers: Sequence[LayerWork]) -> list:
        return [self.estimate_layer(layer) for layer in layers]
