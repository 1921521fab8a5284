"""Diffusers UNets built from a UNetSpec (simdq.presets): on the meta device for tracing, or on a real
device with random or local weights; and the example inputs of one forward pass.
"""

from __future__ import annotations

import logging
import os

from ..errors import SimdqError
from ..presets import SINGLE_LAYER, UNetSpec, config_file_spec
from ..presets.architecture import check_architecture

CHECKPOINT_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json")


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

    if spec.unet_class == SINGLE_LAYER:
        with torch.device(device):
            return single_layer(spec.config).eval()
    unet_class = _import_diffusers()[spec.unet_class]
    try:
        with torch.device(device):
            model = unet_class.from_config(spec.config)
    except (TypeError, ValueError, KeyError, AttributeError, AssertionError, ArithmeticError, IndexError,
            RuntimeError) as err:  # what check_architecture did not foresee is still one line
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

    where = f"--checkpoint {directory}"
    spec = config_file_spec(str(Path(directory) / "config.json"), where)
    check_architecture(spec.unet_class, spec.config, f"{where}/config.json")
    if not any((Path(directory) / name).is_file() for name in CHECKPOINT_WEIGHTS):
        raise SimdqError(f"{where}: no {CHECKPOINT_WEIGHTS[0]} in it (weights saved by save_pretrained as "
                         "safetensors; .bin files are pickles and are never read)")
    unet_class = _import_diffusers()[spec.unet_class]
    from diffusers.utils import logging as diffusers_logging

    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # our one line says what failed; diffusers' own would repeat it
    try:
        model = unet_class.from_pretrained(directory, use_safetensors=True, local_files_only=True)
    except (OSError, ValueError, RuntimeError, KeyError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise SimdqError(f"{where}: cannot load ({message})") from None
    finally:
        diffusers_logging.set_verbosity(verbosity)
    return model.eval(), spec


def example_inputs(model, spec: UNetSpec, batch: int, sample_size=None, context_length=None) -> dict:
    """Keyword arguments for one forward pass on the meta device."""
    import torch

    if spec.unet_class == SINGLE_LAYER:
        layer = spec.config
        shape = ((batch, layer["size"], layer["in_channels"]) if layer["kind"] == "linear" else
                 (batch, layer["in_channels"], *layer["spatial"]))
        return {"x": torch.empty(*shape, device="meta")}
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


def single_layer(layer: dict):
    """The module of model.layer: one nn.Conv2d named `conv` or one nn.Linear named `linear`."""
    import torch

    class SingleLayer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            if layer["kind"] == "linear":
                self.linear = torch.nn.Linear(layer["in_channels"], layer["out_channels"], bias=layer["bias"])
            else:
                self.conv = torch.nn.Conv2d(layer["in_channels"], layer["out_channels"], layer["kernel_size"],
                                            stride=layer["stride"], padding=layer["padding"], bias=layer["bias"])

        def forward(self, x):
            return self.linear(x) if layer["kind"] == "linear" else self.conv(x)

    return SingleLayer()
