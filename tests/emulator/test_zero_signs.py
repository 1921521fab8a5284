"""The sign of a zero result, as an H200's tensor cores give it (scripts/record-zero-signs): +0 whenever the
sum is zero in float32, also when every product is negative and underflows (2^-126 x -2^-126), or is -0. Both
the kernels and their plain twins are held to the recorded bits."""

import json
from pathlib import Path

import numpy as np
import pytest

import emulator as em
from emulator.gemm import operand, split_bounds
from emulator.reference.gemm import exponents, reference_dot
from test_tensor_cores import emulated_bits

RECORDED = json.loads((Path(__file__).parents[1] / "data" / "tensor_cores" / "zero_signs.json").read_text())
# what each recorded call is, as an emulator accumulator and output format
CALLS = {"mm bf16": ("sm90_bf16", "bf16"), "mm fp16": ("sm90_fp16", "fp16"), "mm fp32 out": (None, "fp32"),
         "scaled_mm fp32 fast=False": ("sm90_fp8", "fp32"), "scaled_mm fp32 fast=True": ("sm90_fp8_fast", "fp32")}
HALF = {"bf16": "sm90_bf16", "fp16": "sm90_fp16"}


def calls(fp32_only=False):
    for case in RECORDED["cases"]:
        for call, bits in case["results"].items():
            if isinstance(bits, int) and (CALLS[call][1] == "fp32" or not fp32_only):
                yield pytest.param(case, call, bits, id=f"{case['name']}-{call}")


def padded(case):
    """The recorded 16 x 16 product: row 0 of a and column 0 of b hold the case, the rest is zero."""
    dtype = np.uint8 if case["format"] == "e4m3fn" else np.uint16
    k = max(len(case["a"]), 16)
    a, b = np.zeros((16, k), dtype), np.zeros((k, 16), dtype)
    a[0, :len(case["a"])], b[:len(case["b"]), 0] = case["a"], case["b"]
    return a, b


@pytest.mark.parametrize("case, call, bits", list(calls()))
def test_the_kernels_give_the_recorded_sign_of_zero(case, call, bits):
    accumulator, out_format = CALLS[call]
    accumulator = accumulator or HALF[case["format"]]
    a, b = padded(case)
    fmt = case["format"]
    out = em.matmul(a, b, a_format=fmt, b_format=fmt, accumulator=accumulator, out_format=out_format)
    assert int(emulated_bits(out[:1, :1], out_format)[0, 0]) == bits


@pytest.mark.parametrize("case, call, bits", list(calls(fp32_only=True)))  # the twins compute the float32 accumulator
def test_the_plain_twins_give_the_recorded_sign_of_zero(case, call, bits):
    accumulator, _ = CALLS[call]
    acc = em.get_accumulator(accumulator or HALF[case["format"]])
    a, b = padded(case)
    fmt = case["format"]
    oa, ob = operand(a, fmt), operand(b, fmt)
    emin = em.get_format(fmt).emin
    row, column = oa.values[0], ob.values[:, 0]
    expected = reference_dot(row, column, acc, exponents(row, emin), exponents(column, emin),
                             split_bounds(a.shape[1], acc.split_k, acc.split_tile))
    assert int(np.float32(expected).view(np.uint32)) == bits
