"""A SWEEP.yaml expanded into its points: every model x scheme x policy x device x batch x steps that no
`exclude:` rule removes, and the quality points its `quality:` tasks ask for. Every point's model.yaml and
device are checked here, so bad input is one line before any work starts."""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from diagnostics import YamlFileError, read_yaml

from ..config import parse_config, unet_spec
from ..errors import SimdqError
from .points import CalibrationPoint, DevicePoint, EstimatePoint, QualityPoint, canonical
from .spec import EXACT, SweepSpec

MAX_POINTS = 100_000


@dataclass
class SweepPlan:
    estimates: list = field(default_factory=list)  # EstimatePoint, in axis order
    qualities: list = field(default_factory=list)  # QualityPoint
    excluded: int = 0

    @property
    def points(self) -> list:
        return self.estimates + self.qualities

    @property
    def traces(self) -> dict:
        """trace key -> TracePoint, one per model x batch x runtime."""
        return {p.trace.key: p.trace for p in self.estimates}


def _merged(base: dict, update: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        merged[key] = _merged(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else copy.deepcopy(value)
    return merged


def _base(spec: SweepSpec, folder: Path, source: str) -> dict:
    """The base model.yaml, its config_file (if any) made relative to the file that names it."""
    if isinstance(spec.base, dict):
        data = copy.deepcopy(spec.base)
    else:
        path = Path(spec.base) if Path(spec.base).is_absolute() else folder / spec.base
        try:
            data = read_yaml(path, "model.yaml")
        except YamlFileError as err:
            raise SimdqError(f"{source}: base: {err}") from None
        if not isinstance(data, dict):
            raise SimdqError(f"{source}: base: {path} is not a model.yaml mapping")
        folder = path.parent
    model = data.get("model")
    if isinstance(model, dict) and isinstance(model.get("config_file"), str):
        model["config_file"] = str(folder / model["config_file"])  # an absolute path stays as it is
    return data


def _models(spec: SweepSpec, base: dict, source: str) -> list:
    """(label, model section) per model: the presets axis, or the base's own model, made self-contained (an
    inline diffusers config instead of a config file a remote worker could not read)."""
    dtype = base.get("model", {}).get("dtype", "fp32") if isinstance(base.get("model"), dict) else "fp32"
    if spec.presets:
        return [(name, {"preset": name, "dtype": dtype}) for name in spec.presets]
    config = parse_config(base, f"{source}: base")
    if config.model.preset:
        return [(config.model.preset, {"preset": config.model.preset, "dtype": config.model.dtype})]
    if config.model.layer:
        return [(config.model.layer.name(), {"layer": config.model.layer.model_dump(), "dtype": config.model.dtype})]
    unet = unet_spec(config)
    label = unet.name if config.model.config_file else "base"
    return [(label, {"diffusers": {"class": unet.unet_class, "config": unet.config}, "dtype": config.model.dtype})]


def _schemes(spec: SweepSpec, base_quant: dict) -> list:
    """(name, quant section) per scheme: the named ones, then weights x activations."""
    schemes = [(name, _merged(base_quant, update)) for name, update in (spec.schemes or {}).items()]
    if spec.weights or spec.activations:
        for weights, activations in itertools.product(spec.weights or [base_quant.get("weights")],
                                                      spec.activations or [base_quant.get("activations")]):
            quant = _merged(base_quant, {k: v for k, v in (("weights", weights), ("activations", activations))
                                         if v is not None})
            schemes.append((f"{weights or 'base'}/{activations or 'base'}", quant))
    names = [name for name, _ in schemes]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise SimdqError(f"scheme {repeated[0]!r} is both a named scheme and a weights/activations pair")
    return schemes or [("base", copy.deepcopy(base_quant))]


def _matches(rule: dict, labels: dict) -> bool:
    for key, patterns in rule.items():
        if key not in labels:
            return False
        patterns = patterns if isinstance(patterns, list) else [patterns]
        if not any(fnmatchcase(str(labels[key]), str(p)) for p in patterns):
            return False
    return True


def _device_points(selections, folder: Path) -> dict:
    from hw_models import load_device

    points = {}
    for selection in selections:
        if selection == EXACT:
            points[selection] = None
            continue
        name, at, mode = selection.partition("@")
        located = selection
        if name.endswith((".yaml", ".yml")) and not Path(name).is_absolute():  # relative to SWEEP.yaml
            located = f"{folder / name}{at}{mode}"
        points[selection] = DevicePoint.of(selection, load_device(located))
    return points


def expand(spec: SweepSpec, folder: Path, source: str) -> SweepPlan:
    """Every point of the sweep, checked: a bad model.yaml of any scheme, device or preset is a SimdqError
    (or hw_models.DeviceFileError) naming it."""
    from ..calibrate.run import CalibrationSettings

    base = _base(spec, folder, source)
    base_quant = base.get("quant") or {}
    if not isinstance(base_quant, dict):
        raise SimdqError(f"{source}: base: quant must be a mapping")
    models, schemes = _models(spec, base, source), _schemes(spec, base_quant)
    policies = spec.policies or [None]
    devices = _device_points(spec.devices, folder)
    if EXACT in devices:
        raise SimdqError(f"{source}: devices: {EXACT!r} is a quality task's arithmetic, not a device to cost on")
    base_input = base.get("input") or {}
    batches = spec.batch or [base_input.get("batch", 1)]
    steps_axis = spec.steps or [base_input.get("steps", 1)]
    count = len(models) * len(schemes) * len(policies) * len(devices) * len(batches) * len(steps_axis)
    if count > MAX_POINTS:
        raise SimdqError(f"{source}: the axes cross to {count} estimate points, more than the {MAX_POINTS} allowed")

    plan, variants = SweepPlan(), []
    for (model_label, model), (scheme, quant), policy in itertools.product(models, schemes, policies):
        quant = _merged(quant, {"policy": policy}) if policy else quant
        where = f"{source}: scheme {scheme}" + (f", policy {policy}" if policy else "")
        document = {key: value for key, value in base.items() if key not in ("model", "quant", "input")}
        document.update(model=model, quant=quant, input=dict(base_input))
        config = parse_config(document, where)
        checked = config.model_dump(by_alias=True, exclude_none=True)
        unet = unet_spec(config)
        labels = {"preset": model_label, "scheme": scheme, "weights": config.quant.weights or config.model.dtype,
                  "activations": config.quant.activations or config.model.dtype,
                  "policy": config.quant.policy or "-"}
        variants.append((labels, checked, unet))
        for device_label, device in devices.items():
            for batch, steps in itertools.product(batches, steps_axis):
                point_labels = {**labels, "device": device_label, "batch": batch, "steps": steps}
                if any(_matches(rule, point_labels) for rule in spec.exclude):
                    plan.excluded += 1
                    continue
                at = {**checked, "input": {**checked["input"], "batch": batch, "steps": steps}}  # spec bounds both
                plan.estimates.append(EstimatePoint(tuple(point_labels.items()), canonical(at), unet, device))

    for task in spec.quality:
        settings = CalibrationSettings(**task.calibrate.model_dump())
        parity = tuple(task.parity.model_dump().items())
        quality_devices = _device_points(task.devices, folder)
        for labels, checked, unet in variants:
            if not (any(fnmatchcase(labels["scheme"], p) for p in task.schemes)
                    and any(fnmatchcase(labels["preset"], p) for p in task.presets)):
                continue
            calibration = CalibrationPoint(canonical(checked), unet, tuple(settings.as_dict().items()))
            for device_label, device in quality_devices.items():
                point_labels = {**labels, "device": device_label}
                if any(_matches(rule, point_labels) for rule in spec.exclude):
                    plan.excluded += 1
                    continue
                plan.qualities.append(QualityPoint(tuple(point_labels.items()), calibration, device, parity))
    return plan
