"""model.yaml: the schema of an estimate (model, input, quantization scheme, convention) and its loader.

Every error becomes one line naming the YAML path and what is allowed; unknown keys get a did-you-mean.
"""

from __future__ import annotations

from typing import List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from diagnostics import YamlFileError, read_yaml, validate

from .errors import SimdqError
from .presets import SINGLE_LAYER, UNET_CLASSES, UNetSpec, check_preset_name, config_file_spec, config_spec, preset_spec
from .presets.architecture import check_architecture
from .scheme import CONVENTIONS, get_policy, quant_format

WEIGHT_GRANULARITIES = ("per_tensor", "per_channel", "per_group")
# Upper bounds far past any real run that keep every tensor shape inside int64 and torch's size checks:
# SDXL samples at 128 latent pixels, LDM-4 serves batch 64, DDPM runs 1000 steps.
MAX_BATCH, MAX_STEPS, MAX_SAMPLE_SIZE, MAX_CONTEXT_LENGTH, MAX_GROUP_SIZE = 2**16, 10_000, 4096, 2**16, 2**16
# what a per-channel or per-group weight scale may be stored in (block formats carry their own scale)
SCALE_FORMATS = ("fp32", "fp16", "bf16", "e8m0", "ue8m0", "e4m3", "e4m3fn")
ACTIVATION_GRANULARITIES = ("per_tensor", "per_token", "per_channel")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _format_name(value):
    if value is None:
        return value
    quant_format(value)
    return value


def _activation_format_name(value):
    if value is not None and quant_format(value).planes > 1:
        raise ValueError(f"{value} is a weight format (per-channel scaled planes); activations take binary, an "
                         "integer, minifloat or block format")
    return value


class DiffusersModel(_Strict):
    unet_class: str = Field(alias="class")
    config: dict

    @field_validator("unet_class")
    @classmethod
    def _known_class(cls, value):
        if value not in UNET_CLASSES:
            raise ValueError(f"unsupported UNet class {value!r}; allowed: {', '.join(UNET_CLASSES)}")
        return value


MAX_CHANNELS, MAX_KERNEL, MAX_STRIDE = 2**16, 31, 16


class LayerModel(_Strict):
    """One conv or linear layer by shape, as the papers' device tables time one layer (BinaryDM Table 17, BiDM
    Table 8: a 3x3 conv, 448 -> 448 channels at 32x32). size: a conv's input height and width (one number for
    a square), a linear's tokens; padding defaults to kernel_size // 2 (the output keeps the input's size at
    stride 1)."""

    kind: Literal["conv", "linear"]
    in_channels: StrictInt = Field(gt=0, le=MAX_CHANNELS)
    out_channels: StrictInt = Field(gt=0, le=MAX_CHANNELS)
    size: Union[StrictInt, List[StrictInt]]
    kernel_size: StrictInt = Field(3, gt=0, le=MAX_KERNEL)
    stride: StrictInt = Field(1, gt=0, le=MAX_STRIDE)
    padding: Optional[StrictInt] = Field(None, ge=0, le=MAX_KERNEL)
    bias: bool = True

    @model_validator(mode="after")
    def _a_shape_that_runs(self):
        sizes = [self.size] if isinstance(self.size, int) else self.size
        if self.kind == "linear":
            if not isinstance(self.size, int):
                raise ValueError("a linear layer's size is its number of tokens, one integer")
            if self.size > MAX_SAMPLE_SIZE**2 or self.size < 1:
                raise ValueError(f"size: tokens must be 1..{MAX_SAMPLE_SIZE**2}")
            return self
        if len(sizes) not in (1, 2) or not all(0 < x <= MAX_SAMPLE_SIZE for x in sizes):
            raise ValueError(f"size: a conv's input height and width, one or two integers in 1..{MAX_SAMPLE_SIZE}")
        if any(x + 2 * self.resolved_padding < self.kernel_size for x in sizes):
            raise ValueError(f"a {self.kernel_size}x{self.kernel_size} kernel does not fit a {sizes} input "
                             f"with padding {self.resolved_padding}")
        return self

    @property
    def spatial(self) -> tuple:
        sizes = [self.size] if isinstance(self.size, int) else self.size
        return (sizes[0], sizes[-1])

    @property
    def resolved_padding(self) -> int:
        return self.kernel_size // 2 if self.padding is None else self.padding

    def name(self) -> str:
        if self.kind == "linear":
            return f"linear {self.in_channels}->{self.out_channels} x {self.size} tokens"
        height, width = self.spatial
        k = self.kernel_size
        stride = f" stride {self.stride}" if self.stride != 1 else ""
        return f"conv {k}x{k} {self.in_channels}->{self.out_channels} at {height}x{width}{stride}"


class ModelSection(_Strict):
    preset: Optional[str] = None
    diffusers: Optional[DiffusersModel] = None
    config_file: Optional[str] = None
    layer: Optional[LayerModel] = None
    dtype: Literal["fp32", "fp16", "bf16"] = "fp32"

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value):
        return value if value is None else check_preset_name(value)

    @model_validator(mode="after")
    def _one_source(self):
        given = [k for k in ("preset", "diffusers", "config_file", "layer") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of preset, diffusers, config_file, layer "
                             f"(got {', '.join(given) or 'none'})")
        return self


class InputSection(_Strict):
    batch: StrictInt = Field(1, gt=0, le=MAX_BATCH)
    steps: StrictInt = Field(1, gt=0, le=MAX_STEPS)
    guidance: bool = False
    sample_size: Optional[StrictInt] = Field(None, gt=0, le=MAX_SAMPLE_SIZE)
    context_length: Optional[StrictInt] = Field(None, gt=0, le=MAX_CONTEXT_LENGTH)


class Granularity(_Strict):
    weights: Literal[WEIGHT_GRANULARITIES] = "per_channel"
    activations: Literal[ACTIVATION_GRANULARITIES] = "per_tensor"
    group_size: StrictInt = Field(128, gt=0, le=MAX_GROUP_SIZE)


class AttentionSection(_Strict):
    quantize: bool = False
    activations: Optional[str] = None

    _check_format = field_validator("activations")(classmethod(lambda cls, v: _activation_format_name(v)))


class Rule(_Strict):
    match: Union[str, List[str]]
    weights: Optional[str] = None
    activations: Optional[str] = None
    count_ops: bool = True

    _check_formats = field_validator("weights")(classmethod(lambda cls, v: _format_name(v)))
    _check_activations = field_validator("activations")(classmethod(lambda cls, v: _activation_format_name(v)))

    @field_validator("match")
    @classmethod
    def _as_list(cls, value):
        patterns = [value] if isinstance(value, str) else value
        if not patterns or not all(p.strip() for p in patterns):
            raise ValueError("match needs at least one non-empty glob, e.g. 'conv_in' or 'down_blocks.*'")
        return patterns


class QuantSection(_Strict):
    weights: Optional[str] = None  # default: model.dtype, i.e. unquantized
    activations: Optional[str] = None
    granularity: Granularity = Granularity()
    attention: AttentionSection = AttentionSection()
    policy: Optional[str] = None
    rules: List[Rule] = []
    scale_format: str = "fp32"
    weight_zero_point: bool = False

    _check_formats = field_validator("weights", "scale_format")(classmethod(lambda cls, v: _format_name(v)))
    _check_activations = field_validator("activations")(classmethod(lambda cls, v: _activation_format_name(v)))

    @field_validator("policy")
    @classmethod
    def _known_policy(cls, value):
        if value is not None:
            get_policy(value)
        return value

    @field_validator("scale_format")
    @classmethod
    def _a_scale_format(cls, value):
        if value.lower() not in SCALE_FORMATS:
            raise ValueError(f"{value!r} is not a format weight scales are stored in; allowed: "
                             f"{', '.join(SCALE_FORMATS)} (block formats such as mxfp4 carry their own scales)")
        return value

    @model_validator(mode="after")
    def _zero_point_needs_integers(self):
        if not self.weight_zero_point:
            return self
        named = [self.weights] + [rule.weights for rule in self.rules]
        families = {name: quant_format(name).family for name in named if name is not None}
        if not families or any(family != "int" for family in families.values()):
            odd = ", ".join(f"{name} ({family})" for name, family in families.items() if family != "int")
            raise ValueError("weight_zero_point: true needs integer weight formats (int2..int8, uint4, ...); "
                             f"got {odd or 'unquantized weights'}")
        return self


TF32_MODES = ("none", "convolutions", "all")
ACTIVATION_QUANTIZATION = ("fused", "dynamic")
WEIGHT_ONLY = ("mixed_input", "dequantize")


class RuntimeSection(_Strict):
    """How the model runs on the device beyond its formats.

    tf32: which fp32 GEMMs may run on TF32 tensor cores: none (torch.backends.cuda.matmul.allow_tf32 and
    torch.backends.cudnn.allow_tf32 both False), convolutions (torch's defaults: cuDNN on, matmuls off) or all.
    activation_quantization: fused (scales static, the cast folded into the producing kernel: no extra work)
    or dynamic (each quantized layer runs |x|, amax, scale and cast kernels before its GEMM, and an integer
    GEMM's int32 output is dequantized by separate kernels, as eager PyTorch with torch._scaled_mm or
    torch._int_mm does).
    weight_only: how a layer with quantized weights and full-precision activations runs: mixed_input (one
    kernel reads the stored codes and converts them on the fly, as Marlin-style kernels do) or dequantize
    (the weights are converted to the activations' dtype and scaled by two eager kernels every forward, then
    a plain GEMM reads them at that width).
    gpu_memory_free_gb: the GPU memory (GB, 1e9 bytes) left free while the UNet runs, beside its weights. With
    TF32 off cuDNN runs some 3x3 fp32 convolutions as an FFT (on an H100 SD-1.5's 640-channel ones at 32x32,
    about 30x slower than an implicit GEMM), but only where the FFT's workspace, twice its frequency-domain
    weights (13.9 GB for 640 into 640 channels), can be allocated; else it runs an implicit GEMM. null: the
    device's whole memory less the weights (nothing else on the GPU; activations, a few GB at most, ignored).
    """

    fused_attention: bool = True
    tf32: Literal[TF32_MODES] = "convolutions"
    activation_quantization: Literal[ACTIVATION_QUANTIZATION] = "fused"
    weight_only: Literal[WEIGHT_ONLY] = "mixed_input"
    gpu_memory_free_gb: Optional[float] = Field(default=None, ge=0, allow_inf_nan=False)


class EstimateConfig(_Strict):
    model: ModelSection
    input: InputSection = InputSection()
    quant: QuantSection = QuantSection()
    runtime: RuntimeSection = RuntimeSection()
    convention: Literal[CONVENTIONS] = "binarydm"

    @model_validator(mode="after")
    def _buildable(self):
        """The UNet can be built and run at this input (a config_file is read, and checked, in unet_spec)."""
        if self.model.layer and (self.input.sample_size is not None or self.input.context_length is not None):
            raise ValueError("input.sample_size and input.context_length do not apply to model.layer; its "
                             "shape is model.layer.size")
        if self.model.diffusers:
            check_architecture(self.model.diffusers.unet_class, self.model.diffusers.config, "model.diffusers.config",
                               self.input.sample_size)
        elif self.model.preset and self.input.sample_size is not None:
            spec = preset_spec(self.model.preset)
            check_architecture(spec.unet_class, spec.config, f"preset {spec.name}", self.input.sample_size)
        return self


def parse_config(data, source: str) -> EstimateConfig:
    return validate(EstimateConfig, data, source, SimdqError)


def load_config(path: str) -> EstimateConfig:
    try:
        data = read_yaml(path)
    except YamlFileError as err:
        raise SimdqError(str(err)) from None
    return parse_config(data, path)


def unet_spec(config: EstimateConfig) -> UNetSpec:
    """The UNet that model.yaml names: a preset, an inline diffusers config or a config.json (or the one layer
    of model.layer, built by simdq.model.unets.single_layer)."""
    section = config.model
    if section.layer:
        layer = section.layer
        return UNetSpec(layer.name(), SINGLE_LAYER, {**layer.model_dump(), "spatial": list(layer.spatial),
                                                     "padding": layer.resolved_padding},
                        "one layer by shape (model.layer)")
    if section.preset:
        return preset_spec(section.preset)
    if section.diffusers:
        return config_spec(section.diffusers.unet_class, section.diffusers.config, "model.diffusers")
    spec = config_file_spec(section.config_file, "model.config_file")
    check_architecture(spec.unet_class, spec.config, f"model.config_file {section.config_file}", config.input.sample_size)
    return spec
