"""benchmarks/gpu_kernel_census.py: a forward's profiled kernels sorted into the categories the device model
prices, beside what simdq's trace counts."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import gpu_kernel_census as census  # noqa: E402


@pytest.mark.parametrize("name, expected", [
    ("void cudnn::engines_precompiled::nchwToNhwcKernel<__half, __half, float, false, true, (cudnnKernelDataType_t)0>", "conv"),
    ("sm90_xmma_fprop_implicit_gemm_f16f16_f16f32_f32_nhwckrsc_nhwc_tilesize64x128x64_warpgroupsize1x1x1", "conv"),
    ("nvjet_sm90_hsh_24x64_64x16_4x1_v_bz_bias_TNN", "gemm"),
    ("cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_7_64x128x64", "attention"),
    ("void at::native::(anonymous namespace)::RowwiseMomentsCUDAKernel<c10::Half>", "norm"),
    ("void at::native::elementwise_kernel<128, 4, at::native::GroupNormKernelImplInternal<c10::Half, float>>", "norm"),
    ("void at::native::(anonymous namespace)::CatArrayBatchedCopy_vectorized<...>", "concat"),
    ("void at::native::(anonymous namespace)::upsample_nearest2d_nhwc_out_frame<c10::Half>", "resample"),
    ("void at::native::elementwise_kernel<128, 4, direct_copy_kernel_cuda(at::TensorIteratorBase&)>", "copy"),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<c10::Half>>", "elementwise"),
    ("void tensorTransformGeneric<float>", "other"),
])
def test_kernels_fall_into_the_category_the_model_prices_them_in(name, expected):
    assert census.category(name) == expected


def test_the_report_sets_the_measured_kernels_beside_the_traced_layers(tmp_path):
    kernels = [["nvjet_sm90_hsh_8x64_bias_TNN", 5.0], ["sm90_xmma_fprop_implicit_gemm_f16", 20.0],
               ["sm90_xmma_fprop_implicit_gemm_f16", 30.0],
               ["void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<c10::Half>>", 2.0]]
    path = tmp_path / "census.json"
    path.write_text(json.dumps({"format": census.FORMAT, "gpu": "GPU", "torch": "t", "timing": "profiler",
                                "runs": [{"preset": "ddpm-cifar10", "precision": "fp16", "batch": 2,
                                          "kernels": kernels}],
                                "layouts": [{"op": "add", "shape": [2, 8, 4, 4], "contiguous_s": 2e-6,
                                             "channels_last_view_s": 7e-6}]}))
    out = tmp_path / "census.md"
    census.report(path, "h100", out)
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in out.read_text().splitlines() if line.startswith("| ") and "---" not in line}
    counted, _ = census._model_census(__import__("hw_models").load_device("h100"),
                                      {"preset": "ddpm-cifar10", "precision": "fp16", "batch": 2})
    assert rows["conv"][:3] == ["2", str(counted["conv"]), "0.050 ms"]
    assert rows["gemm"][0] == "1" and rows["elementwise"][0] == "1"
    assert rows["total"][:2] == ["4", str(sum(counted.values()))] and counted["conv"] > 0
    assert rows["add"] == ["2x8x4x4", "2.0 us", "7.0 us", "3.50"]


@pytest.mark.parametrize("content, message", [
    (json.dumps({"format": "other"}), "not a kernel census"), ("[1, 2", "not a readable kernel census"),
    (json.dumps([1]), "not a kernel census"),
])
def test_a_file_that_is_not_a_census_gets_one_line_and_exit_code_2(tmp_path, capsys, content, message):
    path = tmp_path / "x.json"
    path.write_text(content)
    assert census.main(["report", str(path), "-o", str(tmp_path / "x.md")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and not (tmp_path / "x.md").exists()
    assert census.main(["report", str(tmp_path / "missing.json"), "-o", str(tmp_path / "x.md")]) == 2


@pytest.mark.parametrize("run, message", [
    (["ldm9", "fp16", "1"], "unknown preset 'ldm9'"), (["sd15", "fp8", "1"], "unknown precision 'fp8'"),
    (["sd15", "fp16", "0"], "batch '0' is not a whole number"), (["sd15", "fp16", "2.5"], "batch '2.5'"),
])
def test_a_forward_the_census_cannot_profile_is_refused_before_the_gpu_is_touched(tmp_path, capsys, run, message):
    out = tmp_path / "census.json"
    assert census.main(["measure", "--run", "sd1.5", "fp16", "1", "--run", *run, "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and not out.exists()


def test_named_forwards_are_profiled_by_their_canonical_preset_name():
    assert census._census_run("sd1.5", "bf16", "4") == ("sd15", "bf16", 4)


def test_each_kernel_is_attributed_to_the_outermost_aten_op_that_launched_it():
    from types import SimpleNamespace as Event

    kinds = Event(CPU="cpu", CUDA="cuda")
    kernel = lambda name, us: Event(name=name, duration=us)  # noqa: E731
    conv2d = Event(name="aten::conv2d", device_type="cpu", kernels=[], cpu_parent=None)
    convolution = Event(name="aten::_convolution", device_type="cpu", cpu_parent=conv2d,
                        kernels=[kernel("sm90_xmma_fprop", 20.0)])
    bias = Event(name="aten::add_", device_type="cpu", cpu_parent=convolution,
                 kernels=[kernel("vectorized_elementwise_kernel<CUDAFunctor_add>", 3.0)])
    events = [conv2d, convolution, bias, Event(name="sm90_xmma_fprop", device_type="cuda", device_time=20.0)]
    kernels = census._kernels_by_op(events, kinds)
    assert kernels == [["sm90_xmma_fprop", 20.0, "aten::conv2d"],
                       ["vectorized_elementwise_kernel<CUDAFunctor_add>", 3.0, "aten::conv2d"]]
    assert [census.category(*k[::2]) for k in kernels] == ["conv", "conv"]  # the bias add is the convolution's
    unattributed = census._kernels_by_op([events[-1]], kinds)
    assert unattributed == [["sm90_xmma_fprop", 20.0, ""]]


def test_repeated_launches_are_stored_once_and_still_counted_each(tmp_path):
    gemv = "std::enable_if<!(false), void>::type internal::gemvx::kernel<int, int, float2>"
    kernels = [["void fft2d_r2c_64x64<float>", 3.0, "aten::conv2d"]] + [[gemv, 5.0, "aten::conv2d"]] * 2112 + [
        [gemv, 4.0, "aten::linear"]]
    merged = census.merge_repeats(kernels)
    assert merged == [kernels[0], [gemv, 5.0 * 2112, "aten::conv2d", 2112], [gemv, 4.0, "aten::linear"]]
    path = tmp_path / "census.json"
    path.write_text(json.dumps({"format": census.FORMAT, "gpu": "GPU", "torch": "t", "timing": "profiler",
                                "runs": [{"preset": "ddpm-cifar10", "precision": "fp32", "batch": 1,
                                          "kernels": merged}]}))
    out = tmp_path / "census.md"
    census.report(path, "h100", out)
    text = out.read_text()
    assert f"- aten::conv2d: 2113 kernels, {(3.0 + 5.0 * 2112) / 1e3:.3f} ms" in text
    assert "| total | 2114 |" in text
