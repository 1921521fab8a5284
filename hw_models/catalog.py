"""The device catalogue: YAML files in hw_models/devices, or a user's own file, checked on load by
hw_models.schema; names, aliases and the NAME[:ENGINE][@MODE] selection.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from diagnostics import YamlFileError, did_you_mean, read_yaml

from .device import Device, DeviceFileError
from .engines.calibrated import CalibratedEngine
from .engines.roofline import RooflineEngine
from .schema import parse_device

DEVICE_DIR = Path(__file__).with_name("devices")


def without_calibration(device: Device) -> Device:
    """The same device with plain roofline engines (to compare a calibrated model with its roofline)."""
    plain = {
        name: RooflineEngine(e.name, e.rates, e.dram_bandwidth, e.energy, e.kinds)
        if isinstance(e, CalibratedEngine) else e
        for name, e in device.engines.items()
    }
    return Device(device.name, device.description, plain, device.order, device.aliases, device.spec, device.mode)


def _read_yaml(path: Path):
    try:
        return read_yaml(path, "device file")
    except YamlFileError as err:
        raise DeviceFileError(str(err)) from None


def read_device_file(path: Path, engine=None, mode=None) -> Device:
    return parse_device(_read_yaml(path), path.name, engine, mode)


@lru_cache(maxsize=None)
def _catalogue() -> dict:
    return {path.stem: read_device_file(path) for path in sorted(DEVICE_DIR.glob("*.yaml"))}


def list_devices() -> list:
    return list(_catalogue().values())


def _selection(text: str):
    """NAME[:ENGINE][@MODE] -> (NAME, ENGINE or None, MODE or None)."""
    name, _, mode = text.partition("@")
    name, _, engine = name.partition(":") if not name.endswith((".yaml", ".yml")) else (name, "", "")
    return name, engine or None, mode or None


def load_device(selection: str) -> Device:
    """A device by catalogue name or alias, or a device file by path (ending in .yaml/.yml), optionally
    with :ENGINE (run layers on that engine first, e.g. jetson:dla) and @MODE (a power mode, e.g. @30W)."""
    name_or_path, engine, mode = _selection(selection)
    if name_or_path.endswith((".yaml", ".yml")):
        return read_device_file(Path(name_or_path), engine, mode)
    names = {}
    for device in list_devices():
        for name in (device.name, *device.aliases):
            names[name.lower()] = device
    device = names.get(name_or_path.lower())
    if device is None:
        raise DeviceFileError(f"unknown device {name_or_path!r}{did_you_mean(name_or_path.lower(), names)}; "
                              f"allowed: {', '.join(sorted(names))}, or a path to a device .yaml file")
    if engine is None and mode is None:
        return device
    return parse_device(device.spec, device.name, engine, mode)
