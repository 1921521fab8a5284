"""The device-file schema: every key a device file may hold (pydantic, like model.yaml), every number a
mapping with its `source:`. Errors come out as model.yaml's do: one line naming the key's path and what
is allowed, with a did-you-mean for unknown keys and names (diagnostics.explain).

An engine's `model:` (roofline, the default; systolic; xnor) picks which keys it takes. A compute
precision's `accumulate:` is kept as written, for the emulator's accumulator presets to fill.
"""

from __future__ import annotations

from typing import Annotated, Dict, List, Literal, Optional, Union

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag,
                      field_validator, model_validator)

from diagnostics import unknown, validate

from .device import DeviceFileError
from .energy import TABLE_DIR
from .engines.calibrated import (BIAS_ADD_CLASS, CONVERSION_CLASSES, FFT_CLASS, FFT_SIDES, FP32_VECTOR_CLASSES,
                                 GEMM_CLASS_PREFIX, SIDE_CLASSES, STRIDED_CLASSES, VECTOR_CLASS, fft_side_class)
from .engines.systolic import DATAFLOWS
from .precision import COMPUTE_TYPES
from .workload import LAYER_KINDS

ENGINE_MODELS = ("roofline", "systolic", "xnor")
REQUIRED_OPERATIONS = ("int8_add", "int8_mult", "fp32_add", "fp32_mult")  # the energy derivation rules start here


# no device rate, size or energy comes near 1e30 (an H200's 4e15 op/s, 141e9 bytes); larger is a typo or .inf
LARGEST_NUMBER = 1e30


def _positive(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= LARGEST_NUMBER:
        raise ValueError(f"expected a positive finite number up to {LARGEST_NUMBER:g}, got {value!r}")
    return float(value)


def _positive_integer(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value <= 2**31 \
            or value != int(value):
        raise ValueError(f"expected a positive integer up to 2**31, got {value!r}")
    return int(value)


def _text(value):
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


def _efficiency(value):
    if value > 1:
        raise ValueError(f"an efficiency is at most 1, got {value!r}")
    return value


def _one_of(allowed, what: str):
    """A name that must be among `allowed` (a did-you-mean otherwise)."""

    def check(name):
        if name not in allowed:
            raise ValueError(unknown(what, name, allowed))
        return name

    return Annotated[str, AfterValidator(check)]


Positive = Annotated[float, BeforeValidator(_positive)]
PositiveInteger = Annotated[int, BeforeValidator(_positive_integer)]
Text = Annotated[str, BeforeValidator(_text)]
Efficiency = Annotated[Positive, AfterValidator(_efficiency)]
ComputePrecision = _one_of(tuple(COMPUTE_TYPES), "compute precision")
LayerKind = _one_of(LAYER_KINDS, "layer kind")
GEMM_CLASS_PREFIXES = sorted({*GEMM_CLASS_PREFIX.values(), "pointwise", "downsample"})
OP_CLASSES = tuple([f"{prefix}_{precision}" for prefix in GEMM_CLASS_PREFIXES
                    for precision in COMPUTE_TYPES]
                   + sorted(set(VECTOR_CLASS.values())) + list(CONVERSION_CLASSES) + list(SIDE_CLASSES)
                   + list(STRIDED_CLASSES) + [BIAS_ADD_CLASS] + list(FP32_VECTOR_CLASSES) + [FFT_CLASS]
                   + [fft_side_class(side) for side in FFT_SIDES])
OpClass = _one_of(OP_CLASSES, "op class")
TABLE_NAMES = tuple(sorted(path.stem for path in TABLE_DIR.glob("*.yaml")))
TableName = _one_of(TABLE_NAMES, "energy table")
Dataflow = _one_of(DATAFLOWS, "dataflow")
EngineModelName = _one_of(ENGINE_MODELS, "engine model")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sourced(_Strict):
    value: Positive
    source: Text


class SourcedInteger(_Strict):
    value: PositiveInteger
    source: Text


class Peak(_Strict):
    """A compute precision's dense rate in operations per second (a MAC is two)."""

    peak: Positive
    source: Text
    accumulate: Optional[str] = None
    sparse_peak: Optional[Positive] = None


class VectorRate(_Strict):
    peak: Positive
    source: Text


class ClassFit(_Strict):
    """One op class of the calibrated GPU model (hw_models.engines.calibrated.ClassParams)."""

    kernel_s: Positive
    efficiency: Efficiency
    memory_efficiency: Efficiency
    tile_m: PositiveInteger = 128
    tile_n: PositiveInteger = 128
    split_k_min: Annotated[int, Field(ge=0)] = 0
    head_dim_granule: Annotated[int, Field(ge=0)] = 0
    transform_efficiency: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.0
    wide_tile_m: Annotated[int, Field(ge=0)] = 0
    wide_tile_n: Annotated[int, Field(ge=0)] = 0
    wide_efficiency: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.0
    dram_latency_per_k_s: Annotated[float, Field(ge=0, le=1e-6, allow_inf_nan=False)] = 0.0
    median_error: Optional[Annotated[float, Field(ge=0, allow_inf_nan=False)]] = None
    samples: Optional[PositiveInteger] = None

    @model_validator(mode="after")
    def _wide_tiling_whole(self):
        if self.wide_efficiency and not (self.wide_tile_m and self.wide_tile_n):
            raise ValueError("wide_efficiency needs wide_tile_m and wide_tile_n (both > 0)")
        return self


class FftShapeSpec(_Strict):
    """A 3x3 fp32 convolution cuDNN ran as an FFT on the calibration GPU (hw_models.engines.calibrated.FftShape)."""

    batch: PositiveInteger
    size: PositiveInteger
    in_channels: PositiveInteger
    out_channels: PositiveInteger
    kernels: PositiveInteger


class FftConvolutions(_Strict):
    source: Text
    shapes: Annotated[List[FftShapeSpec], Field(min_length=1)]


class Calibration(_Strict):
    source: Text
    sms: PositiveInteger
    classes: Annotated[Dict[OpClass, ClassFit], Field(min_length=1)]
    # where cuDNN runs an FFT instead of an implicit GEMM (priced by the FFT class where the file has it)
    fft_convolutions: Optional[FftConvolutions] = None
    validation: Optional[Text] = None  # how close whole forwards came, and where that is reported


class RooflineSpec(_Strict):
    model: Literal["roofline"] = "roofline"
    description: Optional[str] = None
    kinds: Optional[List[LayerKind]] = None
    compute: Annotated[Dict[ComputePrecision, Peak], Field(min_length=1)]
    vector: VectorRate
    kernel_overhead_s: Sourced
    calibration: Optional[Calibration] = None
    energy_scale: Optional[Sourced] = None


class MacsPerPe(_Strict):
    macs_per_pe: Positive
    source: Text
    accumulate: Optional[str] = None


class SystolicSpec(_Strict):
    model: Literal["systolic"]
    description: Optional[str] = None
    kinds: Optional[List[LayerKind]] = None
    rows: SourcedInteger
    cols: SourcedInteger
    clock_hz: Sourced
    dataflow: Dataflow
    precisions: Annotated[Dict[ComputePrecision, MacsPerPe], Field(min_length=1)]
    buffer_bytes: Sourced
    kernel_overhead_s: Sourced


class ActivationBits(SourcedInteger):
    @field_validator("value")
    @classmethod
    def _at_most_16(cls, value):
        if value > 16:
            raise ValueError(f"expected an integer 1..16, got {value!r}")
        return value


class XnorSpec(_Strict):
    model: Literal["xnor"]
    description: Optional[str] = None
    binary_macs_per_s: Sourced
    fj_per_binary_op: Sourced
    max_activation_bits: ActivationBits
    kernel_overhead_s: Sourced
    # an engine that binarizes and bit-packs a full-precision input itself, one pass per activation plane (LCE's
    # LceQuantize before LceBconv2d), at this many bytes (read and written) per second; absent: inputs arrive packed
    input_packing_bytes_per_s: Optional[Sourced] = None


class UnknownEngine(BaseModel):
    """An engine whose model: is none of ENGINE_MODELS; only that is reported."""

    model_config = ConfigDict(extra="allow")
    model: EngineModelName


def _engine_model(value) -> str:
    model = value.get("model", "roofline") if isinstance(value, dict) else getattr(value, "model", "roofline")
    return f"model={model}" if model in ENGINE_MODELS else "model=?"


EngineSpec = Annotated[
    Union[Annotated[RooflineSpec, Tag("model=roofline")], Annotated[SystolicSpec, Tag("model=systolic")],
          Annotated[XnorSpec, Tag("model=xnor")], Annotated[UnknownEngine, Tag("model=?")]],
    Discriminator(_engine_model),
]


class DramSpec(_Strict):
    bandwidth: Positive
    capacity: Optional[Positive] = None
    source: Text


class CapacitySpec(_Strict):
    capacity: Positive
    bandwidth: Optional[Positive] = None
    source: Text


class MemorySpec(_Strict):
    dram: DramSpec
    l2: Optional[CapacitySpec] = None
    sram: Optional[CapacitySpec] = None


class Operations(_Strict):
    """pJ per operation; the four without a default are what the derivation rules start from."""

    int8_add: Positive
    int8_mult: Positive
    fp32_add: Positive
    fp32_mult: Positive
    int32_add: Optional[Positive] = None
    int32_mult: Optional[Positive] = None
    fp16_add: Optional[Positive] = None
    fp16_mult: Optional[Positive] = None
    bf16_add: Optional[Positive] = None
    bf16_mult: Optional[Positive] = None


def _memory_entries(entries):
    if "dram" not in entries or not any(str(key).startswith("sram") for key in entries):
        raise ValueError("expected dram and at least one sram_* entry (pJ per byte)")
    return entries


class EnergyTableSpec(_Strict):
    """A device's own energy table, in the layout of hw_models/energy/*.yaml."""

    name: Text
    source: Text
    node_nm: Positive
    operations_pj: Operations
    memory_pj_per_byte: Annotated[Dict[str, Positive], AfterValidator(_memory_entries)]


class MeasuredEnergySpec(_Strict):
    """Energy fitted to the GPU's own counter by `simdq hw calibrate` (hw_models.energy.MeasuredEnergy)."""

    static_w: Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]
    busy_w: Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)] = 0.0
    launch_gap_s: Annotated[float, Field(ge=0, le=1.0, allow_inf_nan=False)] = 0.0
    mac_pj: Annotated[Dict[ComputePrecision, Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]],
                      Field(min_length=1)]
    conv_mac_pj: Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)] = 0.0
    vector_op_pj: Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]
    dram_pj_per_byte: Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]
    l2_pj_per_byte: Optional[Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]] = None
    l2_bytes: Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False)] = 0.0
    strided_pj_per_byte: Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)] = 0.0
    source: Text
    median_error: Optional[Annotated[float, Field(ge=0, allow_inf_nan=False)]] = None
    samples: Optional[PositiveInteger] = None


class EnergySpec(_Strict):
    measured: Optional[MeasuredEnergySpec] = None
    table: Annotated[Union[Annotated[TableName, Tag("table=name")], Annotated[EnergyTableSpec, Tag("table=inline")]],
                     Discriminator(lambda value: "table=inline" if isinstance(value, (dict, EnergyTableSpec))
                                   else "table=name")]
    node_nm: Sourced
    sram: str = "sram_1mb"
    dram_pj_per_byte: Optional[Sourced] = None


class PowerScale(_Strict):
    scale: Positive
    source: Text


class DeviceSpec(_Strict):
    name: Text
    aliases: List[str] = []
    description: Text
    default_engine: str
    fallback_engine: Optional[str] = None
    engines: Annotated[Dict[str, EngineSpec], Field(min_length=1)]
    memory: MemorySpec
    power_w: Optional[Sourced] = None
    power_modes: Optional[Annotated[Dict[str, Dict[str, PowerScale]], Field(min_length=1)]] = None
    energy: Optional[EnergySpec] = None

    @model_validator(mode="after")
    def _engines_named_exist(self):
        engines = list(self.engines)
        for key in ("default_engine", "fallback_engine"):
            value = getattr(self, key)
            if value is not None and value not in engines:
                raise ValueError(f"{key}: {value!r} is not an engine; allowed: {', '.join(engines)}")
        for mode, scales in (self.power_modes or {}).items():
            for engine in scales:
                if engine not in engines:
                    raise ValueError(f"power_modes.{mode}.{engine}: " + unknown("engine", engine, engines))
        return self


def read_spec(data, where: str) -> DeviceSpec:
    """The checked contents of a device file; DeviceFileError (one line) otherwise."""
    return validate(DeviceSpec, data, where, DeviceFileError)
