"""model.layer: one conv or linear layer by shape, costed as a one-layer model."""

import pytest
import yaml

from simdq.cli import main
from simdq.cli.estimate import run_estimate
from simdq.config import parse_config

LARQ_CONV = {"kind": "conv", "in_channels": 448, "out_channels": 448, "kernel_size": 3, "size": 32}


def estimate(layer, quant=None, convention="binarydm"):
    config = parse_config({"model": {"layer": layer}, "quant": quant or {}, "convention": convention}, "layer.yaml")
    return run_estimate(config, "xne-like")


def test_the_larq_conv_counts_by_hand():
    result = estimate(LARQ_CONV, {"weights": "binary", "activations": "binary"})
    (layer,) = [r for r in result.layers if r.layer.is_weight_layer]
    macs = 32 * 32 * 448 * 448 * 3 * 3
    assert (layer.layer.name, layer.layer.macs) == ("conv", macs)
    assert result.totals["params"] == 448 * 448 * 9 + 448
    assert result.totals["bops"] == macs and result.totals["ops"] == macs / 64
    assert result.totals["size_mib"] == pytest.approx((448 * 448 * 9 * 1 + 448 * 32) / 8 / 2**20)
    assert result.model == "conv 3x3 448->448 at 32x32"


def test_stride_padding_and_a_rectangular_input_set_the_output_shape():
    layer = {"kind": "conv", "in_channels": 8, "out_channels": 16, "kernel_size": 3, "size": [17, 9], "stride": 2,
             "padding": 0}
    (conv,) = [r.layer for r in estimate(layer).layers if r.layer.is_weight_layer]
    out_h, out_w = (17 - 3) // 2 + 1, (9 - 3) // 2 + 1
    assert conv.output_shape == (1, 16, out_h, out_w) and conv.macs == out_h * out_w * 16 * 8 * 9


def test_a_linear_layer_counts_tokens_times_features():
    layer = {"kind": "linear", "in_channels": 320, "out_channels": 1280, "size": 77, "bias": False}
    result = estimate(layer, {"weights": "int4", "activations": "int8"})
    assert result.totals["macs"] == 77 * 320 * 1280 and result.totals["params"] == 320 * 1280
    assert result.totals["bops"] == 4 * 8 * 77 * 320 * 1280


@pytest.mark.parametrize("model, message", [
    ({"preset": "sd15", "layer": LARQ_CONV}, "give exactly one of preset, diffusers, config_file, layer (got preset, layer)"),
    ({"layer": {**LARQ_CONV, "size": 1, "padding": 0}}, "a 3x3 kernel does not fit a [1] input with padding 0"),
    ({"layer": {**LARQ_CONV, "kind": "linear", "size": [4, 4]}}, "a linear layer's size is its number of tokens"),
    ({"layer": {**LARQ_CONV, "kernel": 3}}, "model.layer.kernel: unknown key (did you mean 'kernel_size'?)"),
])
def test_bad_layer_is_one_line_and_exit_2(tmp_path, capsys, model, message):
    path = tmp_path / "layer.yaml"
    path.write_text(yaml.safe_dump({"model": model}))
    assert main(["estimate", str(path), "--hw", "xne-like"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_sample_size_does_not_apply_to_a_layer(tmp_path, capsys):
    path = tmp_path / "layer.yaml"
    path.write_text(yaml.safe_dump({"model": {"layer": LARQ_CONV}, "input": {"sample_size": 64}}))
    assert main(["estimate", str(path), "--hw", "xne-like"]) == 2
    assert "do not apply to model.layer" in capsys.readouterr().err


def test_calibration_refuses_a_layer(tmp_path, capsys):
    path = tmp_path / "layer.yaml"
    path.write_text(yaml.safe_dump({"model": {"layer": LARQ_CONV}, "quant": {"weights": "int8"}}))
    assert main(["calibrate", str(path), "-o", str(tmp_path / "art")]) == 2
    assert "calibration runs a whole UNet" in capsys.readouterr().err
    assert not (tmp_path / "art").exists()


def test_a_sweep_over_a_layer_keeps_the_layer(tmp_path):
    import pandas as pd

    base = tmp_path / "layer.yaml"
    base.write_text(yaml.safe_dump({"model": {"layer": LARQ_CONV}, "quant": {"weights": "binary",
                                                                            "activations": "binary"}}))
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"base": str(base), "schemes": {"w1a1": {}, "w4a4": {"weights": "int4",
                                     "activations": "int4"}}, "devices": ["xne-like"], "batch": [1, 2]}))
    assert main(["sweep", str(sweep), "-o", str(tmp_path / "out.parquet")]) == 0
    rows = pd.read_parquet(tmp_path / "out.parquet")
    macs = 32 * 32 * 448 * 448 * 9
    assert sorted(rows["macs"]) == [macs, macs, 2 * macs, 2 * macs]
    assert set(rows["preset"]) == {"conv 3x3 448->448 at 32x32"}
    assert sorted(rows.loc[rows["batch"] == 1, "bops"]) == [macs, 16 * macs]
