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
])
def test_a_file_that_is_not_a_survey_gets_one_line_and_exit_code_2(tmp_path, capsys, content, message):
    path = tmp_path / "x.json"
    path.write_text(content)
    assert survey.main(["report", str(path), "-o", str(tmp_path / "x.md")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and not (tmp_path / "x.md").exists()
