"""Traced presets shared by the workload and accounting tests (tracing runs once per preset)."""

from functools import lru_cache

from simdq.model.grouping import group_layers
from simdq.model.unets import build_unet, example_inputs
from simdq.presets import preset_spec
from simdq.model.trace import trace

TINY_UNET = {
    "sample_size": 16, "in_channels": 3, "out_channels": 3, "layers_per_block": 1,
    "block_out_channels": [32, 64], "norm_num_groups": 8, "attention_head_dim": 8,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
}


@lru_cache(maxsize=None)
def traced(preset: str, batch: int = 1):
    spec = preset_spec(preset)
    model = build_unet(spec)
    inputs = example_inputs(model, spec, batch)
    records = trace(model, inputs)
    return spec, model, inputs, records


def layers_of(preset: str, batch: int = 1):
    _, model, _, records = traced(preset, batch)
    return group_layers(model, records)
