"""Diffusers UNets built on the meta device from shipped presets or user configs, with example inputs.

Nothing is downloaded: presets are JSON files in simdq/presets; users give a config inline or a local
config.json.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .errors import SimdqError

PRESET_DIR = Path(__file__).with_name("presets")
UNET_CLASSES = ("UNet2DModel", "UNet2DConditionModel")
DEFAULT_CONTEXT_LENGTH = 77


@dataclass(frozen=True)
class UNetSpec:
    """A UNet to build: diffusers class name and config, plus what the config cannot say.

    context_length: tokens of the cross-attention context (conditional UNets).
    attention_heads: heads per attention layer where the original (e.g. LDM's num_heads=8) has a fixed
    head count that UNet2DModel's single attention_head_dim cannot express; heads change no MACs, only
    the size of the attention score matrices.
    """

    name: str
    unet_class: str
    config: dict = field(hash=False)
    description: str = ""
    context_length: int = DEFAULT_CONTEXT_LENGTH
    attention_heads: int = 0


@lru_cache(maxsize=None)
def _preset_files() -> dict:
    return {path.stem: json.loads(path.read_text()) for path in sorted(PRESET_DIR.glob("*.json"))}


def preset_names() -> dict:
    """Every accepted preset name (canonical and alias) -> canonical name."""
    names = {}
    for name, data in _preset_files().items():
        names[name] = name
        for alias in data.get("aliases", []):
            names[alias] = name
    return names


def check_preset_name(name: str) -> str:
    names = preset_names()
    canonical = names.get(name.lower())
    if canonical is None:
        hint = difflib.get_close_matches(name.lower(), list(names), n=1)
        raise ValueError(
            f"unknown preset {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
            + f"; allowed: {', '.join(sorted(_preset_files()))} (aliases: "
            + ", ".join(sorted(set(names) - set(_preset_files()))) + ")"
        )
    return canonical


def preset_spec(name: str) -> UNetSpec:
    canonical = check_preset_name(name)
    data = _preset_files()[canonical]
    return UNetSpec(
        name=canonical,
        unet_class=data["class"],
        config=data["config"],
        description=data["description"],
        context_length=data.get("context_length", DEFAULT_CONTEXT_LENGTH),
        attention_heads=data.get("attention_heads", 0),
    )


def config_spec(unet_class: str, config: dict, name: str) -> UNetSpec:
    if unet_class not in UNET_CLASSES:
        raise SimdqError(f"{name}: {unet_class!r} is not a supported UNet class; allowed: {', '.join(UNET_CLASSES)}")
    return UNetSpec(name=name, unet_class=unet_class, config=dict(config))


def config_file_spec(path: str, where: str) -> UNetSpec:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SimdqError(f"{where}: config file {path!r} does not exist") from None
    except OSError as err:
        raise SimdqError(f"{where}: cannot read config file {path!r} ({err.strerror})") from None
    except json.JSONDecodeError as err:
        raise SimdqError(f"{where}: {path!r} is not JSON (line {err.lineno}: {err.msg})") from None
    if not isinstance(data, dict) or data.get("_class_name") not in UNET_CLASSES:
        found = data.get("_class_name") if isinstance(data, dict) else type(data).__name__
        raise SimdqError(
            f"{where}: {path!r} is not a diffusers UNet config (its _class_name is {found!r}; "
            f"allowed: {', '.join(UNET_CLASSES)})"
        )
    config = {k: v for k, v in data.items() if not k.startswith("_")}
    return UNetSpec(name=Path(path).stem, unet_class=data["_class_name"], config=config)


def _import_diffusers():
    # diffusers pulls in optional quantization back-ends whose import-time warnings are noise here
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    for noisy in ("torchao", "torch.utils._pytree"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    import diffusers.models.unets.unet_2d as unet_2d
    import diffusers.models.unets.unet_2d_condition as unet_2d_condition

    return {"UNet2DModel": unet_2d.UNet2DModel, "UNet2DConditionModel": unet_2d_condition.UNet2DConditionModel}


def build_unet(spec: UNetSpec, device: str = "meta"):
    """The UNet in eval mode: on the meta device (shapes only, no memory, no weights) by default, or with
    diffusers' random initialisation on a real device."""
    import torch

    unet_class = _import_diffusers()[spec.unet_class]
    try:
        with torch.device(device):
            model = unet_class.from_config(spec.config)
    except (TypeError, ValueError, KeyError, AttributeError, AssertionError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise SimdqError(f"{spec.name}: diffusers cannot build {spec.unet_class} from this config ({message})") from None
    if spec.attention_heads:
        from diffusers.models.attention_processor import Attention

        for module in model.modules():
            if isinstance(module, Attention):
                module.heads = spec.attention_heads
    return model.eval()


def load_checkpoint(directory: str):
    """A UNet saved with save_pretrained in a local directory (safetensors weights only, nothing fetched)."""
    from pathlib import Path

    config_path = Path(directory) / "config.json"
    spec = config_file_spec(str(config_path), f"--checkpoint {directory}")
    unet_class = _import_diffusers()[spec.unet_class]
    try:
        model = unet_class.from_pretrained(directory, use_safetensors=True, local_files_only=True)
    except (OSError, ValueError, EnvironmentError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise SimdqError(f"--checkpoint {directory}: cannot load ({message})") from None
    return model.eval(), spec


def example_inputs(model, spec: UNetSpec, batch: int, sample_size=None, context_length=None) -> dict:
    """Keyword arguments for one forward pass on the meta device."""
    import torch

    config = model.config
    size = sample_size or config.sample_size
    if isinstance(size, (list, tuple)):
        height, width = size
    else:
        height = width = size
    meta = {"device": "meta"}
    inputs = {
        "sample": torch.empty(batch, config.in_channels, height, width, **meta),
        "timestep": torch.full((batch,), 500, dtype=torch.long, **meta),
    }
    if getattr(config, "num_class_embeds", None) or getattr(config, "class_embed_type", None):
        inputs["class_labels"] = torch.zeros(batch, dtype=torch.long, **meta)
    if spec.unet_class == "UNet2DConditionModel":
        tokens = context_length or spec.context_length
        width_ = config.encoder_hid_dim or config.cross_attention_dim
        if isinstance(width_, (list, tuple)):
            width_ = width_[0]
        inputs["encoder_hidden_states"] = torch.empty(batch, tokens, width_, **meta)
        embed_type = config.addition_embed_type
        if embed_type == "text_time":
            time_ids = 6  # SDXL micro-conditioning: original size, crop offset, target size
            text_dim = config.projection_class_embeddings_input_dim - time_ids * config.addition_time_embed_dim
            inputs["added_cond_kwargs"] = {
                "text_embeds": torch.empty(batch, text_dim, **meta),
                "time_ids": torch.empty(batch, time_ids, **meta),
            }
        elif embed_type is not None:
            raise SimdqError(f"{spec.name}: addition_embed_type {embed_type!r} is not supported; allowed: text_time or none")
    return inputs
