"""The device catalogue: YAML files in hw_models/devices, or a user's own file, validated on load.

Every number in a device file is a mapping with a `source:` that says where it comes from.
"""

from __future__ import annotations

import dataclasses
import difflib
from functools import lru_cache
from pathlib import Path

import yaml

from .calibrated import GEMM_CLASS_PREFIX, VECTOR_CLASS, CalibratedEngine, ClassParams
from .device import Device
from .energy import EnergyModel, EnergyTable, load_table
from .precision import COMPUTE_TYPES
from .roofline import EngineRates, RooflineEngine
from .workload import LAYER_KINDS
from .systolic import DATAFLOWS, SystolicEngine
from .xnor import XnorEngine

DEVICE_DIR = Path(__file__).with_name("devices")
ENGINE_MODELS = ("roofline", "xnor", "systolic")


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


def _known(name, allowed, where: str, what: str):
    """Fail with a did-you-mean unless `name` is among `allowed`."""
    if name not in allowed:
        hint = difflib.get_close_matches(str(name), [str(a) for a in allowed], n=1)
        _fail(where, f"unknown {what}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
              + f"; allowed: {', '.join(map(str, allowed))}")
    return name


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
        _known(name, allowed, at, "op class")
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


def _rates(spec, where: str) -> EngineRates:
    compute = spec["compute"]
    if not isinstance(compute, dict) or not compute:
        _fail(f"{where}.compute", "expected a mapping of compute precision -> {peak, accumulate, source}")
    peaks, sparse = {}, {}
    for precision, entry in compute.items():
        at = f"{where}.compute.{precision}"
        _known(precision, list(COMPUTE_TYPES), at, "compute precision")
        peaks[precision] = _sourced(entry, at, "peak", extra=("accumulate", "sparse_peak"))
        if "sparse_peak" in entry:
            sparse[precision] = _number(entry["sparse_peak"], f"{at}.sparse_peak")
    return EngineRates(
        peaks=peaks,
        vector_peak=_sourced(spec["vector"], f"{where}.vector", "peak"),
        kernel_overhead_s=_sourced(spec["kernel_overhead_s"], f"{where}.kernel_overhead_s", "value"),
        sparse_peaks=sparse,
    )


def _kinds(spec, where: str):
    kinds = spec.get("kinds")
    if kinds is None:
        return None
    if not isinstance(kinds, list) or not all(k in LAYER_KINDS for k in kinds):
        _fail(f"{where}.kinds", f"expected a list of layer kinds among {', '.join(LAYER_KINDS)}, got {kinds!r}")
    return frozenset(kinds)


def _engine(name: str, spec, where: str, dram_bandwidth: float, energy, scale: float):
    model = spec.get("model", "roofline") if isinstance(spec, dict) else None
    _known(model, ENGINE_MODELS, f"{where}.model", f"engine model {model!r}")
    if model == "xnor":
        return _xnor_engine(name, spec, where, dram_bandwidth, energy, scale)
    if model == "systolic":
        return _systolic_engine(name, spec, where, dram_bandwidth, energy, scale)
    _mapping(spec, where, {"model": False, "description": False, "kinds": False, "compute": True, "vector": True,
                           "kernel_overhead_s": True, "calibration": False, "energy_scale": False})
    rates = _rates(spec, where).scaled(scale)
    kinds = _kinds(spec, where)
    if energy is not None and "energy_scale" in spec:
        energy = dataclasses.replace(energy, op_scale=_sourced(spec["energy_scale"], f"{where}.energy_scale", "value"))
    if "calibration" not in spec:
        return RooflineEngine(name, rates, dram_bandwidth, energy, kinds)
    classes, sms, source = _calibration(spec["calibration"], f"{where}.calibration")
    return CalibratedEngine(name, rates, dram_bandwidth, energy, kinds, classes=classes, sms=sms,
                            calibration_source=source)


def _xnor_engine(name, spec, where, dram_bandwidth, energy, scale) -> XnorEngine:
    _mapping(spec, where, {"model": True, "description": False, "binary_macs_per_s": True, "fj_per_binary_op": True,
                           "max_activation_bits": True, "kernel_overhead_s": True})
    bits = _sourced(spec["max_activation_bits"], f"{where}.max_activation_bits", "value")
    if bits != int(bits) or not 1 <= bits <= 16:
        _fail(f"{where}.max_activation_bits.value", f"expected an integer 1..16, got {bits!r}")
    return XnorEngine(
        name,
        binary_macs_per_s=_sourced(spec["binary_macs_per_s"], f"{where}.binary_macs_per_s", "value") * scale,
        fj_per_binary_op=_sourced(spec["fj_per_binary_op"], f"{where}.fj_per_binary_op", "value"),
        max_activation_bits=int(bits),
        kernel_overhead_s=_sourced(spec["kernel_overhead_s"], f"{where}.kernel_overhead_s", "value"),
        dram_bandwidth=dram_bandwidth,
        energy=energy,
    )


def _integer(spec, where: str) -> int:
    value = _sourced(spec, where, "value")
    if value != int(value):
        _fail(f"{where}.value", f"expected an integer, got {value!r}")
    return int(value)


def _systolic_engine(name, spec, where, dram_bandwidth, energy, scale) -> SystolicEngine:
    _mapping(spec, where, {"model": True, "description": False, "kinds": False, "rows": True, "cols": True,
                           "clock_hz": True, "dataflow": True, "precisions": True, "buffer_bytes": True,
                           "kernel_overhead_s": True})
    _known(spec["dataflow"], DATAFLOWS, f"{where}.dataflow", f"dataflow {spec['dataflow']!r}")
    precisions = spec["precisions"]
    if not isinstance(precisions, dict) or not precisions:
        _fail(f"{where}.precisions", "expected a mapping of precision -> {macs_per_pe, source}")
    macs_per_pe = {}
    for precision, entry in precisions.items():
        _known(precision, list(COMPUTE_TYPES), f"{where}.precisions.{precision}", "compute precision")
        macs_per_pe[precision] = _sourced(entry, f"{where}.precisions.{precision}", "macs_per_pe")
    return SystolicEngine(
        name, rows=_integer(spec["rows"], f"{where}.rows"), cols=_integer(spec["cols"], f"{where}.cols"),
        clock_hz=_sourced(spec["clock_hz"], f"{where}.clock_hz", "value") * scale, dataflow=spec["dataflow"],
        macs_per_pe=macs_per_pe, buffer_bytes=_sourced(spec["buffer_bytes"], f"{where}.buffer_bytes", "value"),
        kernel_overhead_s=_sourced(spec["kernel_overhead_s"], f"{where}.kernel_overhead_s", "value"),
        dram_bandwidth=dram_bandwidth, energy=energy, kinds=_kinds(spec, where),
    )


def _power_scales(data, where: str, engines: dict, mode):
    """(mode name, engine -> clock scale) of the chosen power mode (the first listed by default)."""
    modes = data.get("power_modes")
    if modes is None:
        if mode is not None:
            _fail(where, f"has no power modes, so @{mode} cannot be chosen")
        return None, {}
    if not isinstance(modes, dict) or not modes:
        _fail(f"{where}.power_modes", "expected a mapping of mode name -> {engine: {scale, source}}")
    for name, entry in modes.items():
        _mapping(entry, f"{where}.power_modes.{name}", {engine: False for engine in engines})
        for engine, scale in entry.items():
            _sourced(scale, f"{where}.power_modes.{name}.{engine}", "scale")
    chosen = mode if mode is not None else next(iter(modes))
    matches = [m for m in modes if str(m).lower() == str(chosen).lower()]
    if not matches:
        _fail(where, f"unknown power mode {chosen!r}; allowed: {', '.join(map(str, modes))}")
    return matches[0], {engine: float(s["scale"]) for engine, s in modes[matches[0]].items()}


REQUIRED_OPERATIONS = ("int8_add", "int8_mult", "fp32_add", "fp32_mult")  # the derivation rules start here


def _inline_table(spec, where: str) -> EnergyTable:
    """A device's own energy table, in the layout of hw_models/energy/*.yaml."""
    _mapping(spec, where, {"name": True, "source": True, "node_nm": True, "operations_pj": True,
                           "memory_pj_per_byte": True})
    operations = _mapping(spec["operations_pj"], f"{where}.operations_pj", {
        op: op in REQUIRED_OPERATIONS for op in ("int8_add", "int8_mult", "int32_add", "int32_mult", "fp16_add",
                                                 "fp16_mult", "bf16_add", "bf16_mult", "fp32_add", "fp32_mult")})
    memory = spec["memory_pj_per_byte"]
    if not isinstance(memory, dict) or "dram" not in memory or not any(str(k).startswith("sram") for k in memory):
        _fail(f"{where}.memory_pj_per_byte", "expected dram and at least one sram_* entry (pJ per byte)")
    return EnergyTable(
        _text(spec["name"], f"{where}.name"), _text(spec["source"], f"{where}.source"),
        _number(spec["node_nm"], f"{where}.node_nm"),
        {op: _number(v, f"{where}.operations_pj.{op}") for op, v in operations.items()},
        {k: _number(v, f"{where}.memory_pj_per_byte.{k}") for k, v in memory.items()},
    )


def _energy(spec, where: str) -> EnergyModel:
    _mapping(spec, where, {"table": True, "node_nm": True, "sram": False, "dram_pj_per_byte": False})
    if isinstance(spec["table"], dict):
        table = _inline_table(spec["table"], f"{where}.table")
    else:
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


def parse_device(data, where: str, engine=None, mode=None) -> Device:
    """The device of a file's contents; `engine` and `mode` pick an engine to run layers on first and a
    power mode (defaults: the file's default_engine and its first power mode)."""
    _mapping(data, where, {
        "name": True, "aliases": False, "description": True, "default_engine": True, "fallback_engine": False,
        "engines": True, "memory": True, "power_w": False, "power_modes": False, "energy": False,
    })
    name = _text(data["name"], f"{where}.name")
    aliases = data.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        _fail(f"{where}.aliases", "expected a list of names")
    engines = data["engines"]
    if not isinstance(engines, dict) or not engines:
        _fail(f"{where}.engines", "expected a mapping of engine name -> engine")
    for key in ("default_engine", "fallback_engine"):
        if key in data and data[key] not in engines:
            _fail(f"{where}.{key}", f"{data[key]!r} is not an engine; allowed: {', '.join(engines)}")
    if engine is not None and engine not in engines:
        _fail(where, f"has no engine {engine!r}; allowed: {', '.join(engines)}")
    memory = _mapping(data["memory"], f"{where}.memory", {"dram": True, "l2": False, "sram": False})
    dram = memory["dram"]
    _mapping(dram, f"{where}.memory.dram", {"bandwidth": True, "capacity": False, "source": True})
    _text(dram["source"], f"{where}.memory.dram.source")
    if "capacity" in dram:
        _number(dram["capacity"], f"{where}.memory.dram.capacity")
    for level in ("l2", "sram"):
        if level in memory:
            _sourced(memory[level], f"{where}.memory.{level}", "capacity", extra=("bandwidth",))
    if "power_w" in data:
        _sourced(data["power_w"], f"{where}.power_w", "value")
    bandwidth = _number(dram["bandwidth"], f"{where}.memory.dram.bandwidth")
    energy = _energy(data["energy"], f"{where}.energy") if "energy" in data else None
    mode_name, scales = _power_scales(data, where, engines, mode)
    models = {
        key: _engine(key, spec, f"{where}.engines.{key}", bandwidth, energy, scales.get(key, 1.0))
        for key, spec in engines.items()
    }
    first = engine or data["default_engine"]
    order = [first] + [e for e in (data.get("fallback_engine"),) if e and e != first]
    return Device(name, _text(data["description"], f"{where}.description"), models, order, aliases, data, mode_name)


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
        return yaml.safe_load(path.read_text())
    except OSError as err:
        raise DeviceFileError(f"{path}: cannot read device file ({err.strerror})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise DeviceFileError(f"{path}:{line} is not valid YAML ({getattr(err, 'problem', err)})") from None


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
        hint = difflib.get_close_matches(name_or_path.lower(), list(names), n=1)
        raise DeviceFileError(
            f"unknown device {name_or_path!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
            + f"; allowed: {', '.join(sorted(names))}, or a path to a device .yaml file"
        )
    if engine is None and mode is None:
        return device
    return parse_device(device.spec, device.name, engine, mode)
