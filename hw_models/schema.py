"""The device-file schema: every key a device file may hold, checked on load, each number a mapping with
a `source:`; and the Device the checked file describes. Every error is one line naming the key's path and
what is allowed (a did-you-mean for unknown names).
"""

from __future__ import annotations

import dataclasses

from diagnostics import did_you_mean

from .device import Device, DeviceFileError
from .energy import EnergyModel, EnergyTable, load_table
from .engines.calibrated import GEMM_CLASS_PREFIX, VECTOR_CLASS, CalibratedEngine, ClassParams
from .engines.roofline import EngineRates, RooflineEngine
from .engines.systolic import DATAFLOWS, SystolicEngine
from .engines.xnor import XnorEngine
from .precision import COMPUTE_TYPES
from .workload import LAYER_KINDS

ENGINE_MODELS = ("roofline", "xnor", "systolic")


def _fail(where: str, message: str):
    raise DeviceFileError(f"{where}: {message}")


def _mapping(value, where: str, keys: dict) -> dict:
    """Check that `value` is a mapping whose keys are among `keys` (key -> required)."""
    if not isinstance(value, dict):
        _fail(where, f"expected a mapping with keys {', '.join(keys)}, got {type(value).__name__}")
    for key in value:
        if key not in keys:
            _fail(f"{where}.{key}", f"unknown key{did_you_mean(key, keys)}; allowed: {', '.join(keys)}")
    for key, required in keys.items():
        if required and key not in value:
            _fail(where, f"missing key {key!r}")
    return value


def _known(name, allowed, where: str, what: str):
    """Fail with a did-you-mean unless `name` is among `allowed`."""
    if name not in allowed:
        _fail(where, f"unknown {what}{did_you_mean(name, allowed)}; allowed: {', '.join(map(str, allowed))}")
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
    binary_op_fj = _sourced(spec["fj_per_binary_op"], f"{where}.fj_per_binary_op", "value")
    return XnorEngine(
        name,
        binary_macs_per_s=_sourced(spec["binary_macs_per_s"], f"{where}.binary_macs_per_s", "value") * scale,
        max_activation_bits=int(bits),
        kernel_overhead_s=_sourced(spec["kernel_overhead_s"], f"{where}.kernel_overhead_s", "value"),
        dram_bandwidth=dram_bandwidth,
        energy=None if energy is None else dataclasses.replace(energy, binary_op_fj=binary_op_fj),
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
