"""Sweep points: frozen records of everything that decides a result, each named by a content hash of it.

A point's key is the SHA-256 of its canonical JSON (the code that computes it, see identity.py, and the point's row
labels included), so a changed axis, device file, preset, setting, cost model or library gives a new key and an
unchanged one finds its stored result. A point carries what its worker needs (the model.yaml as data, the UNet
config, the device file's contents), never a path to read. Keys and traces are computed once per point (the
runners and the store ask for them often).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property

from ..presets import UNetSpec
from .identity import code_identity

KEY_CHARS = 24  # 96 bits of SHA-256: no collision among any number of points a store will hold


def canonical(record) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)


def digest(record: dict) -> str:
    return hashlib.sha256(canonical({"simdq": code_identity(), **record}).encode()).hexdigest()[:KEY_CHARS]


def spec_record(spec: UNetSpec) -> dict:
    return {"class": spec.unet_class, "config": spec.config, "context_length": spec.context_length,
            "attention_heads": spec.attention_heads}


@dataclass(frozen=True)
class DevicePoint:
    """A device as the sweep names it (NAME[:ENGINE][@MODE] or a file) and the file's contents, parsed again on
    the worker: a worker on another machine needs neither the file nor the same catalogue."""

    selection: str
    name: str
    data_json: str
    engine: str
    mode: str | None

    @classmethod
    def of(cls, selection: str, device) -> "DevicePoint":
        return cls(selection, device.name, canonical(device.spec), device.order[0], device.mode)

    def load(self):
        from hw_models.catalog import parse_device

        return parse_device(json.loads(self.data_json), self.name, self.engine, self.mode)

    def record(self) -> dict:
        return {"selection": self.selection, "device": json.loads(self.data_json), "engine": self.engine,
                "mode": self.mode}


@dataclass(frozen=True)
class TracePoint:
    """One traced forward: the layers every scheme and device of this model, batch and runtime reuse."""

    spec: UNetSpec
    batch: int
    sample_size: int | None
    context_length: int | None
    fused_attention: bool

    @cached_property
    def key(self) -> str:
        return digest(self.record())

    def record(self) -> dict:
        return {"kind": "trace", "unet": spec_record(self.spec), "batch": self.batch,
                "sample_size": self.sample_size, "context_length": self.context_length,
                "fused_attention": self.fused_attention}


@dataclass(frozen=True)
class EstimatePoint:
    """One `simdq estimate`: a whole model.yaml (as canonical JSON) on one device."""

    labels: tuple  # (axis, value) pairs: the point's row in the table
    config_json: str
    spec: UNetSpec
    device: DevicePoint
    kind = "estimate"

    @cached_property
    def key(self) -> str:
        return digest(self.record())

    def record(self) -> dict:
        return {"kind": self.kind, "labels": dict(self.labels), "config": json.loads(self.config_json),
                "unet": spec_record(self.spec), "device": self.device.record()}

    @cached_property
    def trace(self) -> TracePoint:
        config = json.loads(self.config_json)
        run_input, runtime = config["input"], config.get("runtime", {})
        return TracePoint(self.spec, run_input["batch"], run_input.get("sample_size"),
                          run_input.get("context_length"), runtime.get("fused_attention", True))


@dataclass(frozen=True)
class CalibrationPoint:
    """One `simdq calibrate`: the model and scheme of a model.yaml, calibrated with these settings."""

    config_json: str
    spec: UNetSpec
    settings: tuple  # CalibrationSettings fields as (name, value) pairs

    @cached_property
    def key(self) -> str:
        return digest(self.record())

    def record(self) -> dict:
        config = json.loads(self.config_json)
        return {"kind": "calibration", "unet": spec_record(self.spec), "model": config["model"],
                "quant": config["quant"], "settings": dict(self.settings)}


@dataclass(frozen=True)
class QualityPoint:
    """One `simdq parity model` of a calibration, with a device's accumulators or exact accumulation."""

    labels: tuple
    calibration: CalibrationPoint
    device: DevicePoint | None  # None: exact accumulation
    parity: tuple  # ParitySection fields as (name, value) pairs
    kind = "quality"

    @cached_property
    def key(self) -> str:
        return digest(self.record())

    def record(self) -> dict:
        return {"kind": self.kind, "labels": dict(self.labels), "calibration": self.calibration.key,
                "device": self.device.record() if self.device else None, "parity": dict(self.parity)}
