"""Whether a diffusers UNet config can be built and run, checked before torch sees it (torch-free).

diffusers ignores a misspelt key (`layers_per_blok`) and fails deep inside a forward pass on shapes it cannot
run (a ZeroDivisionError for `attention_head_dim: 0`, a concatenation error for an odd sample size). Here the
keys are checked against the class's own signature (signatures/unet_arguments.json, kept equal to the
installed diffusers by a test) and the numbers against what the class needs, each in one line.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from diagnostics import did_you_mean

from ..errors import SimdqError

SIGNATURES = Path(__file__).parent / "signatures" / "unet_arguments.json"
# far past every published UNet (SDXL: 3 blocks of up to 1280 channels, 10 transformer layers, 128 pixels)
MAX_CHANNELS, MAX_LAYERS, MAX_BLOCKS, MAX_SAMPLE_SIZE = 2**16, 64, 8, 4096
# keys holding a count: a positive integer, or (where diffusers allows) one per block
COUNTS = ("in_channels", "out_channels", "layers_per_block", "norm_num_groups", "attn_norm_num_groups",
          "attention_head_dim", "num_attention_heads", "cross_attention_dim", "transformer_layers_per_block",
          "num_class_embeds", "time_embedding_dim", "addition_time_embed_dim", "encoder_hid_dim",
          "projection_class_embeddings_input_dim", "time_cond_proj_dim", "addition_embed_type_num_heads")
PER_BLOCK = ("layers_per_block", "attention_head_dim", "num_attention_heads", "cross_attention_dim",
             "transformer_layers_per_block")


@lru_cache(maxsize=None)
def class_arguments(unet_class: str) -> dict:
    """keyword argument -> default of the diffusers class's __init__."""
    return json.loads(SIGNATURES.read_text())[unet_class]


def _is_count(value, largest: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= largest


def _check_count(where: str, key: str, value, blocks: int) -> None:
    largest = MAX_LAYERS if key in ("layers_per_block", "transformer_layers_per_block") else MAX_CHANNELS
    if value is None and key not in ("in_channels", "out_channels", "layers_per_block"):
        return  # diffusers derives it (heads from channels, no class embedding, ...)
    if key in PER_BLOCK and isinstance(value, (list, tuple)):
        if len(value) != blocks or not all(_is_count(v, largest) or isinstance(v, (list, tuple)) for v in value):
            raise SimdqError(f"{where}.{key}: expected one integer from 1 to {largest} per block ({blocks}), "
                             f"got {value!r}")
        return
    if not _is_count(value, largest):
        per_block = " (or one per block)" if key in PER_BLOCK else ""
        raise SimdqError(f"{where}.{key}: expected an integer from 1 to {largest}{per_block}, got {value!r}")


def _block_types(where: str, config: dict, key: str) -> list:
    types = config[key]
    if not isinstance(types, (list, tuple)) or not types or not all(isinstance(t, str) for t in types):
        raise SimdqError(f"{where}.{key}: expected a list of diffusers block names, got {types!r}")
    return list(types)


def _sample_sizes(where: str, value) -> list:
    sizes = list(value) if isinstance(value, (list, tuple)) and len(value) == 2 else [value]
    if not all(_is_count(size, MAX_SAMPLE_SIZE) for size in sizes):
        raise SimdqError(f"{where}: expected an integer from 1 to {MAX_SAMPLE_SIZE} (or [height, width]), "
                         f"got {value!r}")
    return sizes


def check_architecture(unet_class: str, config: dict, where: str, sample_size=None) -> None:
    """One line (SimdqError) for the first thing that stops `config` from building or running in `unet_class`
    at `sample_size` (the input's override, else the config's own)."""
    arguments = class_arguments(unet_class)
    for key in config:
        if key not in arguments:
            raise SimdqError(f"{where}: {key!r} is not an argument of {unet_class}{did_you_mean(key, arguments)}; "
                             f"allowed: {', '.join(arguments)}")
    config = {**arguments, **config}
    down, up = _block_types(where, config, "down_block_types"), _block_types(where, config, "up_block_types")
    channels = config["block_out_channels"]
    if not isinstance(channels, (list, tuple)) or not all(_is_count(c, MAX_CHANNELS) for c in channels):
        raise SimdqError(f"{where}.block_out_channels: expected a list of integers from 1 to {MAX_CHANNELS}, "
                         f"got {channels!r}")
    if not len(channels) == len(down) == len(up) or len(down) > MAX_BLOCKS:
        raise SimdqError(f"{where}: block_out_channels ({len(channels)}), down_block_types ({len(down)}) and "
                         f"up_block_types ({len(up)}) need one entry per resolution each, at most {MAX_BLOCKS}")
    for key in COUNTS:
        if key in config:
            _check_count(where, key, config[key], len(channels))
    groups = config.get("norm_num_groups")
    if groups is not None and any(c % groups for c in channels):
        raise SimdqError(f"{where}.norm_num_groups: {groups} does not divide every block_out_channels "
                         f"{list(channels)} (GroupNorm splits channels into equal groups)")
    head_dim = config.get("attention_head_dim")
    if unet_class == "UNet2DModel" and isinstance(head_dim, int) and head_dim > min(channels):
        raise SimdqError(f"{where}.attention_head_dim: {head_dim} is more than the {min(channels)} channels of "
                         "the narrowest block (heads = channels // attention_head_dim would be 0)")
    size = sample_size if sample_size is not None else config["sample_size"]
    label = "input.sample_size" if sample_size is not None else f"{where}.sample_size"
    if size is None:
        raise SimdqError(f"{where}: no sample_size: give it in the config or as input.sample_size")
    sizes = _sample_sizes(label, size)
    if unet_class != "UNet2DModel":
        return  # UNet2DConditionModel passes odd sizes to its upsamplers; UNet2DModel concatenates mismatches
    factor = 2 ** (len(down) - 1)  # every block but the last halves the resolution; the up path doubles back
    for pixels in sizes:
        if pixels % factor:
            raise SimdqError(f"{label}: {pixels} is not a multiple of {factor}: this UNet halves the resolution "
                             f"{len(down) - 1} times on the way down and concatenates the skips on the way up")
