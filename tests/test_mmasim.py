"""The tensor-core presets against MMA-Sim (microsoft/MMA-Sim, a bit-accurate pure-Python model of tensor cores):
chains of mma / wgmma instructions along K that scripts/record-mmasim-vectors ran and tests/data/mmasim holds.

For Ampere this is the only reference (no Ampere GPU was measured); for Hopper it cross-checks the rules fitted
to the H200's cuBLAS patterns: a bare wgmma chain has no promotion, i.e. sm90_fp8_fast.
"""

import json
from pathlib import Path

import numpy as np
import pytest

import emulator as em

DATA = Path(__file__).resolve().parent / "data" / "mmasim"
META = json.loads((DATA / "mmasim.json").read_text())
ARRAYS = np.load(DATA / "mmasim.npz")
FORMATS = {"float16": "fp16", "bfloat16": "bf16", "float8_e4m3fn": "e4m3fn"}
PRESETS = {"mma.m16n8k16.f32.f16.f16.f32": "sm80_fp16", "mma.m16n8k16.f32.bf16.bf16.f32": "sm80_bf16",
           "wgmma.m64n8k32.f32.e4m3.e4m3": "sm90_fp8_fast", "wgmma.m64n8k16.f32.bf16.bf16": "sm90_bf16"}


def operands(case):
    fmt = FORMATS[case["dtype"]]
    dtype = np.uint8 if fmt == "e4m3fn" else np.uint16
    return fmt, ARRAYS[case["key"] + "_a"].view(dtype), ARRAYS[case["key"] + "_b"].view(dtype)


@pytest.mark.parametrize("case", META["cases"], ids=lambda c: c["key"])
def test_preset_matches_mmasim_bit_for_bit(case):
    fmt, a, b = operands(case)
    got = em.matmul(a, b, a_format=fmt, b_format=fmt, accumulator=PRESETS[case["instruction"]])
    np.testing.assert_array_equal(got.view(np.uint32), ARRAYS[case["key"] + "_d"].view(np.uint32))


@pytest.mark.parametrize("case", META["cases"], ids=lambda c: c["key"])
def test_the_chains_are_not_exact_sums(case):
    """Each chain loses bits to alignment: the comparison above could fail."""
    fmt, a, b = operands(case)
    exact = em.matmul(a, b, a_format=fmt, b_format=fmt)
    assert (exact.view(np.uint32) != ARRAYS[case["key"] + "_d"].view(np.uint32)).mean() > 0.5
    assert case["k"] > case["k_per_instruction"]  # a chain, so the accumulator re-enters every instruction
