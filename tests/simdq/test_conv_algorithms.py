"""benchmarks/gpu_conv_algorithms.py: cuDNN's kernel choice and throughput per convolution shape, and the shapes
on a slow path."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import gpu_conv_algorithms as survey  # noqa: E402


@pytest.mark.parametrize("name, family, tile", [
    ("sm80_xmma_fprop_implicit_gemm_f32f32_f32f32_f32_nchwkcrs_nchw_tilesize128x32x8_stage3_warpsize2x2x1_g1_ffma",
     "implicit GEMM", "128x32x8"),
    ("void cudnn::winograd_nonfused::winogradForwardData4x4<float, float>", "winograd", ""),
    ("void fft2d_r2c_32x32<float, false, 1u, false>", "fft", "32x32"),
    ("std::enable_if<!(false), void>::type internal::gemvx::kernel<int, int, float2, float2>", "fft", ""),
    ("void cudnn::detail::implicit_convolve_sgemm<float, float, 128, 5, 5, 3, 3, 3, 1, false, false, true>",
     "direct", ""),
    ("void cudnn::engines_precompiled::nchwToNhwcKernel<float, float, float, false, true>", "layout transform", ""),
])
def test_kernels_are_named_by_the_algorithm_family_and_tile_cudnn_chose(name, family, tile):
    assert survey.family(name) == family and survey.tile(name) == tile


def _row(cin, cout, seconds, kernel):
    return {"precision": "fp32", "batch": 1, "in": cin, "out": cout, "size": 32, "seconds": seconds,
            "kernels": [["void cudnn::engines_precompiled::nchwToNhwcKernel<float>", 900.0, 1], [kernel, 100.0, 1]]}


def test_the_report_names_each_shapes_algorithm_and_lists_those_not_run_as_an_implicit_gemm(tmp_path):
    fast = "sm80_xmma_fprop_implicit_gemm_f32f32_tilesize128x64x8_ffma"
    slow = "void fft2d_r2c_32x32<float>"
    rows = [_row(320, 320, 80e-6, fast), _row(640, 320, 160e-6, fast), _row(320, 640, 160e-6, fast),
            _row(640, 640, 3.2e-3, slow)]  # 1/10 of the others' throughput
    path = tmp_path / "survey.json"
    path.write_text(json.dumps({"format": survey.FORMAT, "gpu": "GPU", "torch": "t", "cudnn": 1, "timing": "graphs",
                                "rows": rows}))
    out = tmp_path / "survey.md"
    survey.report(path, out)
    text = out.read_text()
    table = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith("| 1 |")]
    assert [cells[6].strip() for cells in table] == ["implicit GEMM"] * 3 + ["fft"]  # the transform is not the conv
    assert "- fft: 1x640->640 at 32 (0.10x)" in text and "direct" not in text
    macs = 32 * 32 * 320 * 320 * 9
    assert table[0][5].strip() == f"{macs / 80e-6 / 1e12:.1f}"


@pytest.mark.parametrize("content, message", [
    (json.dumps({"format": "simdq-kernel-census-1"}), "not a convolution survey"),
    ("{", "not a readable convolution survey"),
    (json.dumps({"format": survey.FORMAT, "rows": [_row(320, 320, 8e-5, "k"), {"precision": "fp32"}]}),
     "row 1 is malformed"),
    (json.dumps({"format": survey.FORMAT, "rows": [dict(_row(320, 320, 8e-5, "k"), kernels=[["k", 1.0]])]}),
     "row 0 is malformed"),
    (json.dumps({"format": survey.FORMAT, "rows": [_row(320, 320, -1.0, "k")]}), "row 0 is malformed"),
])
def test_a_file_that_is_not_a_survey_gets_one_line_and_exit_code_2(tmp_path, capsys, content, message):
    path = tmp_path / "x.json"
    path.write_text(content)
    assert survey.main(["report", str(path), "-o", str(tmp_path / "x.md")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and not (tmp_path / "x.md").exists()


def _fft_survey(truth, bandwidth):
    from hw_models.engines.calibrated import FftShape, fft_times

    gemv = "std::enable_if<!(false), void>::type internal::gemvx::kernel<int, int, float2>"
    rows = []
    for batch, size, cin, cout in ((1, 32, 224, 640), (1, 32, 448, 640), (1, 32, 640, 640), (1, 16, 224, 224)):
        kernels = 2120 if size == 32 else 6
        rows.append({"precision": "fp32", "batch": batch, "in": cin, "out": cout, "size": size,
                     "seconds": sum(fft_times(FftShape(batch, size, cin, cout, kernels), truth, bandwidth)),
                     "kernels": [["void fft2d_r2c_64x64<float>", 9.0, 2], [gemv, 5e3, kernels - 2]]})
    implicit = [["sm80_xmma_fprop_implicit_gemm_f32f32_tilesize32x32x8", 50.0, 1]]
    rows += [dict(rows[0], precision="tf32", kernels=implicit), dict(rows[1], out=448, kernels=implicit)]
    return {"format": survey.FORMAT, "gpu": "GPU", "torch": "t", "cudnn": 91900, "rows": rows}


def test_a_survey_records_every_fft_shape_and_fits_the_fft_class_only_on_those_not_held_out():
    from hw_models.engines.calibrated import ClassParams, FFT_CLASS, FftShape
    from simdq.microbench.conv_algorithms import SurveyError, add_fft_calibration, fft_calibration

    truth, bandwidth = ClassParams(kernel_s=2.4e-6, efficiency=1.0, memory_efficiency=0.2), 3.35e12
    data = _fft_survey(truth, bandwidth)
    held = {FftShape(1, 32, 640, 640, 2120).gemm_dims}
    calibration = {"sms": 132, "classes": {}}
    add_fft_calibration(calibration, fft_calibration(data, "s.json", bandwidth, 132, held))
    shapes = calibration["fft_convolutions"]["shapes"]
    assert [(s["size"], s["in_channels"], s["out_channels"], s["kernels"]) for s in shapes] == [
        (32, 224, 640, 2120), (32, 448, 640, 2120), (32, 640, 640, 2120), (16, 224, 224, 6)]  # tf32: no FFT
    fitted = calibration["classes"][FFT_CLASS]
    assert fitted["samples"] == 3  # the held-out shape is recorded but not fitted on
    assert fitted["memory_efficiency"] == pytest.approx(0.2, rel=0.05)
    assert fitted["kernel_s"] == pytest.approx(2.4e-6, rel=0.1)
    assert "fitted on 3 of its 4 FFT shapes" in calibration["fft_convolutions"]["source"]
    with pytest.raises(SurveyError, match=r"s\.json: 1 FFT convolutions to fit the FFT class on; at least 2"):
        fft_calibration(dict(data, rows=data["rows"][:2] + data["rows"][4:]), "s.json", bandwidth, 132,
                        held | {FftShape(1, 32, 224, 640, 2120).gemm_dims})


def test_hw_fit_with_a_survey_writes_a_device_that_prices_its_fft_convolutions(tmp_path, capsys):
    from hw_models import load_device
    from hw_models.engines.calibrated import ClassParams
    from simdq.cli import main

    # one class of the H100's record: the FFT class is what the test is about, and the whole record takes 20 s
    full = json.loads((Path(__file__).resolve().parents[2] / "reports" / "gpu-microbenchmarks-h100.json").read_text())
    record = tmp_path / "record.json"
    record.write_text(json.dumps(dict(full, measurements=[m for m in full["measurements"]
                                                          if m["op_class"] == "linear_fp16"])))
    path = tmp_path / "survey.json"
    bandwidth = load_device("h100-sxm").primary.dram_bandwidth
    path.write_text(json.dumps(_fft_survey(ClassParams(2.4e-6, 1.0, 0.2), bandwidth)))
    out = tmp_path / "mine.yaml"
    assert main(["hw", "fit", str(record), "-o", str(out), "--conv-algorithms", str(path)]) == 0
    assert "conv_fft_fp32" in capsys.readouterr().out
    device = load_device(str(out))
    assert set(device.primary.fft_shapes) == {(1, 1024, 640, 224 * 9), (1, 1024, 640, 448 * 9),
                                              (1, 1024, 640, 640 * 9), (1, 256, 224, 224 * 9)}
    path.write_text("{")
    assert main(["hw", "fit", str(record), "-o", str(tmp_path / "other.yaml"), "--conv-algorithms", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a readable convolution survey" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "other.yaml").exists()
