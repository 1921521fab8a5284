"""The tensor-core accumulators against bit patterns recorded on an H200 (scripts/record-tensor-core-vectors).

tests/data/tensor_cores/tensor_cores.json lists every case (inputs, scales, out dtype, fast accumulation, the
cuBLAS kernel that ran); the .npz holds the input codes and output bits. Where cuBLAS chose a split-K kernel
(`_splitK_` in its name: K = 8192 for fp8, K = 4096 for bf16/fp16 at these shapes), the accumulator carries
split_k = 3, the split the patterns show; everywhere else the preset itself.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from emulator import get_accumulator, matmul

DATA = Path(__file__).resolve().parent.parent / "data" / "tensor_cores"
INDEX = json.loads((DATA / "tensor_cores.json").read_text())
ARRAYS = np.load(DATA / "tensor_cores.npz")
OUT_BITS = {"fp32": (np.int32, 32), "bf16": (np.int16, 16), "fp16": (np.int16, 16)}
HALF_FORMAT = {"bf16": "bf16", "fp16": "fp16"}


def cases(**match):
    return [c for c in INDEX["cases"] if all(c.get(k) == v for k, v in match.items()) and "out" in c]


def recorded_bits(case) -> np.ndarray:
    return ARRAYS[case["out"]].view(np.uint32 if case["out_dtype"] == "fp32" else np.uint16)


def emulated_bits(values: np.ndarray, out_dtype: str) -> np.ndarray:
    """float32 values (holding bf16 / fp16 results) as the output type's bit patterns."""
    values = np.asarray(values, dtype=np.float32)
    if out_dtype == "fp32":
        return values.view(np.uint32)
    if out_dtype == "fp16":
        return values.astype(np.float16).view(np.uint16)
    return (values.view(np.uint32) >> 16).astype(np.uint16)  # exact: the value is a bf16 already


def accumulator_for(case, preset):
    split = any("splitK" in kernel for kernel in case["kernels"])
    return get_accumulator(preset, split_k=3) if split else get_accumulator(preset)


def scaled_mm_cases():
    return [pytest.param(c, id=f"{c['a_format']}x{c['b_format']}-{c['spread']}-k{c['k']}-"
                         f"{'fast' if c['fast_accum'] else 'slow'}-{c['out_dtype']}-{c['scaling']}")
            for c in cases(op="scaled_mm")]


def test_the_recording_covers_what_the_issue_asks():
    recorded = cases(op="scaled_mm")
    assert {(c["a_format"], c["b_format"]) for c in recorded} == {("e4m3fn", "e4m3fn"), ("e5m2", "e4m3fn")}
    assert {c["out_dtype"] for c in recorded} == {"fp32", "bf16", "fp16"}
    assert {c["scaling"] for c in recorded} == {"tensor", "row"}
    assert {c["fast_accum"] for c in recorded} == {False, True}
    ks = {c["k"] for c in recorded}
    assert min(ks) == 16 and max(ks) == 8192 and any(k & (k - 1) for k in ks)  # not only powers of two
    assert INDEX["capability"] == [9, 0]


@pytest.mark.parametrize("case", scaled_mm_cases())
def test_sm90_fp8_presets_are_bit_exact_on_every_scaled_mm(case):
    a = ARRAYS[case["a"]]
    b = ARRAYS[case["bt"]].T
    if case["scaling"] == "tensor":
        a_scale, b_scale = case["scale_a"][0], case["scale_b"][0]
    else:
        a_scale, b_scale = ARRAYS[case["scale_a"]], ARRAYS[case["scale_b"]]
    preset = "sm90_fp8_fast" if case["fast_accum"] else "sm90_fp8"
    out = matmul(a, b, a_format=case["a_format"], b_format=case["b_format"],
                 accumulator=accumulator_for(case, preset), a_scale=a_scale, b_scale=b_scale,
                 out_format=case["out_dtype"])
    np.testing.assert_array_equal(emulated_bits(out, case["out_dtype"]), recorded_bits(case))


def half_mm_cases():
    return [pytest.param(c, id=f"{c['kind']}-{c['spread']}-k{c['k']}-{c['out_dtype']}-"
                         f"reduced{c['reduced_precision_reduction']}") for c in cases(op="mm")]


@pytest.mark.parametrize("case", half_mm_cases())
def test_sm90_half_presets_are_bit_exact_on_every_torch_mm(case):
    fmt = HALF_FORMAT[case["kind"]]
    out = matmul(ARRAYS[case["a"]], ARRAYS[case["b"]], a_format=fmt, b_format=fmt,
                 accumulator=accumulator_for(case, f"sm90_{case['kind']}"), out_format=case["out_dtype"])
    np.testing.assert_array_equal(emulated_bits(out, case["out_dtype"]), recorded_bits(case))


def test_fp32_accumulation_is_not_what_the_tensor_cores_do():
    """The recorded patterns tell the rules apart: plain fp32 adds miss most wide-range FP8 outputs."""
    missed = 0
    for case in cases(op="scaled_mm", spread="wide", out_dtype="fp32", scaling="tensor", fast_accum=False):
        if case["k"] < 1024 or case["scale_a"] != [1.0]:
            continue
        out = matmul(ARRAYS[case["a"]], ARRAYS[case["bt"]].T, a_format=case["a_format"],
                     b_format=case["b_format"], accumulator="fp32")
        missed += int((emulated_bits(out, "fp32") != recorded_bits(case)).sum())
    assert missed > 1000


def test_fast_accumulation_differs_from_promotion_where_k_passes_128():
    case = cases(op="scaled_mm", spread="wide", out_dtype="fp32", scaling="tensor", fast_accum=True, k=2048,
                 a_format="e4m3fn")[0]
    a, b = ARRAYS[case["a"]], ARRAYS[case["bt"]].T
    fast = matmul(a, b, a_format="e4m3fn", b_format="e4m3fn", accumulator="sm90_fp8_fast")
    promoted = matmul(a, b, a_format="e4m3fn", b_format="e4m3fn", accumulator="sm90_fp8")
    assert (fast != promoted).mean() > 0.5
    np.testing.assert_array_equal(emulated_bits(fast, "fp32"), recorded_bits(case))


def test_int_mm_saturates_rather_than_wraps():
    """torch._int_mm on the H200: 127 * 127 over K = 140000 passes 2^31 and stays at 2^31 - 1."""
    case = cases(op="int_mm")[0]
    k = case["k"]
    a = np.full((1, k), 127, dtype=np.uint8)
    b = np.full((k, 1), 127, dtype=np.uint8)
    recorded = ARRAYS[case["out"]][0, 0]
    assert recorded == matmul(a, b, a_format="int8", b_format="int8", accumulator="int32_saturate")[0, 0]
    assert recorded != matmul(a, b, a_format="int8", b_format="int8", accumulator="int32")[0, 0]
