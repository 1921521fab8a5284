"""`simdq estimate` and `simdq hw list` as a user runs them: outputs and every bad-input path."""

import csv
import io
import json
from pathlib import Path

import pytest
import torch
import yaml
from unet_fixtures import TINY_UNET

from simdq.cli import main

EXAMPLE = str(Path(__file__).parents[2] / "examples" / "ldm4-bedrooms-w1a4.yaml")


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write_yaml(tmp_path, data, name="model.yaml"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return str(path)


@pytest.fixture(scope="module")
def example_json(tmp_path_factory):
    path = tmp_path_factory.mktemp("out") / "estimate.json"
    assert main(["estimate", EXAMPLE, "--hw", "jetson", "--format", "json", "-o", str(path)]) == 0
    return json.loads(path.read_text())


def test_json_output_has_the_documented_shape(example_json):
    data = example_json
    assert {"model", "device", "convention", "totals", "per_image", "layers"} <= set(data)
    assert (data["model"], data["device"], data["convention"]) == ("ldm4-lsun-bedrooms",
                                                                  "jetson-agx-orin-64gb:gpu@MAXN", "binarydm")
    totals = data["totals"]
    for key in ("params", "size_mib", "weight_bytes", "macs", "bops", "flops", "ops", "latency_s", "energy_j"):
        assert key in totals
    assert totals["energy_j"] > 0  # the device file names an energy table
    for key in ("params", "weight_bytes", "macs", "bops", "flops", "ops", "latency_s", "energy_j"):
        assert totals[key] == pytest.approx(sum(layer[key] for layer in data["layers"]), rel=1e-9), key
    steps = yaml.safe_load(open(EXAMPLE))["input"]["steps"]
    assert data["per_image"]["ops"] == pytest.approx(steps * totals["ops"])
    assert data["savings"]["size_mib"] == pytest.approx(data["full_precision"]["size_mib"] / totals["size_mib"])


def test_terminal_table_shows_totals_savings_and_heaviest_layers(capsys, example_json):
    code, out, err = run(capsys, "estimate", EXAMPLE, "--hw", "jetson")
    assert code == 0 and not err
    size = example_json["totals"]["size_mib"]
    assert f"{size:.2f} MiB" in out
    assert f"{example_json['savings']['size_mib']:.2f}x" in out
    heaviest = max(example_json["layers"], key=lambda l: l["latency_s"] or 0)
    assert heaviest["name"] in out
    assert "not counted in OPs under binarydm: attention matmuls" in out


def test_per_layer_csv_matches_json(capsys, example_json):
    code, out, _ = run(capsys, "estimate", EXAMPLE, "--hw", "jetson", "--format", "csv", "--per-layer")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(rows) == len(example_json["layers"])
    for row, layer in zip(rows, example_json["layers"]):
        assert row["name"] == layer["name"] and float(row["ops"]) == pytest.approx(layer["ops"])
        assert row["mapping"] == (layer["mapping"] or "")


@pytest.mark.parametrize("fmt", ["markdown", "latex"])
def test_markdown_and_latex_tables_are_well_formed(capsys, fmt, example_json):
    code, out, _ = run(capsys, "estimate", EXAMPLE, "--hw", "jetson", "--format", fmt, "--per-layer")
    assert code == 0
    if fmt == "markdown":
        table_lines = [line for line in out.splitlines() if line.startswith("|")]
        per_table = {line.count("|") for line in table_lines}
        assert per_table == {4 + 1, 13 + 1}  # summary and per-layer tables, every row complete
        assert len(table_lines) == (2 + 14) + (2 + len(example_json["layers"]))
    else:
        assert out.count(r"\begin{tabular}") == out.count(r"\end{tabular}") == 2
        body = [line for line in out.splitlines() if line.endswith(r"\\")]
        assert all(line.count(" & ") in (3, 12) for line in body)
        assert "down\\_blocks" in out and "_blocks" not in out.replace("\\_blocks", "")


def test_batch_and_steps_flags_override_the_yaml(capsys, example_json):
    code, out, _ = run(capsys, "estimate", EXAMPLE, "--hw", "jetson", "--format", "json", "--batch", "4",
                       "--steps", "7")
    data = json.loads(out)
    assert code == 0 and data["input"]["batch"] == 4 and data["input"]["steps"] == 7
    assert data["totals"]["macs"] == 4 * example_json["totals"]["macs"]
    assert data["per_image"]["macs"] == pytest.approx(7 * example_json["totals"]["macs"])


def test_hw_list(capsys):
    code, out, _ = run(capsys, "hw", "list")
    assert code == 0 and "h100-sxm" in out and "jetson-agx-orin-64gb" in out and "204.8 GB/s" in out


def test_inline_diffusers_config_and_config_file(capsys, tmp_path):
    from diffusers import UNet2DModel

    with torch.device("meta"):
        expected = sum(p.numel() for p in UNet2DModel(**TINY_UNET).parameters())
    inline = write_yaml(tmp_path, {"model": {"diffusers": {"class": "UNet2DModel", "config": TINY_UNET}}})
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps({"_class_name": "UNet2DModel", **TINY_UNET}))
    from_file = write_yaml(tmp_path, {"model": {"config_file": str(config_file)}}, "file.yaml")
    for path in (inline, from_file):
        code, out, err = run(capsys, "estimate", path, "--hw", "h100", "--format", "json")
        assert code == 0, err
        assert json.loads(out)["totals"]["params"] == expected


BAD_YAML = [
    ({"model": {"preset": "ldm4-bedroom"}}, "model.preset: unknown preset 'ldm4-bedroom' (did you mean"),
    ({"model": {"preset": "sd15"}, "quant": {"weights": "int33"}}, "quant.weights: integer width must be 1..32"),
    ({"model": {"preset": "sd15"}, "quant": {"weights": "fp5"}}, "quant.weights: unknown format 'fp5'"),
    ({"model": {"preset": "sd15"}, "quant": {"policy": "bidm-coded"}}, "quant.policy: unknown layer policy"),
    ({"model": {"preset": "sd15"}, "input": {"batch": 0}}, "input.batch: input should be greater than 0"),
    ({"model": {"preset": "sd15"}, "input": {"steps": -5}}, "input.steps: input should be greater than 0"),
    ({"model": {"preset": "sd15"}, "input": {"batch": "four"}}, "input.batch: input should be a valid integer"),
    ({"model": {"preset": "sd15"}, "quant": {"rules": [{"match": "x", "weigths": "int4"}]}},
     "quant.rules[0].weigths: unknown key (did you mean 'weights'?)"),
    ({"model": {"preset": "sd15"}, "quant": {"rules": "conv_in"}}, "quant.rules: input should be a valid list"),
    ({"model": {"preset": "sd15"}, "qaunt": {}}, "qaunt: unknown key (did you mean 'quant'?)"),
    ({"model": {"preset": "sd15", "config_file": "x.json"}}, "model: give exactly one of preset, diffusers"),
    ({"model": {"config_file": "/nonexistent/config.json"}}, "model.config_file: config file '/nonexistent/config.json' does not exist"),
    ({"model": {"diffusers": {"class": "UNet2DModel", "config": {"block_out_channels": [32, 64]}}}},
     "block_out_channels (2), down_block_types (4) and up_block_types (4) need one entry per resolution"),
    ({"model": {"diffusers": {"class": "UNet2DModel", "config": {"down_block_types": ["Down2D"], "up_block_types":
                                                                  ["UpBlock2D"], "block_out_channels": [32],
                                                                  "sample_size": 8}}}},
     "diffusers cannot build UNet2DModel from this config (Down2D does not exist.)"),
    (["model", "preset"], "expected a mapping with keys model, input, quant, runtime, convention; got list"),
    ("model:\n  preset: sd15\n   steps: 3\n", "line 3: not valid YAML"),
]


@pytest.mark.parametrize("content, message", BAD_YAML)
def test_bad_model_yaml_is_one_line_and_exit_2(capsys, tmp_path, content, message):
    path = write_yaml(tmp_path, content)
    code, out, err = run(capsys, "estimate", path, "--hw", "jetson")
    assert code == 2 and not out
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert message in err, err


def _alias_bomb() -> str:
    """"Billion laughs": nine levels of nine aliases each, 9^9 strings once expanded, inside an allowed key."""
    lines = ["model: {preset: ddpm-cifar10}", "quant:", "  rules:", "    - match: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"    - match: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


HOSTILE_FILES = [
    ("model:\n  preset: sd15\n".encode("utf-16"), "not a UTF-8 text file (invalid start byte at byte 0)"),
    (bytes(range(256)) * 4, "not a UTF-8 text file"),
    (_alias_bomb().encode(), "line 2: aliases expand 'quant' by more than 100000 values"),
    (("model: " + "[" * 20000 + "]" * 20000 + "\n").encode(), "line 1: nested more than 64 levels deep"),
    (b"model: {preset: sd15}\nquant: {weights: int4}\nquant: {weights: int8}\n", "line 3: key 'quant' is given twice"),
    (b"model: {preset: sd15, preset: sdxl}\n", "line 1: key 'preset' is given twice"),
]


@pytest.mark.parametrize("content, message", HOSTILE_FILES)
def test_hostile_yaml_files_are_one_line_and_exit_2_at_once(capsys, tmp_path, content, message):
    import time

    path = tmp_path / "model.yaml"
    path.write_bytes(content)
    started = time.perf_counter()
    code, out, err = run(capsys, "estimate", str(path), "--hw", "h100")
    assert code == 2 and not out and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert message in err, err
    assert time.perf_counter() - started < 30  # refused before any expansion, not after a minute


def test_yaml_merge_keys_may_override_what_they_merge(capsys, tmp_path):
    base = {"model": {"preset": "ddpm-cifar10"}, "quant": {"weights": "int4", "activations": "int8"}}
    merged = ("common: &common {weights: int8, activations: int8}\nmodel: {preset: ddpm-cifar10}\n"
              "quant: {<<: *common, weights: int4}\n")
    code, out, err = run(capsys, "estimate", write_yaml(tmp_path, merged), "--hw", "h100", "--format", "json")
    assert code == 2 and "common: unknown key" in err  # anchors live in the document, so they must be keys it has
    merged = "model: {preset: ddpm-cifar10}\nquant: {<<: {weights: int8, activations: int8}, weights: int4}\n"
    code, out, _ = run(capsys, "estimate", write_yaml(tmp_path, merged), "--hw", "h100", "--format", "json")
    expected_code, expected, _ = run(capsys, "estimate", write_yaml(tmp_path, base, "plain.yaml"), "--hw", "h100",
                                     "--format", "json")
    assert code == expected_code == 0 and json.loads(out)["totals"] == json.loads(expected)["totals"]


@pytest.mark.parametrize("content, message", [
    (json.dumps({"_class_name": "UNet2DModel"}).encode("utf-16"), "is not UTF-8 text (invalid start byte"),
    (b"[" * 100000 + b"]" * 100000, "nests deeper than a diffusers config can"),
])
def test_hostile_config_files_are_one_line(capsys, tmp_path, content, message):
    config = tmp_path / "config.json"
    config.write_bytes(content)
    code, _, err = run(capsys, "estimate", write_yaml(tmp_path, {"model": {"config_file": str(config)}}), "--hw", "h100")
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err


def test_a_path_the_system_refuses_is_one_line(capsys, tmp_path):
    too_long = str(tmp_path / ("m" * 300 + ".yaml"))
    code, out, err = run(capsys, "estimate", too_long, "--hw", "h100")
    assert code == 2 and not out and err.strip().splitlines() == [f"simdq: error: {too_long}: File name too long"]


def test_a_reader_that_leaves_early_ends_the_command_quietly():
    import os
    import subprocess
    import sys

    simdq = os.path.join(os.path.dirname(sys.executable), "simdq")
    # the reader closes the pipe before simdq writes: every write then fails with EPIPE
    result = subprocess.run(f"'{simdq}' hw list | true", shell=True, capture_output=True, text=True, timeout=120,
                            executable="/bin/bash")
    assert result.stderr == "" and "Traceback" not in result.stderr
    status = subprocess.run(f"set -o pipefail; '{simdq}' hw list | true", shell=True, capture_output=True,
                            text=True, timeout=120, executable="/bin/bash")
    assert status.returncode == 141 and status.stderr == ""  # as a process killed by SIGPIPE


def test_config_file_that_is_not_a_unet_config(capsys, tmp_path):
    vae = tmp_path / "vae.json"
    vae.write_text(json.dumps({"_class_name": "AutoencoderKL", "latent_channels": 4}))
    code, _, err = run(capsys, "estimate", write_yaml(tmp_path, {"model": {"config_file": str(vae)}}), "--hw", "h100")
    assert code == 2 and "is not a diffusers UNet config (its _class_name is 'AutoencoderKL'" in err
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    code, _, err = run(capsys, "estimate", write_yaml(tmp_path, {"model": {"config_file": str(broken)}}), "--hw", "h100")
    assert code == 2 and "is not JSON" in err


@pytest.mark.parametrize("argv, message", [
    (["estimate", "/nonexistent.yaml", "--hw", "jetson"], "/nonexistent.yaml: no such file"),
    (["estimate", EXAMPLE, "--hw", "tpu9"], "unknown device 'tpu9'"),
    (["estimate", EXAMPLE, "--hw", "/nonexistent/device.yaml"], "/nonexistent/device.yaml: no such device file"),
    (["estimate", EXAMPLE, "--hw", "jetson", "--batch", "0"], "--batch: expected an integer from 1 to 65536, got '0'"),
    (["estimate", EXAMPLE, "--hw", "jetson", "--steps", "many"], "--steps: expected an integer from 1 to 10000, got 'many'"),
    (["estimate", EXAMPLE, "--hw", "jetson", "--format", "xml"], "argument --format: invalid choice: 'xml'"),
    (["estimate", EXAMPLE], "the following arguments are required: --hw"),
])
def test_bad_command_line_is_one_line_and_exit_2(capsys, argv, message):
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    assert code == 2 and not out and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and message in err, err


def test_output_is_written_whole_with_the_usual_permissions(tmp_path):
    import os
    import stat

    out = tmp_path / "estimate.json"
    out.write_text("previous")
    assert main(["estimate", EXAMPLE, "--hw", "jetson", "--format", "json", "-o", str(out)]) == 0
    assert json.loads(out.read_text())["model"] == "ldm4-lsun-bedrooms"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask
    assert [p.name for p in tmp_path.iterdir()] == ["estimate.json"]  # no temporary left behind
