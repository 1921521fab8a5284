"""The device catalogue: YAML files in hw_models/devices, or a user's own file, validated on load.

Every number in a device file is a mapping with a `source:` that says where it comes from.
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from pathlib import Path

import yaml

from .calibrated import GEMM_CLASS_PREFIX, VECTOR_CLASS, CalibratedDevice, ClassParams
from .energy import EnergyModel, load_table
from .precision import COMPUTE_TYPES
from .roofline import Engine, RooflineDevice

DEVICE_DIR = Path(__file__).with_name("devices")
DEVICE_MODELS = ("roofline",)


class DeviceFileError(ValueError):
    """A device name or file that cannot be used; the message is one line for the user."""


def _fail(where: str, message: str):
    raise DeviceFileError(f"{where}: {message}")


def _mapping(value, where: str, keys: dict) -> dict:
    """Check that `value` is a mapping whose keys are among `keys` (key -> required)."""
    if not isinstance(value, dict):
        _fail(where, f"expected a mapping with keys {', '.join(keys)}, got {type(value).__name__}")
    for key in value:
        if key not in keys:
            hint = difflib.get_close_matches(str(key), list(keys), n=1)
            _fail(f"{where}.{key}", "unknown key" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                  + f"; allowed: {', '.join(keys)}")
    for key, required in keys.items():
        if required and key not in value:
            _fail(where, f"missing key {key!r}")
    return value


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        _fail(where, f"expected a positive number, got {value!r}")
    return float(value)


def _text(value, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        _fail(where, f"expected a non-empty string, got {value!r}")
    return value


def _sourced(value, where: str, field: str, extra=()) -> float:
    """A number given as {field: x, source: "..."} (plus optional `extra` keys)."""
    keys = {field: True, "source": True, **{k: False for k in extra}}
    _mapping(value, where, keys)
    _text(value["source"], f"{where}.source")
    return _number(value[field], f"{where}.{field}")


CLASS_KEYS = {"kernel_s": True, "efficiency": True, "memory_efficiency": True, "tile_m": False, "tile_n": False,
              "split_k_min": False, "median_error": False, "samples": False}


def _class_names() -> list:
    gemm = [f"{prefix}_{precision}" for prefix in sorted(set(GEMM_CLASS_PREFIX.values())) for precision in COMPUTE_TYPES]
    return gemm + sorted(set(VECTOR_CLASS.values()))


def _calibration(spec, where: str):
    """(classes, sms, source) of an engine's `calibration:` block; its one source covers the fit."""
    _mapping(spec, where, {"source": True, "sms": True, "classes": True})
    _text(spec["source"], f"{where}.source")
    sms = spec["sms"]
    if isinstance(sms, bool) or not isinstance(sms, int) or sms < 1:
        _fail(f"{where}.sms", f"expected a positive integer (streaming multiprocessors), got {sms!r}")
    if not isinstance(spec["classes"], dict) or not spec["classes"]:
        _fail(f"{where}.classes", "expected a mapping of op class -> {kernel_s, efficiency, memory_efficiency}")
    allowed = _class_names()
    classes = {}
    for name, entry in spec["classes"].items():
        at = f"{where}.classes.{name}"
        if name not in allowed:
            hint = difflib.get_close_matches(str(name), allowed, n=1)
            _fail(at, "unknown op class" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                  + "; allowed: <conv|linear|attention>_<precision>, norm, softmax, elementwise, memory")
        _mapping(entry, at, CLASS_KEYS)
        values = {key: _number(entry[key], f"{at}.{key}") for key in ("kernel_s", "efficiency", "memory_efficiency")}
        for key in ("efficiency", "memory_efficiency"):
            if values[key] > 1:
                _fail(f"{at}.{key}", f"an efficiency is at most 1, got {values[key]!r}")
        tiles = {key: int(_number(entry.get(key, 128), f"{at}.{key}")) for key in ("tile_m", "tile_n")}
        split = entry.get("split_k_min", 0)
        if split != 0:
            split = int(_number(split, f"{at}.split_k_min"))
        classes[name] = ClassParams(**values, **tiles, split_k_min=split)
    return classes, sms, spec["source"]


def _engine(name: str, spec, where: str) -> Engine:
    _mapping(spec, where, {"description": False, "compute": True, "vector": True, "kernel_overhead_s": True,
                           "calibration": False})
    compute = spec["compute"]
    if not isinstance(compute, dict) or not compute:
        _fail(f"{where}.compute", "expected a mapping of compute precision -> {peak, accumulate, source}")
    peaks = {}
    for precision, entry in compute.items():
        if precision not in COMPUTE_TYPES:
            hint = difflib.get_close_matches(str(precision), list(COMPUTE_TYPES), n=1)
            _fail(f"{where}.compute.{precision}", "unknown compute precision"
                  + (f" (did you mean {hint[0]!r}?)" if hint else "") + f"; allowed: {', '.join(COMPUTE_TYPES)}")
        peaks[precision] = _sourced(entry, f"{where}.compute.{precision}", "peak", extra=("accumulate",))
    return Engine(
        name=name,
        peaks=peaks,
        vector_peak=_sourced(spec["vector"], f"{where}.vector", "peak"),
        kernel_overhead_s=_sourced(spec["kernel_overhead_s"], f"{where}.kernel_overhead_s", "value"),
    )


def _energy(spec, where: str) -> EnergyModel:
    _mapping(spec, where, {"table": True, "node_nm": True, "sram": False, "dram_pj_per_byte": False})
    try:
        table = load_table(spec["table"])
    except ValueError as err:
        _fail(f"{where}.table", str(err))
    sram = spec.get("sram", "sram_1mb")
    if sram not in table.memory_pj_per_byte or not sram.startswith("sram"):
        allowed = [k for k in table.memory_pj_per_byte if k.startswith("sram")]
        _fail(f"{where}.sram", f"{sram!r} is not an SRAM of table {table.name}; allowed: {', '.join(allowed)}")
    dram = table.memory_pj_per_byte["dram"]
    if "dram_pj_per_byte" in spec:
        dram = _sourced(spec["dram_pj_per_byte"], f"{where}.dram_pj_per_byte", "value")
    return EnergyModel(table, _sourced(spec["node_nm"], f"{where}.node_nm", "value"), dram,
                       table.memory_pj_per_byte[sram])


def parse_device(data, where: str) -> RooflineDevice:
    _mapping(data, where, {
        "name": True, "aliases": False, "description": True, "model": True, "default_engine": True,
        "engines": True, "memory": True, "power_w": False, "energy": False,
    })
    name = _text(data["name"], f"{where}.name")
    if data["model"] not in DEVICE_MODELS:
        _fail(f"{where}.model", f"unknown device model {data['model']!r}; allowed: {', '.join(DEVICE_MODELS)}")
    aliases = data.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        _fail(f"{where}.aliases", "expected a list of names")
    engines = data["engines"]
    if not isinstance(engines, dict) or not engines:
        _fail(f"{where}.engines", "expected a mapping of engine name -> engine")
    if data["default_engine"] not in engines:
        _fail(f"{where}.default_engine", f"{data['default_engine']!r} is not an engine; allowed: {', '.join(engines)}")
    parsed = {key: _engine(key, spec, f"{where}.engines.{key}") for key, spec in engines.items()}
    memory = _mapping(data["memory"], f"{where}.memory", {"dram": True, "l2": False})
    dram = memory["dram"]
    _mapping(dram, f"{where}.memory.dram", {"bandwidth": True, "capacity": False, "source": True})
    _text(dram["source"], f"{where}.memory.dram.source")
    if "capacity" in dram:
        _number(dram["capacity"], f"{where}.memory.dram.capacity")
    if "l2" in memory:
        _sourced(memory["l2"], f"{where}.memory.l2", "capacity")
    if "power_w" in data:
        _sourced(data["power_w"], f"{where}.power_w", "value")
    arguments = dict(
        name=name,
        description=_text(data["description"], f"{where}.description"),
        engine=parsed[data["default_engine"]],
        dram_bandwidth=_number(dram["bandwidth"], f"{where}.memory.dram.bandwidth"),
        aliases=aliases,
    )
    calibration = engines[data["default_engine"]].get("calibration")
    if calibration is None:
        device = RooflineDevice(**arguments)
    else:
        where_cal = f"{where}.engines.{data['default_engine']}.calibration"
        classes, sms, source = _calibration(calibration, where_cal)
        device = CalibratedDevice(**arguments, classes=classes, sms=sms, calibration_source=source)
    device.energy = _energy(data["energy"], f"{where}.energy") if "energy" in data else None
    device.spec = data  # the file's contents, for `simdq hw show` and for writing calibrated copies
    return device


def without_calibration(device: RooflineDevice) -> RooflineDevice:
    """The same device as a plain roofline (to compare a calibrated model with its roofline)."""
    plain = RooflineDevice(device.name, device.description, device.engine, device.dram_bandwidth, device.aliases)
    plain.energy, plain.spec = device.energy, device.spec
    return plain


def read_device_file(path: Path) -> RooflineDevice:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise DeviceFileError(f"{path}: cannot read device file ({err.strerror})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise DeviceFileError(f"{path}:{line} is not valid YAML ({getattr(err, 'problem', err)})") from None
    return parse_device(data, path.name)


@lru_cache(maxsize=None)
def _catalogue() -> dict:
    return {path.stem: read_device_file(path) for path in sorted(DEVICE_DIR.glob("*.yaml"))}


def list_devices() -> list:
    return list(_catalogue().values())


def load_device(name_or_path: str) -> RooflineDevice:
    """A catalogue device by name or alias, or a device file given by path (anything ending in .yaml/.yml)."""
    if name_or_path.endswith((".yaml", ".yml")):
        return read_device_file(Path(name_or_path))
    names = {}
    for device in list_devices():
        for name in (device.name, *device.aliases):
            names[name.lower()] = device
    device = names.get(name_or_path.lower())
    if device is None:
        hint = difflib.get_close_matches(name_or_path.lower(), list(names), n=1)
        raise DeviceFileError(
            f"unknown device {name_or_path!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
            + f"; allowed: {', '.join(sorted(names))}, or a path to a device .yaml file"
        )
    return device
