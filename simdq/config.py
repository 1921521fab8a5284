"""model.yaml: the schema of an estimate (model, input, quantization scheme, convention) and its loader.

Every error becomes one line naming the YAML path and what is allowed; unknown keys get a did-you-mean.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import List, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .accounting import CONVENTIONS
from .errors import SimdqError
from .policies import get_policy
from .quant_formats import quant_format
from .unets import UNET_CLASSES, check_preset_name

WEIGHT_GRANULARITIES = ("per_tensor", "per_channel", "per_group")
ACTIVATION_GRANULARITIES = ("per_tensor", "per_token", "per_channel")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _format_name(value):
    if value is None:
        return value
    quant_format(value)
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


class ModelSection(_Strict):
    preset: Optional[str] = None
    diffusers: Optional[DiffusersModel] = None
    config_file: Optional[str] = None
    dtype: Literal["fp32", "fp16", "bf16"] = "fp32"

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value):
        return value if value is None else check_preset_name(value)

    @model_validator(mode="after")
    def _one_source(self):
        given = [k for k in ("preset", "diffusers", "config_file") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of preset, diffusers, config_file (got {', '.join(given) or 'none'})")
        return self


class InputSection(_Strict):
    batch: int = Field(1, gt=0)
    steps: int = Field(1, gt=0)
    guidance: bool = False
    sample_size: Optional[int] = Field(None, gt=0)
    context_length: Optional[int] = Field(None, gt=0)


class Granularity(_Strict):
    weights: Literal[WEIGHT_GRANULARITIES] = "per_channel"
    activations: Literal[ACTIVATION_GRANULARITIES] = "per_tensor"
    group_size: int = Field(128, gt=0)


class AttentionSection(_Strict):
    quantize: bool = False
    activations: Optional[str] = None

    _check_format = field_validator("activations")(classmethod(lambda cls, v: _format_name(v)))


class Rule(_Strict):
    match: Union[str, List[str]]
    weights: Optional[str] = None
    activations: Optional[str] = None
    count_ops: bool = True

    _check_formats = field_validator("weights", "activations")(classmethod(lambda cls, v: _format_name(v)))

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

    _check_formats = field_validator("weights", "activations", "scale_format")(
        classmethod(lambda cls, v: _format_name(v)))

    @field_validator("policy")
    @classmethod
    def _known_policy(cls, value):
        if value is not None:
            get_policy(value)
        return value


class RuntimeSection(_Strict):
    fused_attention: bool = True


class EstimateConfig(_Strict):
    model: ModelSection
    input: InputSection = InputSection()
    quant: QuantSection = QuantSection()
    runtime: RuntimeSection = RuntimeSection()
    convention: Literal[CONVENTIONS] = "binarydm"


def _location(loc) -> str:
    parts = []
    for part in loc:
        if isinstance(part, int):
            parts[-1] = f"{parts[-1]}[{part}]" if parts else f"[{part}]"
        elif not str(part).startswith(("function-after", "literal[", "str", "list[", "function-")):
            parts.append(str(part))
    return ".".join(parts)


def _model_for(loc):
    """The schema class that holds the last key of `loc`, to list its allowed keys."""
    model = EstimateConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) or next(
            (f for f in model.model_fields.values() if f.alias == part), None)
        if field is None:
            return model
        annotation = field.annotation
        for candidate in (annotation, *getattr(annotation, "__args__", ())):
            inner = getattr(candidate, "__args__", (candidate,))
            found = next((c for c in (candidate, *inner) if isinstance(c, type) and issubclass(c, BaseModel)), None)
            if found is not None:
                model = found
                break
    return model


def _allowed_keys(model) -> list:
    return [f.alias or name for name, f in model.model_fields.items()]


def explain(error: ValidationError, source: str) -> str:
    """One line for the first problem of a validation error."""
    # an unknown key explains a "missing" one that was merely misspelt, so report it first
    first = sorted(error.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
    where = _location(first["loc"])
    prefix = f"{source}: {where}" if where else source
    if first["type"] == "extra_forbidden":
        allowed = _allowed_keys(_model_for(first["loc"]))
        hint = difflib.get_close_matches(str(first["loc"][-1]), allowed, n=1)
        return f"{prefix}: unknown key" + (f" (did you mean {hint[0]!r}?)" if hint else "") + \
            f"; allowed: {', '.join(allowed)}"
    if first["type"] == "missing":
        return f"{prefix}: required key is missing"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] in ("value_error", "assertion_error"):
        return f"{prefix}: {message}"
    return f"{prefix}: {message[0].lower() + message[1:]}, got {first.get('input')!r}"


def parse_config(data, source: str) -> EstimateConfig:
    if not isinstance(data, dict):
        raise SimdqError(f"{source}: expected a mapping with keys model, input, quant, convention; "
                         f"got {type(data).__name__}")
    try:
        return EstimateConfig.model_validate(data)
    except ValidationError as err:
        raise SimdqError(explain(err, source)) from None


def load_config(path: str) -> EstimateConfig:
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise SimdqError(f"{path}: no such file") from None
    except OSError as err:
        raise SimdqError(f"{path}: cannot read ({err.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}: line {mark.line + 1}" if mark else path
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise SimdqError(f"{where}: not valid YAML ({problem})") from None
    return parse_config(data, path)
