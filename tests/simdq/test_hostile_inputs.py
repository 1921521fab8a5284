"""Hostile inputs, generated: valid model.yaml documents and a shipped device file, mutated (wrong types,
deleted and unknown keys, extreme numbers, raw bytes), run through the CLI in-process. Every run either
succeeds with a whole output or exits 2 with exactly one line on stderr; never a traceback, never a partial
file. And an artifact corrupted at any byte range is always refused."""

import contextlib
import copy
import io
import json
import math
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from unet_fixtures import TINY_UNET

from simdq.cli import main

DEVICE_FILE = Path(__file__).parents[2] / "hw_models" / "devices" / "jetson-orin-nano.yaml"
FORMATS = ["int8", "int4", "uint4", "e4m3fn", "e5m2", "e2m1", "mxfp4", "nvfp4", "binary", "fp16", "bf16"]
POLICIES = ["binarydm", "bidm", "all-quantized", "efficientdm"]
HOSTILE_VALUES = [None, True, False, 0, -1, 2**63, 10**30, -(10**30), 1e308, math.inf, -math.inf, math.nan, "",
                  "x" * 300, "int99", [], [1, [2, [3]]], {}, {"a": {"b": None}}, 0.5, "1e400", "ー"]


def _model_documents():
    """Valid model.yaml documents: a preset or an inline diffusers UNet, any scheme, any policy, any input."""
    model = st.one_of(
        st.just({"preset": "ddpm-cifar10"}),
        st.just({"diffusers": {"class": "UNet2DModel", "config": dict(TINY_UNET)}}),
    )
    quant = st.fixed_dictionaries({}, optional={
        "weights": st.sampled_from(FORMATS), "activations": st.sampled_from(FORMATS),
        "policy": st.sampled_from(POLICIES),
        "granularity": st.fixed_dictionaries({}, optional={
            "weights": st.sampled_from(["per_tensor", "per_channel"]),
            "activations": st.sampled_from(["per_tensor", "per_token"])}),
        "attention": st.fixed_dictionaries({}, optional={"quantize": st.booleans()}),
        "scale_format": st.sampled_from(["fp32", "fp16", "e8m0"]),
    })
    run_input = st.fixed_dictionaries({}, optional={"batch": st.integers(1, 4), "steps": st.integers(1, 50)})
    return st.fixed_dictionaries({"model": model}, optional={
        "quant": quant, "input": run_input, "convention": st.sampled_from(["binarydm", "bidm"])})


def _paths(document, prefix=()):
    """Every key path of a nested document (lists by index)."""
    if isinstance(document, dict):
        items = document.items()
    elif isinstance(document, list):
        items = enumerate(document)
    else:
        return
    for key, value in items:
        yield prefix + (key,)
        yield from _paths(value, prefix + (key,))


def _at(document, path):
    for key in path[:-1]:
        document = document[key]
    return document


@st.composite
def _mutated(draw, documents):
    """A document with one to three mutations, written as YAML text, or raw bytes instead of YAML."""
    document = copy.deepcopy(draw(documents))
    if draw(st.integers(0, 9)) == 0:  # not YAML text at all
        return draw(st.one_of(st.binary(max_size=200), st.just(yaml.safe_dump(document).encode("utf-16")),
                              st.just(yaml.safe_dump(document).encode()[:draw(st.integers(0, 40))])))
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(document))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _at(document, path), path[-1]
        action = draw(st.sampled_from(["replace", "delete", "unknown key"]))
        if action == "replace":
            parent[key] = draw(st.sampled_from(HOSTILE_VALUES))
        elif action == "delete" and isinstance(parent, dict):
            del parent[key]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(["weigths", "layers_per_blok", "bandwith", "extra", "1"]))] = 1
    return yaml.safe_dump(document, allow_unicode=True)


def _run(argv):
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(argv)
    return code, err.getvalue()


def _check_outcome(code, err, output: Path):
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    assert code in (0, 2), err
    if code == 2:
        assert len(lines) == 1 and lines[0].startswith("simdq"), err
        assert not output.exists()
    else:
        assert json.loads(output.read_text())["totals"]  # whole, not a prefix of the report
    assert [p.name for p in output.parent.iterdir() if p.name.startswith(".")] == []  # no temporary left


@settings(max_examples=60)
@given(text=_mutated(_model_documents()))
def test_mutated_model_yaml_is_costed_or_refused_in_one_line(tmp_path_factory, text):
    folder = tmp_path_factory.mktemp("model")
    model, output = folder / "model.yaml", folder / "out" / "estimate.json"
    output.parent.mkdir()
    (model.write_bytes if isinstance(text, bytes) else model.write_text)(text)
    code, err = _run(["estimate", str(model), "--hw", "h100", "--format", "json", "-o", str(output)])
    _check_outcome(code, err, output)


@settings(max_examples=40)
@given(text=_mutated(st.just(yaml.safe_load(DEVICE_FILE.read_text()))))
def test_mutated_device_file_is_used_or_refused_in_one_line(tmp_path_factory, text):
    folder = tmp_path_factory.mktemp("device")
    device, output = folder / "device.yaml", folder / "out" / "estimate.json"
    output.parent.mkdir()
    (device.write_bytes if isinstance(text, bytes) else device.write_text)(text)
    model = folder / "model.yaml"
    model.write_text(yaml.safe_dump({"model": {"diffusers": {"class": "UNet2DModel", "config": TINY_UNET}},
                                     "quant": {"weights": "int8", "activations": "int8"}}))
    code, err = _run(["estimate", str(model), "--hw", str(device), "--format", "json", "-o", str(output)])
    _check_outcome(code, err, output)


@pytest.fixture(scope="module")
def small_artifact(tmp_path_factory):
    root = tmp_path_factory.mktemp("artifact")
    (root / "model.yaml").write_text(yaml.safe_dump({
        "model": {"diffusers": {"class": "UNet2DModel", "config": {**TINY_UNET, "block_out_channels": [8, 16],
                                                                   "norm_num_groups": 4}}},
        "quant": {"weights": "int4", "activations": "int8"}}))
    code, err = _run(["calibrate", str(root / "model.yaml"), "-o", str(root / "art"), "--samples", "1", "--steps", "1",
                      "--batch", "1"])
    assert code == 0, err
    return root / "art"


def _corruptions(size: int, pieces: int):
    """(offset, length) covering the whole file in `pieces` ranges."""
    step = max(1, -(-size // pieces))
    return [(start, min(step, size - start)) for start in range(0, size, step)]


@pytest.mark.parametrize("name", ["model.safetensors", "quant.yaml"])
def test_every_corrupted_byte_range_of_an_artifact_is_refused(small_artifact, tmp_path, name):
    from simdq.calibrate.persist import check_artifact
    from simdq.errors import SimdqError

    original = (small_artifact / name).read_bytes()
    ranges = _corruptions(len(original), 48)
    assert sum(length for _, length in ranges) == len(original)
    for start, length in ranges:
        copy_dir = tmp_path / f"{name}-{start}"
        shutil.copytree(small_artifact, copy_dir)
        damaged = bytearray(original)
        damaged[start:start + length] = bytes(b ^ 0x5A for b in damaged[start:start + length])
        (copy_dir / name).write_bytes(bytes(damaged))
        with pytest.raises(SimdqError):
            check_artifact(copy_dir)
        code, err = _run(["estimate", str(copy_dir), "--hw", "h100"])
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (start, err)
        shutil.rmtree(copy_dir)
    check_artifact(small_artifact)  # the untouched artifact still loads


def test_a_truncated_artifact_is_refused(small_artifact, tmp_path):
    from simdq.calibrate.persist import check_artifact
    from simdq.errors import SimdqError

    for name in ("model.safetensors", "quant.yaml"):
        size = (small_artifact / name).stat().st_size
        for keep in (0, 1, size // 2, size - 2):  # (quant.yaml without its final newline says the same)
            copy_dir = tmp_path / f"{name}-{keep}"
            shutil.copytree(small_artifact, copy_dir)
            with open(copy_dir / name, "r+b") as handle:
                handle.truncate(keep)
            with pytest.raises(SimdqError):
                check_artifact(copy_dir)
