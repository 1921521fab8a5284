"""The device catalogue: YAML files in hw_models/devices, or a user's own file, checked by hw_models.schema
and built into a Device; names, aliases and the NAME[:ENGINE][@MODE] selection.
"""

from __future__ import annotations

import copy
import dataclasses
from functools import lru_cache
from pathlib import Path

from diagnostics import YamlFileError, did_you_mean, read_yaml, unknown

from .device import Device, DeviceFileError
from .energy import EnergyModel, EnergyTable, MeasuredEnergy, load_table
from .engines.calibrated import CalibratedEngine, ClassParams, FftShape
from .engines.roofline import EngineRates, RooflineEngine
from .engines.systolic import SystolicEngine
from .engines.xnor import XnorEngine
from .schema import DeviceSpec, EnergySpec, RooflineSpec, SystolicSpec, XnorSpec, read_spec

DEVICE_DIR = Path(__file__).with_name("devices")
ROOFLINE = "-roofline"  # NAME-roofline: a calibrated device as its plain roofline


def _roofline_engine(name: str, spec: RooflineSpec, dram_bandwidth: float, energy, scale: float):
    rates = EngineRates(
        peaks={precision: entry.peak for precision, entry in spec.compute.items()},
        vector_peak=spec.vector.peak, kernel_overhead_s=spec.kernel_overhead_s.value,
        sparse_peaks={p: entry.sparse_peak for p, entry in spec.compute.items() if entry.sparse_peak is not None},
    ).scaled(scale)
    kinds = frozenset(spec.kinds) if spec.kinds is not None else None
    if isinstance(energy, EnergyModel) and spec.energy_scale is not None:
        energy = dataclasses.replace(energy, op_scale=spec.energy_scale.value)
    if spec.calibration is None:
        return RooflineEngine(name, rates, dram_bandwidth, energy, kinds)
    classes = {op_class: ClassParams(**fit.model_dump(exclude={"median_error", "samples"}))
               for op_class, fit in spec.calibration.classes.items()}
    ffts = spec.calibration.fft_convolutions
    fft_shapes = [FftShape(**shape.model_dump()) for shape in ffts.shapes] if ffts else ()
    return CalibratedEngine(name, rates, dram_bandwidth, energy, kinds, classes=classes, sms=spec.calibration.sms,
                            calibration_source=spec.calibration.source, fft_shapes=fft_shapes)


def _systolic_engine(name: str, spec: SystolicSpec, dram_bandwidth: float, energy, scale: float):
    return SystolicEngine(
        name, rows=spec.rows.value, cols=spec.cols.value, clock_hz=spec.clock_hz.value * scale,
        dataflow=spec.dataflow, macs_per_pe={p: entry.macs_per_pe for p, entry in spec.precisions.items()},
        buffer_bytes=spec.buffer_bytes.value, kernel_overhead_s=spec.kernel_overhead_s.value,
        dram_bandwidth=dram_bandwidth, energy=energy, kinds=frozenset(spec.kinds) if spec.kinds is not None else None,
    )


def _xnor_engine(name: str, spec: XnorSpec, dram_bandwidth: float, energy, scale: float):
    if isinstance(energy, EnergyModel):  # the array's energy per binary op is its design's figure
        energy = dataclasses.replace(energy, binary_op_fj=spec.fj_per_binary_op.value)
    return XnorEngine(name, binary_macs_per_s=spec.binary_macs_per_s.value * scale,
                      max_activation_bits=spec.max_activation_bits.value,
                      kernel_overhead_s=spec.kernel_overhead_s.value, dram_bandwidth=dram_bandwidth, energy=energy,
                      packing_bytes_per_s=spec.input_packing_bytes_per_s.value if spec.input_packing_bytes_per_s
                      else None)


ENGINE_BUILDERS = {"roofline": _roofline_engine, "systolic": _systolic_engine, "xnor": _xnor_engine}


def _energy(spec: EnergySpec, where: str):
    if spec.measured is not None:
        m = spec.measured
        return MeasuredEnergy(m.static_w, dict(m.mac_pj), m.vector_op_pj, m.dram_pj_per_byte, m.source, m.conv_mac_pj,
                              m.busy_w, m.launch_gap_s, m.l2_pj_per_byte, m.l2_bytes, m.strided_pj_per_byte)
    if isinstance(spec.table, str):
        table = load_table(spec.table)
    else:
        inline = spec.table
        operations = {op: value for op, value in inline.operations_pj.model_dump().items() if value is not None}
        table = EnergyTable(inline.name, inline.source, inline.node_nm, operations, dict(inline.memory_pj_per_byte))
    srams = [key for key in table.memory_pj_per_byte if key.startswith("sram")]
    if spec.sram not in srams:
        raise DeviceFileError(f"{where}.energy.sram: {spec.sram!r} is not an SRAM of table {table.name}; "
                              f"allowed: {', '.join(srams)}")
    dram = spec.dram_pj_per_byte.value if spec.dram_pj_per_byte else table.memory_pj_per_byte["dram"]
    return EnergyModel(table, spec.node_nm.value, dram, table.memory_pj_per_byte[spec.sram])


def _power_scales(spec: DeviceSpec, where: str, mode):
    """(mode name, engine -> clock scale) of the chosen power mode (the first listed by default)."""
    if spec.power_modes is None:
        if mode is not None:
            raise DeviceFileError(f"{where}: has no power modes, so @{mode} cannot be chosen")
        return None, {}
    chosen = mode if mode is not None else next(iter(spec.power_modes))
    matches = [m for m in spec.power_modes if str(m).lower() == str(chosen).lower()]
    if not matches:
        raise DeviceFileError(f"{where}: " + unknown("power mode", chosen, list(spec.power_modes)))
    return matches[0], {engine: entry.scale for engine, entry in spec.power_modes[matches[0]].items()}


def parse_device(data, where: str, engine=None, mode=None) -> Device:
    """The device of a file's contents; `engine` and `mode` pick an engine to run layers on first and a
    power mode (defaults: the file's default_engine and its first power mode)."""
    spec = read_spec(data, where)
    if engine is not None and engine not in spec.engines:
        raise DeviceFileError(f"{where}: has no engine {engine!r}; allowed: {', '.join(spec.engines)}")
    energy = _energy(spec.energy, where) if spec.energy is not None else None
    mode_name, scales = _power_scales(spec, where, mode)
    bandwidth = spec.memory.dram.bandwidth
    engines = {key: ENGINE_BUILDERS[entry.model](key, entry, bandwidth, energy, scales.get(key, 1.0))
               for key, entry in spec.engines.items()}
    first = engine or spec.default_engine
    order = [first] + [e for e in (spec.fallback_engine,) if e and e != first]
    return Device(spec.name, spec.description, engines, order, spec.aliases, data, mode_name)


def is_calibrated(spec: dict) -> bool:
    return any("calibration" in engine for engine in spec.get("engines", {}).values())


def roofline_spec(spec: dict) -> dict:
    """A calibrated device file's contents as its plain roofline: no calibration, energy from its table."""
    plain = copy.deepcopy(spec)
    plain["name"] = f"{spec['name']}{ROOFLINE}"
    plain["aliases"] = [f"{alias}{ROOFLINE}" for alias in spec.get("aliases", ())]
    plain["description"] = f"{spec['description']} (roofline: the calibration left out)"
    for engine in plain["engines"].values():
        engine.pop("calibration", None)
    if plain.get("energy"):
        plain["energy"].pop("measured", None)
    return plain


def without_calibration(device: Device) -> Device:
    """The same device with plain roofline engines and table energy (to compare with its calibration)."""
    return parse_device(roofline_spec(device.spec), f"{device.name}{ROOFLINE}", mode=device.mode)


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
    plain = name_or_path.lower().endswith(ROOFLINE) and names.get(name_or_path.lower()[:-len(ROOFLINE)])
    if device is None and plain and is_calibrated(plain.spec):
        return parse_device(roofline_spec(plain.spec), name_or_path, engine, mode)
    if device is None:
        raise DeviceFileError(f"unknown device {name_or_path!r}{did_you_mean(name_or_path.lower(), names)}; "
                              f"allowed: {', '.join(sorted(names))}, or a path to a device .yaml file")
    if engine is None and mode is None:
        return device
    return parse_device(device.spec, device.name, engine, mode)
