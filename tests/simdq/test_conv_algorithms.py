"""benchmarks/gpu_conv_algorithms.py: cuDNN's kernel choice and throughput per convolution shape, and the shapes
on a slow path."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import gpu_conv_algorithms as survey  # noqa: E402
from simdq.microbench.conv_algorithms import window as survey_window  # noqa: E402


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


HEADER = {"format": survey.FORMAT, "gpu": "GPU", "torch": "t", "cudnn": 1, "rows": []}


def _row(cin, cout, seconds, kernel):
    return {"precision": "fp32", "batch": 1, "in": cin, "out": cout, "size": 32, "seconds": seconds,
            "kernels": [["void cudnn::engines_precompiled::nchwToNhwcKernel<float>", 900.0, 1], [kernel, 100.0, 1]]}


def test_the_report_names_each_shapes_algorithm_and_lists_those_not_run_as_an_implicit_gemm(tmp_path):
    fast = "sm80_xmma_fprop_implicit_gemm_f32f32_tilesize128x64x8_ffma"
    slow = "void fft2d_r2c_32x32<float>"
    rows = [_row(320, 320, 80e-6, fast), _row(640, 320, 160e-6, fast), _row(320, 640, 160e-6, fast),
            _row(640, 640, 3.2e-3, slow)]  # 1/10 of the others' throughput
    path = tmp_path / "survey.json"
    path.write_text(json.dumps({**HEADER, "timing": "graphs", "rows": rows}))
    out = tmp_path / "survey.md"
    survey.report(path, out)
    text = out.read_text()
    table = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith("| 1 |")]
    assert [cells[6].strip() for cells in table] == ["implicit GEMM"] * 3 + ["fft"]  # the transform is not the conv
    assert "- fft: 1x640->640 at 32 (0.10x)" in text and "direct" not in text
    macs = 32 * 32 * 320 * 320 * 9
    assert table[0][5].strip() == f"{macs / 80e-6 / 1e12:.1f}"


def test_an_fft_whose_longest_kernel_is_a_batched_gemm_over_the_bins_is_reported_as_an_fft(tmp_path):
    fft = dict(_row(640, 640, 2.3e-3, "void fft2d_r2c_32x32<float>"), batch=4, size=16)
    fft["kernels"].append(["sm80_xmma_gemm_cf32cf32_cf32f32_f32_nn_n_tilesize32x64x8", 1800.0, 1])
    path, out = tmp_path / "survey.json", tmp_path / "survey.md"
    path.write_text(json.dumps({**HEADER, "timing": "graphs", "rows": [fft]}))
    survey.report(path, out)
    (cells,) = [line.split("|")[1:-1] for line in out.read_text().splitlines() if line.startswith("| 4 |")]
    assert cells[6].strip() == "fft" and survey.family(survey.main_kernel(fft)) == "GEMM"


@pytest.mark.parametrize("content, message", [
    (json.dumps({"format": "simdq-kernel-census-1"}), "not a convolution survey"),
    ("{", "not a readable convolution survey"),
    (json.dumps({"format": survey.FORMAT, "rows": []}), "does not say what it ran on"),
    (json.dumps({**HEADER, "cudnn": "9.19"}), "does not say what it ran on"),
    (json.dumps({**HEADER, "rows": [_row(320, 320, 8e-5, "k"), {"precision": "fp32"}]}), "row 1 is malformed"),
    (json.dumps({**HEADER, "rows": [dict(_row(320, 320, 8e-5, "k"), kernels=[["k", 1.0]])]}), "row 0 is malformed"),
    (json.dumps({**HEADER, "rows": [_row(320, 320, -1.0, "k")]}), "row 0 is malformed"),
    (json.dumps({**HEADER, "rows": [dict(_row(320, 320, 8e-5, "k"), window=5)]}), "a window of 1 or 3 expected"),
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
    return {**HEADER, "cudnn": 91900, "rows": rows}


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
    # the two 32x32 shapes fitted (a 64x64 FFT) make a class of their own; the one 16x16 shape does not
    sided = calibration["classes"]["conv_fft64_fp32"]
    assert sided["samples"] == 2 and sided["memory_efficiency"] == pytest.approx(0.2, rel=0.05)
    assert "conv_fft32_fp32" not in calibration["classes"]
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
    # and its fp32 convolution of the GEMM shape the survey saw run as an FFT (4 x 16 x 16 pixels there)
    record.write_text(json.dumps(dict(full, measurements=[
        m for m in full["measurements"] if m["op_class"] == "linear_fp16"
        or (m["op_class"] == "conv_fp32" and m["gemm_dims"] == [[1, 1024, 640, 640 * 9]])])))
    path = tmp_path / "survey.json"
    bandwidth = load_device("h100-sxm").primary.dram_bandwidth
    path.write_text(json.dumps(_fft_survey(ClassParams(2.4e-6, 1.0, 0.2), bandwidth)))
    out = tmp_path / "mine.yaml"
    assert main(["hw", "fit", str(record), "-o", str(out), "--conv-algorithms", str(path)]) == 0
    assert "conv_fft_fp32" in capsys.readouterr().out
    device = load_device(str(out))
    assert "conv_fp32" not in device.primary.classes
    assert "under CUDA graphs; 1 more, which the survey saw run as an FFT, go to the FFT class" in \
        device.primary.calibration_source
    assert set(device.primary.fft_shapes) == {(1, (1, 1024, 640, 224 * 9)), (1, (1, 1024, 640, 448 * 9)),
                                              (1, (1, 1024, 640, 640 * 9)), (1, (1, 256, 224, 224 * 9))}
    path.write_text("{")
    assert main(["hw", "fit", str(record), "-o", str(tmp_path / "other.yaml"), "--conv-algorithms", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a readable convolution survey" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "other.yaml").exists()


def _implicit(precision, batch, cin, cout, size, seconds):
    return {"precision": precision, "batch": batch, "in": cin, "out": cout, "size": size, "seconds": seconds,
            "kernels": [["void cudnn::engines_precompiled::nchwToNhwcKernel<__half>", 3.0, 2],
                        ["sm90_xmma_fprop_implicit_gemm_f16f16_f16f32_f32_tilesize128x64x32", 20.0, 1]]}


def test_a_surveys_convolutions_that_did_not_run_as_an_fft_measure_the_records_conv_classes_held_out_apart():
    from simdq.microbench import samples_of
    from simdq.microbench.conv_algorithms import with_survey_convolutions

    record = {"measurements": [
        {"op_class": "conv_fp16", "precision": "fp16", "peak": 9.0e14, "kernels": 1, "gemm_dims": [[1, 64, 8, 72]],
         "vector_flops": 0, "traffic_bytes": 100, "measured_s": 1e-5, "channels_first_bytes": 100},
        {"op_class": "conv_fp32", "precision": "fp32", "peak": 6.0e13, "kernels": 1, "gemm_dims": [[1, 64, 8, 72]],
         "vector_flops": 0, "traffic_bytes": 200, "measured_s": 2e-5, "channels_first_bytes": 200},
        {"op_class": "conv_bf16", "peak": 9.0e14, "kernels": 1, "gemm_dims": [[1, 64, 8, 72]],  # a record from
         "vector_flops": 0, "traffic_bytes": 100, "measured_s": 1e-5},  # before precisions: no peak to take
        {"op_class": "conv_fp32", "precision": "fp32", "peak": 6.0e13, "kernels": 1,  # the survey's FFT shape
         "gemm_dims": [[1, 1024, 640, 640 * 9]], "vector_flops": 0, "traffic_bytes": 200, "measured_s": 9e-3},
        {"op_class": "norm", "precision": "", "peak": 6.0e13, "kernels": 1, "gemm_dims": [], "vector_flops": 8,
         "traffic_bytes": 200, "measured_s": 9e-6}]}
    fft = dict(_implicit("fp32", 1, 640, 640, 32, 9e-3), kernels=[["void fft2d_r2c_64x64<float>", 9.0, 2]])
    rows = [_implicit("fp16", 2, 320, 640, 16, 40e-6), _implicit("fp16", 1, 448, 448, 32, 45e-6),
            _implicit("fp32", 1, 224, 320, 64, 300e-6), fft,
            _implicit("fp16", 1, 8, 8, 8, 2e-5),  # the record times this shape itself
            _implicit("bf16", 1, 320, 320, 16, 30e-6)]  # no conv_bf16 in the record: no peak
    survey = {**HEADER, "rows": rows}
    held = {(1, 1024, 448, 448 * 9)}
    merged = with_survey_convolutions(record, survey, held)
    assert merged["survey_convolutions"] == 2 and merged["survey_held_out"] == 1
    assert merged["survey_gpu"] == "GPU" and merged["record_ran_as_fft"] == 1
    added = samples_of(merged)[4:]
    assert [(s.op_class, s.gemm_dims, s.measured_s, s.peak) for s in added] == [
        ("conv_fp16", ((1, 2 * 16 * 16, 640, 320 * 9),), 40e-6, 9.0e14),
        ("conv_fp32", ((1, 64 * 64, 320, 224 * 9),), 300e-6, 6.0e13)]
    # input, weights and output, at the precision's element size, all NCHW (cuDNN transforms them)
    assert added[0].traffic_bytes == 2 * (2 * 320 * 256 + 640 * 320 * 9 + 2 * 640 * 256)
    assert added[1].traffic_bytes == added[1].channels_first_bytes == 4 * (224 * 4096 + 320 * 224 * 9 + 320 * 4096)
    # the record's FFT convolution left the conv class (the FFT class prices it); its other measurements stay
    kept = record["measurements"][:3] + record["measurements"][4:]
    assert merged["measurements"][:4] == kept and len(merged["measurements"]) == 6
    assert "survey_convolutions" not in record and len(record["measurements"]) == 5


def test_hw_fit_with_a_survey_fits_the_conv_classes_on_its_convolutions_too(tmp_path, capsys):
    import yaml

    from hw_models import load_device
    from hw_models.engines.calibrated import ClassParams
    from hw_models.fit import predicted_seconds
    from simdq.cli import main
    from simdq.microbench import samples_of
    from simdq.microbench.conv_algorithms import survey_measurements

    full = json.loads((Path(__file__).resolve().parents[2] / "reports" / "gpu-microbenchmarks-h100.json").read_text())
    micro = [m for m in full["measurements"] if m["op_class"] == "conv_fp16"][:4]
    base = load_device("h100-sxm")
    bandwidth, sms = base.primary.dram_bandwidth, full["sms"]
    # the survey's convolutions run at under half the microbenchmarks' efficiency: a fit that counts them moves
    truth = ClassParams(kernel_s=12e-6, efficiency=0.2, memory_efficiency=0.5, tile_m=64, tile_n=128)
    ffts = _fft_survey(ClassParams(2.4e-6, 1.0, 0.2), bandwidth)
    rows = [_implicit("fp16", b, cin, cout, size, 1.0) for b in (1, 2) for size in (16, 32, 64)
            for cin, cout in ((224, 320), (640, 1280), (960, 448))]
    as_measured = survey_measurements({"rows": rows}, {"measurements": micro})
    times = predicted_seconds(truth, samples_of({"measurements": as_measured}), bandwidth, sms)
    survey = dict(ffts, rows=ffts["rows"] + [dict(r, seconds=float(t)) for r, t in zip(rows, times)])
    record, path, out = tmp_path / "record.json", tmp_path / "survey.json", tmp_path / "mine.yaml"
    record.write_text(json.dumps(dict(full, measurements=micro)))
    path.write_text(json.dumps(survey))
    assert main(["hw", "fit", str(record), "-o", str(out), "--conv-algorithms", str(path)]) == 0
    calibration = yaml.safe_load(out.read_text())["engines"]["gpu"]["calibration"]
    fitted = calibration["classes"]["conv_fp16"]
    assert fitted["samples"] == 4 + len(rows)
    assert fitted["efficiency"] < 0.3  # the 18 survey rows outweigh the 4 microbenchmarks
    assert "4 microbenchmarks and 18 convolutions of a cuDNN algorithm survey on GPU" in calibration["source"]
    capsys.readouterr()
    assert main(["hw", "fit", str(record), "-o", str(tmp_path / "plain.yaml")]) == 0
    plain = yaml.safe_load((tmp_path / "plain.yaml").read_text())["engines"]["gpu"]["calibration"]
    assert plain["classes"]["conv_fp16"]["samples"] == 4 and "survey" not in plain["source"]
    assert plain["classes"]["conv_fp16"]["efficiency"] > 0.3


def test_compare_counts_the_shapes_that_ran_the_same_kernel_and_how_far_their_times_moved(tmp_path):
    first = {**HEADER, "date": "d1",
             "rows": [_implicit("fp16", 1, 320, 320, 16, 10e-6), _implicit("fp16", 1, 640, 640, 16, 20e-6),
                      _implicit("fp16", 2, 640, 640, 16, 40e-6)]}
    second = dict(first, date="d2", rows=[dict(first["rows"][0], seconds=11e-6),
                                          dict(first["rows"][1], seconds=17e-6,
                                               kernels=[["void fft2d_r2c_32x32<__half>", 15.0, 2]])])
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(first))
    b.write_text(json.dumps(second))
    lines = survey.compare(a, b)
    assert lines[1] == ("fp16: 2 shapes, the same kernel in 1; the second's times a median -2.5% off the first's "
                        "(median |change| 12.5%, largest 15.0%)")
    assert len(lines) == 2 and "(GPU, d1)" in lines[0] and "(GPU, d2)" in lines[0]


def test_hw_crossval_with_a_survey_counts_its_convolutions_among_the_conv_classes_samples(tmp_path, capsys):
    from simdq.cli import main

    full = json.loads((Path(__file__).resolve().parents[2] / "reports" / "gpu-microbenchmarks-h100.json").read_text())
    micro = [m for m in full["measurements"] if m["op_class"] == "conv_fp16"][:4]
    record, path = tmp_path / "record.json", tmp_path / "survey.json"
    record.write_text(json.dumps(dict(full, measurements=micro)))
    rows = [_implicit("fp16", 1, cin, 320, 32, 1e-9 * cin) for cin in (224, 320, 448, 640, 960, 1280)]
    path.write_text(json.dumps({**HEADER, "rows": rows}))

    def conv_samples(*flags):
        assert main(["hw", "crossval", str(record), "--folds", "2", *flags]) == 0
        return next(line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("conv_fp16"))[1]

    assert conv_samples() == "4" and conv_samples("--conv-algorithms", str(path)) == "10"
    path.write_text(json.dumps({**HEADER, "rows": [{"precision": "fp16"}]}))
    assert main(["hw", "crossval", str(record), "--conv-algorithms", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "row 0 is malformed" in err and len(err.splitlines()) == 1


def test_a_surveys_1x1_convolutions_measure_the_pointwise_classes():
    from simdq.microbench import samples_of
    from simdq.microbench.conv_algorithms import with_survey_convolutions

    record = {"measurements": [
        {"op_class": "conv_fp32", "precision": "fp32", "peak": 6.0e13, "kernels": 1, "gemm_dims": [[1, 64, 8, 72]],
         "vector_flops": 0, "traffic_bytes": 200, "measured_s": 2e-5, "channels_first_bytes": 200}]}
    rows = [dict(_implicit("fp32", 8, 448, 224, 64, 210e-6), window=1), _implicit("fp32", 1, 448, 224, 64, 300e-6)]
    added = samples_of(with_survey_convolutions(record, {**HEADER, "rows": rows}))[1:]
    # a 1x1 convolution is a GEMM over the pixels, its input and output unpadded
    assert [(s.op_class, s.gemm_dims) for s in added] == [("pointwise_fp32", ((1, 8 * 64 * 64, 224, 448),)),
                                                          ("conv_fp32", ((1, 64 * 64, 224, 448 * 9),))]
    assert added[0].traffic_bytes == 4 * (8 * 448 * 4096 + 224 * 448 + 8 * 224 * 4096)
    # none of a 1x1 survey's rows is taken for an FFT shape, whatever kernel it ran
    from simdq.microbench.conv_algorithms import fft_rows

    fft_named = dict(rows[0], kernels=[["void fft2d_r2c_32x32<float>", 9.0, 2]])
    assert fft_rows({**HEADER, "rows": [fft_named]}) == []


def test_surveys_of_one_gpu_read_together_and_of_two_are_refused_in_one_line(tmp_path, capsys):
    from simdq.cli import main
    from simdq.microbench.conv_algorithms import read_surveys

    three = tmp_path / "3x3.json"
    one = tmp_path / "1x1.json"
    three.write_text(json.dumps({**HEADER, "date": "d1", "rows": [_implicit("fp16", 1, 320, 320, 16, 1e-5)]}))
    one.write_text(json.dumps({**HEADER, "date": "d2",
                               "rows": [dict(_implicit("fp16", 1, 320, 320, 16, 4e-6), window=1)]}))
    both = read_surveys([three, one])
    assert [survey_window(r) for r in both["rows"]] == [3, 1] and both["date"] == "d1, d2"
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**HEADER, "gpu": "Another GPU", "rows": []}))
    record = Path(__file__).resolve().parents[2] / "reports" / "gpu-microbenchmarks-h100.json"
    assert main(["hw", "crossval", str(record), "--conv-algorithms", str(three), "--conv-algorithms",
                 str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "surveys read together must be of one GPU and software" in err
