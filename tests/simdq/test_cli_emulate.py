"""`simdq calibrate`, then `simdq emulate` and `simdq parity model` on the tiny UNet, as a user runs them."""

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file
from unet_fixtures import TINY_UNET

from simdq.cli import main

MODEL = {"model": {"diffusers": {"class": "UNet2DModel", "config": TINY_UNET}},
         "quant": {"weights": "int8", "activations": "int8", "attention": {"quantize": True}}}


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-emulate")
    (root / "model.yaml").write_text(yaml.safe_dump(MODEL))
    art = root / "art"
    assert main(["calibrate", str(root / "model.yaml"), "-o", str(art), "--samples", "1", "--steps", "3",
                 "--batch", "1"]) == 0
    return root, art


def test_emulate_writes_the_trajectory_it_computes(calibrated, capsys):
    from simdq.emulate.runtime import load_emulated
    from simdq.model.sampling import ddim_sample

    root, art = calibrated
    out = root / "latents.safetensors"
    assert main(["emulate", str(art), "--hw", "h100", "-o", str(out), "--quiet", "--seed", "4"]) == 0
    assert "int32_saturate" in capsys.readouterr().err
    saved = load_file(str(out))["latents"]
    model = load_emulated(art, accumulator="int32_saturate")
    again = ddim_sample(model, model.unet, steps=3, seed=4)
    assert torch.equal(saved, again)  # the file holds the emulated trajectory, reloaded bit for bit
    with model.emulating(False):
        fake = ddim_sample(model, model.unet, steps=3, seed=4)
    assert not torch.equal(saved, fake)


def test_requantized_emulation_runs_and_says_so(calibrated, capsys):
    root, art = calibrated
    out = root / "requantized.safetensors"
    assert main(["emulate", str(art), "--requant", "gemmlowp", "-o", str(out), "--quiet"]) == 0
    assert "requantized (gemmlowp)" in capsys.readouterr().err
    plain = root / "plain.safetensors"
    assert main(["emulate", str(art), "-o", str(plain), "--quiet"]) == 0
    requantized, dequantized = load_file(str(out))["latents"], load_file(str(plain))["latents"]
    assert not torch.equal(requantized, dequantized)  # int8 outputs move the trajectory
    assert torch.nn.functional.cosine_similarity(requantized.flatten(), dequantized.flatten(), dim=0) > 0.9
    assert main(["parity", "model", str(art), "--requant", "gemmlowp", "--samples", "1"]) == 0


def test_forward_writes_one_prediction(calibrated):
    root, art = calibrated
    out = root / "forward.safetensors"
    assert main(["emulate", str(art), "--forward", "--timestep", "333", "-o", str(out), "--quiet"]) == 0
    tensors = load_file(str(out))
    assert set(tensors) == {"sample", "prediction"} and tensors["prediction"].shape == (1, 3, 16, 16)


def test_interrupted_emulation_leaves_no_file(calibrated, monkeypatch, capsys):
    import simdq.model.sampling as sampling

    root, art = calibrated
    out = root / "interrupted.safetensors"

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sampling, "ddim_sample", interrupt)
    assert main(["emulate", str(art), "-o", str(out), "--quiet"]) == 130
    assert not out.exists() and not list(root.glob(".interrupted*"))
    assert "no output written" in capsys.readouterr().err


@pytest.mark.parametrize("arguments, message", [
    (["--decode"], "simdq has no VAE"),
    (["--steps", "5"], "no calibrated activation range"),
    (["--accumulator", "int33_sat"], "--accumulator: unknown accumulator"),
    (["--hw", "no-such-device"], "no-such-device"),
    (["-o", "/no/such/folder/x.safetensors"], "does not exist"),
    (["--requant", "onnxrt"], "--requant onnxrt: unknown convention"),
])
def test_bad_input_is_one_line_and_exit_2(calibrated, capsys, arguments, message):
    _, art = calibrated
    assert main(["emulate", str(art), "--quiet", *arguments]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_not_an_artifact(tmp_path, capsys):
    assert main(["emulate", str(tmp_path / "nothing")]) == 2
    assert "not an artifact directory" in capsys.readouterr().err


def test_parity_model_reports_every_layer(calibrated, capsys):
    root, art = calibrated
    plot = root / "sqnr.png"
    code = main(["parity", "model", str(art), "--hw", "h100", "--format", "json", "--samples", "2",
                 "-o", str(root / "parity.json"), "--plot", str(plot)])
    assert code == 0
    report = json.loads((root / "parity.json").read_text())
    assert report["device"] == "h100-sxm" and report["steps"] == 3
    layers = report["layers"]
    assert layers and all(row["mismatched"] == 0 and row["checked"] > 0 for row in layers)
    assert {row["accumulator"] for row in layers} == {"int32_saturate"}
    assert len(report["per_step"]) == 3 and all("vs_full_precision" in s for s in report["per_step"])
    assert "seed 0" in report["full_precision_reference"]
    # the full-precision UNet is found again: quantized, it must not equal itself
    assert 0.9 < report["trajectories"]["device vs full precision"]["cosine"] < 1.0
    assert plot.stat().st_size > 10_000
    assert main(["parity", "model", str(art), "--samples", "1"]) == 0
    text = capsys.readouterr().out
    assert "(a) emulator against its references" in text and "every accumulator is exact" in text
