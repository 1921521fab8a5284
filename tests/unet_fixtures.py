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


def reseal(directory):
    """What a hand-forged artifact does: its seal recomputed from its files, so that only the record checks
    stand between it and use."""
    import yaml

    from simdq.artifact import SEAL, file_sha256, metadata_sha256

    data = yaml.safe_load((directory / "quant.yaml").read_text())
    data[SEAL] = {"tensors_sha256": file_sha256(directory / "model.safetensors"), "metadata_sha256": metadata_sha256(data)}
    (directory / "quant.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
