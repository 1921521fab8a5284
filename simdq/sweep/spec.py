"""SWEEP.yaml: a base model.yaml and the axes crossed over it, checked like model.yaml (one line per error).

```yaml
base: model.yaml              # a model.yaml (path relative to this file) or the same mapping inline
presets: [ldm4-lsun-bedrooms, ddpm-cifar10]      # optional: replace the base's model
schemes:                       # optional: named schemes, each a quant: section merged over the base's
  w8a8: {weights: int8, activations: int8}
  w1a4: {weights: binary, activations: int4, policy: binarydm}
weights: [int8, int4]          # optional: crossed with activations, named "WEIGHTS/ACTIVATIONS"
activations: [int8]
policies: [binarydm, all-quantized]              # optional: over each scheme's own policy
devices: [h100, "jetson:dla@30W", my-npu.yaml]   # required: NAME[:ENGINE][@MODE] or a device file
batch: [1, 8]                  # optional: default the base's input.batch
steps: [50]                    # optional: default the base's input.steps
exclude:                       # a point is left out when every key of one rule matches (globs)
  - {device: "xne*", scheme: "*/int8"}
quality:                       # optional heavy points: calibrate, then simdq parity model
  - schemes: ["w8a8"]          # globs over scheme names (default: every scheme)
    presets: ["*"]             # globs over models (default: every model)
    devices: [exact, h100]     # parity arithmetic: exact accumulation or a device's (default: exact)
    calibrate: {samples: 2, steps: 4, calibrator: minmax, timestep_groups: per_step, seed: 0, batch: 2}
    parity: {samples: 4, seed: 0, guidance_scale: 7.5}     # DDIM steps: calibrate.steps
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from diagnostics import YamlFileError, read_yaml, validate

from ..errors import SimdqError

EXCLUDE_KEYS = ("preset", "scheme", "weights", "activations", "policy", "device", "batch", "steps")
MAX_BATCH, MAX_STEPS = 2**16, 10_000
EXACT = "exact"  # the parity arithmetic of a quality task without a device: exact accumulation


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _distinct(values: list, what: str) -> list:
    seen = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{what} lists {value!r} twice")
        seen.add(value)
    return values


class CalibrateSection(_Strict):
    samples: StrictInt = Field(2, gt=0, le=4096)
    steps: StrictInt = Field(4, gt=0, le=1000)
    calibrator: Literal["minmax", "percentile", "mse"] = "minmax"
    timestep_groups: Union[Literal["per_step", "merged"], StrictInt] = "per_step"
    seed: StrictInt = 0
    batch: StrictInt = Field(2, gt=0, le=MAX_BATCH)

    @field_validator("timestep_groups")
    @classmethod
    def _positive_bins(cls, value):
        if isinstance(value, int) and value < 1:
            raise ValueError("expected per_step, merged or a positive number of timestep bins")
        return value


class ParitySection(_Strict):
    samples: StrictInt = Field(4, ge=0, le=4096)
    seed: StrictInt = 0
    guidance_scale: float = Field(7.5, ge=0, allow_inf_nan=False)


class QualityTask(_Strict):
    schemes: List[str] = ["*"]
    presets: List[str] = ["*"]
    devices: List[str] = [EXACT]
    calibrate: CalibrateSection = CalibrateSection()
    parity: ParitySection = ParitySection()

    _distinct_devices = field_validator("devices")(classmethod(lambda cls, v: _distinct(v, "devices")))


class SweepSpec(_Strict):
    base: Union[str, dict]
    presets: Optional[List[str]] = None
    schemes: Optional[Dict[str, dict]] = None
    weights: Optional[List[str]] = None
    activations: Optional[List[str]] = None
    policies: Optional[List[str]] = None
    devices: List[str] = Field(min_length=1)
    batch: Optional[List[StrictInt]] = None
    steps: Optional[List[StrictInt]] = None
    exclude: List[Dict[str, Union[str, int, List[Union[str, int]]]]] = []
    quality: List[QualityTask] = []

    @field_validator("presets", "weights", "activations", "policies", "devices")
    @classmethod
    def _no_repeats(cls, value, info):
        return value if value is None else _distinct(value, info.field_name)

    @field_validator("batch", "steps")
    @classmethod
    def _bounded_counts(cls, value, info):
        if value is None:
            return value
        largest = MAX_BATCH if info.field_name == "batch" else MAX_STEPS
        for count in value:
            if not 0 < count <= largest:
                raise ValueError(f"every {info.field_name} must be an integer from 1 to {largest}, got {count!r}")
        return _distinct(value, info.field_name)

    @field_validator("exclude")
    @classmethod
    def _known_keys(cls, rules):
        from diagnostics import unknown

        for rule in rules:
            if not rule:
                raise ValueError("an exclude rule needs at least one key; allowed: " + ", ".join(EXCLUDE_KEYS))
            for key in rule:
                if key not in EXCLUDE_KEYS:
                    raise ValueError(unknown("exclude key", key, EXCLUDE_KEYS))
        return rules


def load_sweep(path) -> tuple:
    """(SweepSpec, the folder relative paths in it start from) of the SWEEP.yaml at `path`."""
    try:
        data = read_yaml(path, "sweep file")
    except YamlFileError as err:
        raise SimdqError(str(err)) from None
    return validate(SweepSpec, data, str(path), SimdqError), Path(path).resolve().parent
