"""benchmarks/gpu_validation.py report: a file it cannot use is refused in one line with exit code 2, before the
fit rewrites any device file."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import gpu_validation  # noqa: E402

REPORTS = Path(__file__).resolve().parents[2] / "reports"
H200_FILE = Path(__file__).resolve().parents[2] / "hw_models" / "devices" / "h200.yaml"


def _run(tmp_path, measurements, samples=None, base="h200", survey=None):
    paths = []
    for name, content in (("measurements.json", measurements), ("samples.json", samples), ("survey.json", survey)):
        if content is None:
            continue
        path = tmp_path / name
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        paths.append(path)
    argv = ["report", str(paths[0]), "-o", str(tmp_path / "out.md"), "--base", base]
    if samples is not None:
        argv += ["--samples-from", str(paths[1])]
    if survey is not None:
        argv += ["--conv-algorithms", str(paths[-1])]
    return gpu_validation.main(argv)


GOOD_RUN = {"preset": "sd15", "precision": "fp16", "variant": "plain", "batch": 1, "forward_s": 0.01}


@pytest.mark.parametrize("measurements, samples, message", [
    ("{not json", None, "not a readable measurements file"),
    ([1, 2], None, "a JSON object expected"),
    ({"runs": [{"preset": "sd15", "forward_s": 0.01}]}, None, "a run is malformed"),
    ({"runs": [{**GOOD_RUN, "batch": "one"}]}, None, "a run is malformed"),
    ({"runs": [GOOD_RUN]}, "{broken", "not a readable microbenchmark record"),
    ({"runs": [GOOD_RUN]}, {"measurements": [{"label": "x"}]}, "a measurement is malformed"),
])
def test_a_file_report_cannot_use_is_refused_in_one_line(tmp_path, capsys, measurements, samples, message):
    before = H200_FILE.read_bytes()
    assert _run(tmp_path, measurements, samples) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert H200_FILE.read_bytes() == before and not (tmp_path / "out.md").exists()


@pytest.mark.parametrize("survey, message", [
    ("{", "survey.json: not a readable convolution survey"),
    ({"format": "simdq-kernel-census-1", "runs": []}, "survey.json: not a convolution survey"),
    ({"format": "simdq-conv-algorithms-1", "gpu": "G", "torch": "t", "cudnn": 1, "rows": []},
     "survey.json: 0 FFT convolutions to fit the FFT class on; at least 2 needed"),
])
def test_a_survey_report_cannot_use_is_refused_in_one_line(tmp_path, capsys, survey, message):
    before = H200_FILE.read_bytes()
    record = json.loads((REPORTS / "gpu-microbenchmarks-h200.json").read_text())
    assert _run(tmp_path, {"runs": [GOOD_RUN]}, record, survey=survey) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert H200_FILE.read_bytes() == before and not (tmp_path / "out.md").exists()


def test_an_unknown_base_device_is_refused_in_one_line(tmp_path, capsys):
    record = json.loads((REPORTS / "gpu-microbenchmarks-h200.json").read_text())
    assert _run(tmp_path, {"runs": [GOOD_RUN]}, record, base="no-such-gpu") == 2
    err = capsys.readouterr().err
    assert "no-such-gpu" in err and err.count("\n") == 1


def test_the_fit_holds_out_every_microbenchmark_of_a_validated_layers_gemm_shape():
    run = {"preset": "ddpm-cifar10", "precision": "fp16", "variant": "plain", "batch": 1}
    shapes = gpu_validation.validated_gemm_shapes([run])
    conv_in = (1, 1024, 128, 27)  # 3 -> 128 channels, 3x3, at 32x32
    assert conv_in in shapes and (1, 1024, 128, 28) not in shapes
    measurement = {"op_class": "conv_fp16", "kernels": 1, "vector_flops": 0, "traffic_bytes": 1, "peak": 1,
                   "measured_s": 1e-5}
    record = {"measurements": [{**measurement, "gemm_dims": [list(conv_in)]},
                               {**measurement, "gemm_dims": [[1, 1024, 128, 28]]},
                               {**measurement, "op_class": "norm", "gemm_dims": []},
                               {**measurement, "op_class": "attention_fp16",
                                "gemm_dims": [[4, 16, 16, 8], list(conv_in)]}]}
    kept, held = gpu_validation.held_out(record, shapes)
    assert held == 2 and [m["gemm_dims"] for m in kept["measurements"]] == [[[1, 1024, 128, 28]], []]
    assert len(record["measurements"]) == 4  # the record itself is left as it was


def test_a_run_in_several_files_is_taken_from_the_first():
    later = {**GOOD_RUN, "forward_s": 0.02}
    only_later = {**GOOD_RUN, "batch": 4, "forward_s": 0.03}
    layers_later = {**GOOD_RUN, "precision": "bf16", "forward_s": 0.05, "layers": {"conv_in": 1e-4}}
    runs = gpu_validation.first_of_each_run([GOOD_RUN, {**GOOD_RUN, "precision": "bf16"}, later, only_later,
                                             layers_later])
    assert [(r["precision"], r["batch"], r["forward_s"], r.get("layers")) for r in runs] == [
        ("fp16", 1, 0.01, GOOD_RUN.get("layers")), ("bf16", 1, 0.01, {"conv_in": 1e-4}), ("fp16", 4, 0.03, None)]


def test_a_run_with_only_some_memory_free_is_its_own_run_and_is_predicted_with_that_memory():
    short = {**GOOD_RUN, "precision": "fp32", "gpu_memory_free_gb": 7.9}
    runs = gpu_validation.first_of_each_run([{**GOOD_RUN, "precision": "fp32"}, short])
    assert len(runs) == 2 and gpu_validation.variant_label(runs[1]) == "plain, 7.9 GB free"
    assert gpu_validation.run_config(short)["runtime"] == {"tf32": "none", "gpu_memory_free_gb": 7.9}
    assert "gpu_memory_free_gb" not in gpu_validation.run_config(GOOD_RUN)["runtime"]


@pytest.mark.parametrize("text", ["abc", "", "16,,8", "-1", "inf", "nan"])
def test_gb_to_leave_free_are_finite_and_not_negative_or_one_line(text, capsys):
    with pytest.raises(SystemExit) as exit_info:
        gpu_validation.main(["measure", "-o", "unused", "--leave-free-gb", text])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--leave-free-gb" in error and repr(text) in error and "e.g. 16,8" in error


def test_gb_to_leave_free_are_read_in_order():
    from simdq.microbench.gpu_memory import gb_list

    assert gb_list("48,20.5,0") == (48.0, 20.5, 0.0)


def test_a_fft_shapes_file_report_cannot_use_is_refused_in_one_line_before_any_fit(tmp_path, capsys):
    before = H200_FILE.read_bytes()
    shapes = json.loads((REPORTS / "gpu-fft-shapes-h100.json").read_text())
    del shapes["rows"][3]["below"]["free_bytes"]
    (tmp_path / "shapes.json").write_text(json.dumps(shapes))
    (tmp_path / "m.json").write_text(json.dumps({"runs": [GOOD_RUN]}))
    argv = ["report", str(tmp_path / "m.json"), "-o", str(tmp_path / "out.md"), "--fft-shapes",
            str(tmp_path / "shapes.json")]
    assert gpu_validation.main(argv) == 2
    err = capsys.readouterr().err
    assert "shapes.json: not a gpu_fft_workspace.py shapes file" in err and err.count("\n") == 1
    assert H200_FILE.read_bytes() == before and not (tmp_path / "out.md").exists()


def test_the_fft_shapes_section_sets_each_measured_time_beside_the_models():
    from hw_models import load_device

    shapes = {"gpu": "G", "rows": [{"batch": 1, "in": 640, "out": 640, "size": 32, "workspace_bytes": 13.9e9,
                                    "free": {"seconds": 0.011}, "below": {"seconds": 4e-4, "free_bytes": 13e9}}]}
    device = load_device("h100")
    lines = gpu_validation.fft_shape_lines(device, shapes, Path("s.json"))
    row = lines[-1].split(" | ")
    fft_ms, fallback_ms = (float(row[i].removesuffix(" ms")) for i in (7, 10))
    config_fft = gpu_validation._conv_latency(device, shapes["rows"][0], None)
    config_gemm = gpu_validation._conv_latency(device, shapes["rows"][0], 13.0)
    assert (fft_ms, fallback_ms) == (round(config_fft * 1e3, 3), round(config_gemm * 1e3, 3))
    assert config_fft > 10 * config_gemm and row[8] == f"{config_fft / 0.011 - 1:+.1%}"


def test_compare_sets_two_measurement_files_side_by_side(tmp_path, capsys):
    first = {"runs": [GOOD_RUN, {**GOOD_RUN, "batch": 4, "forward_s": 0.04, "power_w": 400.0},
                      {**GOOD_RUN, "batch": 8, "error": "out of memory"}]}
    second = {"runs": [{**GOOD_RUN, "forward_s": 0.011}, {**GOOD_RUN, "batch": 4, "forward_s": 0.03, "power_w": 500.0},
                       {**GOOD_RUN, "batch": 64, "forward_s": 1.0}]}
    for name, content in (("first.json", first), ("second.json", second)):
        (tmp_path / name).write_text(json.dumps(content))
    assert gpu_validation.main(["compare", str(tmp_path / "first.json"), str(tmp_path / "second.json")]) == 0
    lines = capsys.readouterr().out.splitlines()
    # only the runs both files timed pair up: +10% and -25%
    assert lines[1] == "- forwards, time: 2 pairs, median -7.5% (median |change| 17.5%), -25.0% to +10.0%, 0% within 5%"
    assert lines[2].startswith("- forwards, power: 1 pairs, median +25.0%")
    assert lines[3] == "- forwards, energy: no pair has it"


def test_compare_refuses_files_of_two_kinds_in_one_line(tmp_path, capsys):
    record = json.loads((REPORTS / "gpu-microbenchmarks-h200.json").read_text())
    (tmp_path / "record.json").write_text(json.dumps(record))
    (tmp_path / "runs.json").write_text(json.dumps({"runs": [GOOD_RUN]}))
    assert gpu_validation.main(["compare", str(tmp_path / "record.json"), str(tmp_path / "runs.json")]) == 2
    err = capsys.readouterr().err
    assert "not the same kind of file" in err and err.count("\n") == 1


def test_compare_pairs_microbenchmarks_by_label_and_keeps_gemms_apart(capsys):
    record = json.loads((REPORTS / "gpu-microbenchmarks-h200.json").read_text())
    lines = gpu_validation.compare(REPORTS / "gpu-microbenchmarks-h200.json", REPORTS / "gpu-microbenchmarks-h200.json")
    gemms = sum(bool(m["gemm_dims"]) for m in record["measurements"])
    assert lines[1] == (f"- GEMM, convolution and attention microbenchmarks, time: {gemms} pairs, median +0.0% "
                        f"(median |change| 0.0%), +0.0% to +0.0%, 100% within 5%")
    assert lines[4].startswith(f"- other microbenchmarks, time: {len(record['measurements']) - gemms} pairs")


@pytest.mark.parametrize("broken", [{**GOOD_RUN, "power_w": "high"}, {**GOOD_RUN, "forward_s": "fast"}])
def test_compare_refuses_a_malformed_run_in_one_line(tmp_path, capsys, broken):
    (tmp_path / "a.json").write_text(json.dumps({"runs": [{**GOOD_RUN, "power_w": 300.0}]}))
    (tmp_path / "b.json").write_text(json.dumps({"runs": [broken]}))
    assert gpu_validation.main(["compare", str(tmp_path / "b.json"), str(tmp_path / "a.json")]) == 2
    err = capsys.readouterr().err
    assert "malformed" in err and err.count("\n") == 1 and "Traceback" not in err
