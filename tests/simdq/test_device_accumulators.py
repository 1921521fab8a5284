"""Device files name emulator accumulators in `accumulate:`; simdq resolves them and rejects a wrong name in one line."""

import copy
from pathlib import Path

import yaml

from emulator import get_accumulator
from hw_models import list_devices, load_device
from simdq.cli.main import main
from simdq.scheme.accumulators import accumulator_for, device_accumulators


def test_every_compute_precision_of_every_shipped_device_names_a_known_accumulator():
    for device in list_devices():
        named = device_accumulators(device)
        for engine_name, engine in device.spec["engines"].items():
            precisions = engine.get("compute") or engine.get("precisions") or {}
            assert {p for (e, p) in named if e == engine_name} == set(precisions), (device.name, engine_name)
    every = {acc.name for device in list_devices() for acc in device_accumulators(device).values()}
    assert every >= {"fp32", "int32", "int64", "sm90_fp8", "sm90_bf16", "int32_saturate"}


def test_hopper_devices_use_the_measured_tensor_core_rules():
    for name in ("h200", "h100-sxm", "h100-sxm-calibrated"):
        device = load_device(name)
        assert accumulator_for(device, "fp8") == get_accumulator("sm90_fp8")
        assert accumulator_for(device, "bf16") == get_accumulator("sm90_bf16")
        assert accumulator_for(device, "int8") == get_accumulator("int32_saturate")  # torch._int_mm saturates


def test_a_wrong_accumulator_name_is_one_line_and_exit_2(tmp_path, capsys):
    spec = copy.deepcopy(load_device("h200").spec)  # the catalogue's device is shared: never edit it
    spec["engines"]["gpu"]["compute"]["fp8"]["accumulate"] = "sm90_fp9"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(spec))
    code = main(["hw", "show", str(Path(path))])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "engines.gpu.compute.fp8.accumulate" in err and "sm90_fp8" in err  # where, and the did-you-mean
