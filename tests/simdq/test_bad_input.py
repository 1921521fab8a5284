"""One test per kind of bad input: numbers out of range, architectures that cannot run, contradictions,
output paths, calibration data and checkpoints. Each is one line on stderr and exit code 2, before any work,
and leaves nothing behind."""

import inspect
import json

import pytest
import torch
import yaml
from unet_fixtures import TINY_UNET

from simdq.cli import main

TINY = {"diffusers": {"class": "UNet2DModel", "config": TINY_UNET}}
QUANT = {"weights": "int8", "activations": "int8"}


def _one_line(capsys, argv):
    try:
        code = main(argv)
    except SystemExit as usage_error:  # argparse's
        code = usage_error.code
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def _model(tmp_path, document, name="model.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(document))
    return str(path)


@pytest.mark.parametrize("document, message", [
    ({"model": TINY, "input": {"batch": 70000}}, "input.batch: input should be less than or equal to 65536"),
    ({"model": TINY, "input": {"steps": True}}, "input.steps: input should be a valid integer, got True"),
    ({"model": TINY, "input": {"sample_size": 10**6}}, "input.sample_size: input should be less than or equal to"),
    ({"model": TINY, "input": {"context_length": 0}}, "input.context_length: input should be greater than 0"),
    ({"model": TINY, "quant": {**QUANT, "granularity": {"group_size": 2.5}}}, "granularity.group_size"),
])
def test_numbers_out_of_range_in_model_yaml(capsys, tmp_path, document, message):
    assert message in _one_line(capsys, ["estimate", _model(tmp_path, document), "--hw", "h100"])


@pytest.mark.parametrize("argv, message", [
    (["estimate", "M", "--hw", "h100", "--batch", "1e3"], "--batch: expected an integer from 1 to 65536, got '1e3'"),
    (["estimate", "M", "--hw", "h100", "--steps", "20000"], "--steps: expected an integer from 1 to 10000"),
    (["calibrate", "M", "-o", "OUT", "--samples", "99999999"], "--samples: expected an integer from 1 to 65536"),
    (["calibrate", "M", "-o", "OUT", "--steps", "1001"], "--steps: expected an integer from 1 to 1000"),
    (["calibrate", "M", "-o", "OUT", "--seed", "-3"], "--seed: expected an integer from 0 to"),
    (["emulate", "ART", "--guidance-scale", "nan"], "--guidance-scale: expected a finite number, got 'nan'"),
    (["emulate", "ART", "--forward", "--timestep", "1000"], "--timestep: expected an integer from 0 to 999"),
    (["parity", "kernels", "--examples", "10000000"], "--examples: expected an integer from 0 to 1000000"),
    (["sweep", "S.yaml", "--workers", "100000"], "--workers: expected an integer from 0 to 4096"),
])
def test_numbers_out_of_range_on_the_command_line(capsys, argv, message):
    assert message in _one_line(capsys, argv)


def test_a_calibration_that_cannot_fit_in_memory_is_refused_before_it_starts(capsys, tmp_path, monkeypatch):
    from simdq.calibrate import memory

    monkeypatch.setattr(memory, "available_bytes", lambda: 2**30)
    model = _model(tmp_path, {"model": TINY, "quant": QUANT})
    err = _one_line(capsys, ["calibrate", model, "-o", str(tmp_path / "art"), "--samples", "65536",
                             "--steps", "1000"])
    trajectory = 65536 * 1000 * (3 * 16 * 16 + 1) * 4 / 2**30  # float32 latents and timestep of every call
    assert f"trajectory {trajectory:.1f}" in err and "this machine has 1.0 GiB" in err and "needs at least" in err
    assert not (tmp_path / "art").exists()


def test_the_memory_bound_counts_both_weight_copies_the_trajectory_and_the_largest_layer():
    from simdq.calibrate.memory import calibration_bytes
    from simdq.config import parse_config, unet_spec
    from simdq.model.grouping import layers_of
    from simdq.model.unets import build_unet

    spec = unet_spec(parse_config({"model": TINY}, "test"))
    need = calibration_bytes(spec, samples=3, steps=5, batch=2)
    unet = build_unet(spec)
    assert need["weights"] == 2 * 4 * sum(p.numel() for p in unet.parameters())
    assert need["trajectory"] == 4 * 3 * 5 * (3 * 16 * 16 + 1)
    largest = max(layer.read + layer.write for layer in layers_of(unet, spec, 1, fused_attention=False))
    assert need["activations"] == 4 * 2 * largest


def test_device_numbers_must_be_finite(capsys, tmp_path):
    data = yaml.safe_load(open("hw_models/devices/h200.yaml"))
    data["memory"]["dram"]["bandwidth"] = float("inf")
    device = tmp_path / "fast.yaml"
    device.write_text(yaml.safe_dump(data))
    err = _one_line(capsys, ["estimate", _model(tmp_path, {"model": TINY}), "--hw", str(device)])
    assert "memory.dram.bandwidth: expected a positive finite number up to 1e+30, got inf" in err


@pytest.mark.parametrize("config, message", [
    ({"sample_size": 17}, "sample_size: 17 is not a multiple of 2: this UNet halves the resolution 1 times"),
    ({"layers_per_block": 0}, "config.layers_per_block: expected an integer from 1 to 64 (or one per block), got 0"),
    ({"norm_num_groups": 6}, "norm_num_groups: 6 does not divide every block_out_channels [32, 64]"),
    ({"attention_head_dim": 48}, "attention_head_dim: 48 is more than the 32 channels of the narrowest block"),
    ({"out_channels": -3}, "config.out_channels: expected an integer from 1 to 65536, got -3"),
    ({"down_block_types": "DownBlock2D"}, "down_block_types: expected a list of diffusers block names"),
    ({"block_out_chanels": [32, 64]}, "'block_out_chanels' is not an argument of UNet2DModel (did you mean "
                                      "'block_out_channels'?)"),
])
def test_architectures_that_cannot_run_are_refused_before_torch(capsys, tmp_path, config, message):
    document = {"model": {"diffusers": {"class": "UNet2DModel", "config": {**TINY_UNET, **config}}}}
    assert message in _one_line(capsys, ["estimate", _model(tmp_path, document), "--hw", "h100"])


def test_a_config_file_typo_and_an_input_size_the_preset_cannot_take(capsys, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"_class_name": "UNet2DModel", **TINY_UNET, "norm_num_group": 8}))
    err = _one_line(capsys, ["estimate", _model(tmp_path, {"model": {"config_file": str(config)}}), "--hw", "h100"])
    assert "'norm_num_group' is not an argument of UNet2DModel (did you mean 'norm_num_groups'?)" in err
    document = {"model": {"preset": "ddpm-cifar10"}, "input": {"sample_size": 36}}  # 4 resolutions: multiples of 8
    err = _one_line(capsys, ["estimate", _model(tmp_path, document, "preset.yaml"), "--hw", "h100"])
    assert "input.sample_size: 36 is not a multiple of 8" in err


def test_the_shipped_signatures_are_the_installed_diffusers_ones():
    from simdq.model.unets import _import_diffusers
    from simdq.presets.architecture import class_arguments

    for name, unet_class in _import_diffusers().items():
        parameters = inspect.signature(unet_class.__init__).parameters
        expected = {k: p.default for k, p in parameters.items() if k != "self"}
        assert class_arguments(name) == json.loads(json.dumps(expected)), name


@pytest.mark.parametrize("quant, message", [
    ({"weights": "e5m2", "weight_zero_point": True}, "weight_zero_point: true needs integer weight formats"),
    ({"weights": "int4", "weight_zero_point": True, "rules": [{"match": "conv_in", "weights": "binary"}]},
     "got binary (binary)"),
    ({"weight_zero_point": True}, "got unquantized weights"),
    ({"weights": "int4", "scale_format": "nvfp4"}, "'nvfp4' is not a format weight scales are stored in"),
    ({"weights": "int4", "scale_format": "int4"}, "'int4' is not a format weight scales are stored in"),
    ({"weights": "binary2", "activations": "binary2"}, "quant.activations: binary2 is a weight format"),
    ({"weights": "binary2", "rules": [{"match": "conv_in", "activations": "binary3"}]}, "binary3 is a weight format"),
    ({"attention": {"quantize": True, "activations": "binary2"}}, "binary2 is a weight format"),
])
def test_contradictions_are_refused_with_what_is_allowed(capsys, tmp_path, quant, message):
    err = _one_line(capsys, ["estimate", _model(tmp_path, {"model": TINY, "quant": quant}), "--hw", "h100"])
    assert message in err


def test_integer_weights_with_zero_points_are_still_costed_and_cost_their_zero_points(capsys, tmp_path):
    sizes = {}
    for zero_point in (False, True):
        document = {"model": TINY, "quant": {"weights": "uint4", "weight_zero_point": zero_point}}
        assert main(["estimate", _model(tmp_path, document, f"{zero_point}.yaml"), "--hw", "h100",
                     "--format", "json"]) == 0
        sizes[zero_point] = json.loads(capsys.readouterr().out)["totals"]["weight_bytes"]
    assert sizes[True] > sizes[False]  # a 4-bit zero point per output channel beside each scale


@pytest.fixture
def model_yaml(tmp_path):
    return _model(tmp_path, {"model": TINY, "quant": QUANT})


FAST = ["--samples", "1", "--steps", "1", "--batch", "1"]


def test_calibrate_output_paths_are_checked_before_the_work(capsys, tmp_path, model_yaml):
    a_file = tmp_path / "a-file"
    a_file.write_text("mine")
    assert "-o {}: is a file; give a new or empty folder".format(a_file) in \
        _one_line(capsys, ["calibrate", model_yaml, "-o", str(a_file)] + FAST)
    assert f"{a_file} is a file, not a folder" in \
        _one_line(capsys, ["calibrate", model_yaml, "-o", str(a_file / "art")] + FAST)
    odd = tmp_path / "odd"
    (odd / "quant.yaml").mkdir(parents=True)
    assert "holds quant.yaml/, which is not an earlier output" in \
        _one_line(capsys, ["calibrate", model_yaml, "-o", str(odd)] + FAST)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert "holds notes.txt" in _one_line(capsys, ["calibrate", model_yaml, "-o", str(busy)] + FAST)
    assert a_file.read_text() == "mine" and (busy / "notes.txt").read_text() == "mine"


def test_an_artifact_is_replaced_whole_or_not_at_all(capsys, tmp_path, model_yaml, monkeypatch):
    from simdq.artifact import read_metadata

    out = tmp_path / "art"
    assert main(["calibrate", model_yaml, "-o", str(out)] + FAST) == 0
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["calibrate", model_yaml, "-o", str(out), "--seed", "1"] + FAST) == 0  # replaced
    assert read_metadata(out)["settings"]["seed"] == 1 and sorted(p.name for p in out.iterdir()) == sorted(first)

    import safetensors.torch

    def dies_half_way(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"\0" * 100)
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", dies_half_way)
    second = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["calibrate", model_yaml, "-o", str(out), "--seed", "2"] + FAST) == 130
    assert {p.name: p.read_bytes() for p in out.iterdir()} == second  # the earlier artifact, untouched
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging folder left


@pytest.mark.parametrize("argv, message", [
    (["--plot", "roofline.xyz"], "--plot roofline.xyz: unknown chart format 'xyz'; allowed:"),
    (["--plot", "no-such-folder/roofline.png"], "folder no-such-folder does not exist"),
    (["-o", "."], "-o .: is a folder; give a file name"),
])
def test_estimate_outputs_are_checked_before_the_work(capsys, tmp_path, model_yaml, argv, message):
    assert message in _one_line(capsys, ["estimate", model_yaml, "--hw", "h100"] + argv)


def _latents_file(tmp_path, **tensors):
    from safetensors.torch import save_file

    path = tmp_path / "latents.safetensors"
    save_file(tensors, str(path))
    return str(path)


@pytest.mark.parametrize("tensors, message", [
    ({"latents": torch.full((2, 3, 16, 16), float("nan"))}, "'latents' holds 1536 NaN or infinite values (the first "
                                                             "in sample 0)"),
    ({"latents": torch.zeros(0, 3, 16, 16)}, "'latents' holds no samples (shape [0, 3, 16, 16])"),
    ({"latents": torch.zeros(2, 3, 16, 16, dtype=torch.int32)}, "'latents' is torch.int32; expected floating-point"),
    ({"noise": torch.zeros(2, 3, 16, 16)}, "needs a 4-D tensor named 'latents' (samples, channels, height, width); "
                                           "it holds noise"),
    ({"latents": torch.full((1, 3, 16, 16), 3e38)}, "prediction is NaN or infinite at DDIM step 0"),
])
def test_calibration_data_errors_name_the_file_and_the_fault(capsys, tmp_path, model_yaml, tensors, message):
    path = _latents_file(tmp_path, **tensors)
    err = _one_line(capsys, ["calibrate", model_yaml, "-o", str(tmp_path / "art"), "--calib-data", path] + FAST)
    assert message in err
    assert not (tmp_path / "art").exists()


def test_a_checkpoint_without_weights_is_our_one_line_only(capsys, tmp_path, model_yaml):
    from diffusers import UNet2DModel

    checkpoint = tmp_path / "ckpt"
    UNet2DModel(**TINY_UNET).save_pretrained(checkpoint, safe_serialization=True)
    (checkpoint / "diffusion_pytorch_model.safetensors").unlink()
    err = _one_line(capsys, ["calibrate", model_yaml, "-o", str(tmp_path / "art"), "--checkpoint", str(checkpoint)])
    assert "no diffusion_pytorch_model.safetensors in it" in err
