"""The calibrated artifact: round trip, `simdq calibrate` and `simdq estimate ART_DIR`, and every load error."""

import json
import shutil

import pytest
import torch
import yaml
from unet_fixtures import TINY_UNET, reseal

from simdq.artifact import read_metadata
from simdq.calibrate.persist import load_artifact
from simdq.cli import main
from simdq.errors import SimdqError
from simdq.calibrate.modules import QuantConv2d, QuantLinear

MODEL = {"model": {"diffusers": {"class": "UNet2DModel", "config": TINY_UNET}},
         "quant": {"weights": "int4", "activations": "int8", "policy": "binarydm"}}


def _fresh_unet():
    from diffusers import UNet2DModel

    return UNet2DModel(**TINY_UNET).eval()


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    root = tmp_path_factory.mktemp("art")
    model_yaml = root / "model.yaml"
    model_yaml.write_text(yaml.safe_dump(MODEL))
    directory = root / "artifact"
    code = main(["calibrate", str(model_yaml), "-o", str(directory), "--samples", "2", "--steps", "3", "--batch", "2"])
    assert code == 0
    return model_yaml, directory


def test_round_trip_gives_the_same_codes_and_outputs(artifact):
    _, directory = artifact
    first, metadata = load_artifact(directory, _fresh_unet())
    second, _ = load_artifact(directory, _fresh_unet())
    layers = [n for n, m in first.named_modules() if isinstance(m, (QuantConv2d, QuantLinear))]
    assert set(layers) == set(metadata["layers"]) and layers
    modules = dict(second.named_modules())
    for name in layers:
        a, b = dict(first.named_modules())[name], modules[name]
        assert torch.equal(a.quantized_weight.codes, b.quantized_weight.codes)
        # the stored codes are what quantizing the loaded weights gives again
        from simdq.calibrate.weights import WeightQuantizer

        again = WeightQuantizer("int4").quantize(a.weight)
        assert torch.equal(again.codes, a.quantized_weight.codes)
    inputs = {"sample": torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(9)),
              "timestep": torch.tensor([333, 333])}
    with torch.no_grad():
        assert torch.equal(first(**inputs).sample, second(**inputs).sample)
    assert metadata["settings"]["steps"] == 3 and set(metadata["quality"]["output"]) == {666, 333, 0}


def test_estimate_costs_the_artifact_like_its_model_yaml(artifact, capsys):
    model_yaml, directory = artifact
    assert main(["estimate", str(directory), "--hw", "jetson", "--format", "json"]) == 0
    from_artifact = json.loads(capsys.readouterr().out)
    assert main(["estimate", str(model_yaml), "--hw", "jetson", "--format", "json"]) == 0
    from_yaml = json.loads(capsys.readouterr().out)
    assert from_artifact["totals"] == from_yaml["totals"]


def _damaged(artifact, tmp_path, change):
    _, directory = artifact
    copy = tmp_path / "copy"
    shutil.copytree(directory, copy)
    change(copy)
    return copy


def _edit_yaml(edit, sealed=True):
    def change(directory):
        data = yaml.safe_load((directory / "quant.yaml").read_text())
        edit(data)
        (directory / "quant.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        if sealed:
            reseal(directory)
    return change


def _rewrite_tensors(edit, sealed=True):
    def change(directory):
        from safetensors.torch import load_file, save_file

        tensors = load_file(str(directory / "model.safetensors"))
        edit(tensors)
        save_file(tensors, str(directory / "model.safetensors"))
        if sealed:
            reseal(directory)
    return change


CONV = "down_blocks.0.resnets.0.conv1"


def _layer(data):
    return data["layers"][CONV]


def _set(tensors, key, value):
    tensors[key] = value


# (damage, message): every one refused by load_artifact and by `simdq estimate ART_DIR` alike
LOAD_ERRORS = [
    (lambda d: (d / "quant.yaml").unlink(), "quant.yaml is missing"),
    (lambda d: (d / "quant.yaml").write_text("model: [unclosed\n"), "quant.yaml: damaged"),
    (lambda d: (d / "quant.yaml").write_text("model: {}\n"), "damaged (needs simdq_version, model, quant and layers)"),
    (_edit_yaml(lambda data: data.update(simdq_version="9.0.0")), "written by simdq 9.0.0"),
    (_edit_yaml(lambda data: data.pop("integrity"), sealed=False), "not sealed"),
    (lambda d: (d / "model.safetensors").unlink(), "model.safetensors is missing"),
    (lambda d: (d / "model.safetensors").write_bytes(b"not a safetensors file"), "SHA-256 is not the one quant.yaml"),
    # changes made without resealing: the seal catches each
    (_edit_yaml(lambda data: data["quality"]["output"].update({0: {"mse": 0.0, "cosine": 1.0}}), sealed=False),
     "its content does not match its recorded SHA-256"),
    (_rewrite_tensors(lambda t: t["conv_in.bias"].add_(1e-3), sealed=False), "SHA-256 is not the one quant.yaml"),
    # forged artifacts, resealed: the record checks catch each
    (_edit_yaml(lambda data: data.update(layers=list(data["layers"]))), "layers must be a mapping, got list"),
    (_edit_yaml(lambda data: data["layers"].pop(CONV)), f"layer {CONV} does not match the scheme"),
    (_edit_yaml(lambda data: _layer(data).update(weight_format="int99")), "weight_format: integer width must be 1..32"),
    (_edit_yaml(lambda data: _layer(data).update(weight_format="int8")), f"layer {CONV} does not match the scheme"),
    (_edit_yaml(lambda data: _layer(data).update(weight_shape=[32, 32, 1, 1])),
     "stored weight shape [32, 32, 1, 1] does not match the model's [32, 32, 3, 3]"),
    (_edit_yaml(lambda data: _layer(data).update(weight_shape="32x32")), "weight_shape: damaged"),
    (_edit_yaml(lambda data: _layer(data).update(granularity="per_row")), "granularity: damaged"),
    (_edit_yaml(lambda data: data["quant"].update(weights="int44")), "quant.weights: integer width must be 1..32"),
    (_rewrite_tensors(lambda t: t.pop(f"{CONV}.weight.codes")), f"tensor '{CONV}.weight.codes' is missing"),
    (_rewrite_tensors(lambda t: _set(t, f"{CONV}.weight.codes", t[f"{CONV}.weight.codes"][:-5].clone())),
     f"tensor '{CONV}.weight.codes' has shape"),
    (_rewrite_tensors(lambda t: _set(t, f"{CONV}.weight.scale", t[f"{CONV}.weight.scale"].float())),
     f"tensor '{CONV}.weight.scale' is float32, expected float64"),
    (_rewrite_tensors(lambda t: t[f"{CONV}.weight.scale"].__setitem__(3, float("nan"))),
     f"tensor '{CONV}.weight.scale' holds nan"),
    (_rewrite_tensors(lambda t: t[f"{CONV}.input_quantizer.scales"].fill_(float("inf"))),
     f"tensor '{CONV}.input_quantizer.scales' holds inf"),
    (_rewrite_tensors(lambda t: t[f"{CONV}.input_quantizer.scales"].fill_(0.0)),
     f"tensor '{CONV}.input_quantizer.scales' holds 0.0"),
    (_rewrite_tensors(lambda t: t.pop("conv_in.bias")), "tensor 'conv_in.bias' is missing"),
    (_rewrite_tensors(lambda t: _set(t, "conv_norm_out.weight", t["conv_norm_out.weight"][:16].clone())),
     "tensor 'conv_norm_out.weight' has shape [16], the model's is [32]"),
    (_rewrite_tensors(lambda t: t["conv_norm_out.bias"].__setitem__(0, float("nan"))),
     "tensor 'conv_norm_out.bias' holds NaN or infinity"),
]


@pytest.mark.parametrize("change, message", LOAD_ERRORS)
def test_every_load_error_is_one_clear_line(artifact, tmp_path, capsys, change, message):
    directory = _damaged(artifact, tmp_path, change)
    with pytest.raises(SimdqError) as error:
        load_artifact(directory, _fresh_unet())
    assert message in str(error.value) and "\n" not in str(error.value)
    assert main(["estimate", str(directory), "--hw", "h100"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    (["--timestep-groups", "some"], "expected per_step, merged or a number of bins from 1 to 1000"),
    (["--calib-data", "/nonexistent.safetensors"], "--calib-data /nonexistent.safetensors: no such file"),
])
def test_calibrate_argument_errors(artifact, tmp_path, capsys, argv, message):
    model_yaml, _ = artifact
    assert main(["calibrate", str(model_yaml), "-o", str(tmp_path / "out")] + argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_calibrate_from_given_latents(artifact, tmp_path):
    from safetensors.torch import save_file

    model_yaml, _ = artifact
    data = tmp_path / "latents.safetensors"
    save_file({"latents": torch.randn(2, 3, 16, 16)}, str(data))
    out = tmp_path / "from-latents"
    assert main(["calibrate", str(model_yaml), "-o", str(out), "--calib-data", str(data), "--steps", "2",
                 "--timestep-groups", "merged"]) == 0
    metadata = read_metadata(out)
    assert metadata["settings"]["samples"] == 2 and metadata["settings"]["timestep_groups"] is None


def _round_trip(tmp_path, quant: dict):
    """Calibrate the tiny UNet under `quant`, load the artifact twice; the two loads must agree exactly."""
    model_yaml = tmp_path / "scheme.yaml"
    model_yaml.write_text(yaml.safe_dump({**MODEL, "quant": quant}))
    directory = tmp_path / "artifact"
    assert main(["calibrate", str(model_yaml), "-o", str(directory), "--samples", "2", "--steps", "2"]) == 0
    first, _ = load_artifact(directory, _fresh_unet())
    second, _ = load_artifact(directory, _fresh_unet())
    inputs = {"sample": torch.randn(2, 3, 16, 16), "timestep": torch.tensor([500, 500])}
    with torch.no_grad():
        assert torch.equal(first(**inputs).sample, second(**inputs).sample)
    return first, read_metadata(directory)


def test_quantized_attention_survives_the_round_trip(tmp_path):
    _, metadata = _round_trip(tmp_path, {**MODEL["quant"], "attention": {"quantize": True, "activations": "int8"}})
    assert sum(path.endswith("attention_quantizers.p") for path in metadata["activations"]) == 4


def test_block_scaled_weights_survive_the_round_trip(tmp_path):
    first, _ = _round_trip(tmp_path, {"weights": "nvfp4", "activations": "mxfp8_e4m3", "policy": "binarydm"})
    conv = first.down_blocks[0].resnets[0].conv1
    assert conv.quantized_weight.granularity == "per_block" and conv.quantized_weight.tensor_scale is not None


def test_two_basis_weights_survive_the_round_trip(tmp_path, capsys):
    first, metadata = _round_trip(tmp_path, {"weights": "binary2", "activations": "int4", "policy": "binarydm"})
    stored = first.down_blocks[0].resnets[0].conv1.quantized_weight
    assert stored.scale.shape == (stored.shape[0], 2) and int(stored.codes.max()) == 3
    assert metadata["layers"]["down_blocks.0.resnets.0.conv1"]["weight_format"] == "binary2"
    # one scale per plane: a record of one scale per channel no longer fits it
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(tmp_path / "artifact" / "model.safetensors"))
    tensors["down_blocks.0.resnets.0.conv1.weight.scale"] = tensors["down_blocks.0.resnets.0.conv1.weight.scale"][:, 0]
    save_file(tensors, str(tmp_path / "artifact" / "model.safetensors"))
    reseal(tmp_path / "artifact")
    assert main(["estimate", str(tmp_path / "artifact"), "--hw", "h100"]) == 2
    assert "down_blocks.0.resnets.0.conv1.weight.scale" in capsys.readouterr().err


def test_quant_yaml_lists_ranges_per_timestep(artifact):
    _, directory = artifact
    metadata = read_metadata(directory)
    ranges = metadata["activations"]["down_blocks.0.resnets.0.conv1.input_quantizer"]["scales"]
    assert set(ranges) == {666, 333, 0} and all(value > 0 for value in ranges.values())
    assert metadata["layers"]["down_blocks.0.resnets.0.conv1"]["weight_format"] == "int4"


def test_calibrate_a_local_checkpoint(tmp_path):
    from diffusers import UNet2DModel

    torch.manual_seed(42)
    unet = UNet2DModel(**TINY_UNET)
    checkpoint = tmp_path / "checkpoint"
    unet.save_pretrained(checkpoint, safe_serialization=True)
    model_yaml = tmp_path / "ckpt.yaml"
    model_yaml.write_text(yaml.safe_dump({"model": {"preset": "ddpm-cifar10"}, "quant": MODEL["quant"]}))
    out = tmp_path / "from-checkpoint"
    assert main(["calibrate", str(model_yaml), "-o", str(out), "--checkpoint", str(checkpoint), "--samples", "2",
                 "--steps", "2"]) == 0
    metadata = read_metadata(out)
    assert metadata["model"]["diffusers"]["config"]["block_out_channels"] == [32, 64]  # the checkpoint's model
    loaded, _ = load_artifact(out, _fresh_unet())
    assert torch.equal(loaded.conv_in.weight, unet.conv_in.weight)  # kept at full precision by the policy
    missing = tmp_path / "nothing-here"
    missing.mkdir()
    assert main(["calibrate", str(model_yaml), "-o", str(out), "--checkpoint", str(missing)]) == 2


def test_wide_weight_codes_round_trip(tmp_path):
    first, _ = _round_trip(tmp_path, {"weights": "int12", "activations": "e5m7", "policy": "binarydm"})
    assert first.down_blocks[0].resnets[0].conv1.quantized_weight.codes.max() > 255  # really 12-bit codes
