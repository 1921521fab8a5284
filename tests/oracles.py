"""Helpers shared by the oracle tests: float32 sweeps (exhaustive under HEAVY, the deciding values in CI) and the
oracles' dtypes."""

import os
from functools import lru_cache

import ml_dtypes
import numpy as np
import torch

# The heavier profile (README: testing) also sweeps whole what CI samples at a stride.
HEAVY = os.environ.get("HYPOTHESIS_PROFILE") == "heavy"

ML_DTYPES = {
    "e4m3fn": ml_dtypes.float8_e4m3fn,
    "e5m2": ml_dtypes.float8_e5m2,
    "e4m3fnuz": ml_dtypes.float8_e4m3fnuz,
    "e5m2fnuz": ml_dtypes.float8_e5m2fnuz,
    "e4m3b11fnuz": ml_dtypes.float8_e4m3b11fnuz,
    "e3m4": ml_dtypes.float8_e3m4,
    "e4m3": ml_dtypes.float8_e4m3,
    "e2m3": ml_dtypes.float6_e2m3fn,
    "e3m2": ml_dtypes.float6_e3m2fn,
    "e2m1": ml_dtypes.float4_e2m1fn,
    "e8m0": ml_dtypes.float8_e8m0fnu,
    "bf16": ml_dtypes.bfloat16,
    "fp16": np.float16,
    "int2": ml_dtypes.int2,
    "int4": ml_dtypes.int4,
    "uint2": ml_dtypes.uint2,
    "uint4": ml_dtypes.uint4,
    "int8": np.int8,
    "uint8": np.uint8,
}

TORCH_DTYPES = {
    "e4m3fn": torch.float8_e4m3fn,
    "e5m2": torch.float8_e5m2,
    "e4m3fnuz": torch.float8_e4m3fnuz,
    "e5m2fnuz": torch.float8_e5m2fnuz,
    "e8m0": torch.float8_e8m0fnu,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def binade(exponent: int, negative: bool = False, mbits: int = None) -> np.ndarray:
    """Every float32 whose unbiased exponent is `exponent` (all subnormals for exponent < -126); given `mbits`,
    outside HEAVY only those that decide a cast to a format of that many mantissa bits (deciding_mantissas)."""
    mantissas = np.arange(1 << 23, dtype=np.uint32) if mbits is None or HEAVY else deciding_mantissas(mbits)
    if exponent < -126:
        bits = mantissas[mantissas > 0]
    else:
        bits = (np.uint32(exponent + 127) << np.uint32(23)) | mantissas
    if negative:
        bits = bits | np.uint32(0x80000000)
    return bits.view(np.float32)


@lru_cache(maxsize=None)
def deciding_mantissas(mbits: int) -> np.ndarray:
    """The float32 mantissas that decide a cast to a format of `mbits` mantissa bits (fewer in its subnormals):
    every one within two steps of a value or a tie the format has at any precision up to mbits, and every 61st
    of the rest (a stride coprime to the dropped bits)."""
    size = 1 << 23
    mantissas = [np.arange(0, size, 61)]
    for step in (1 << shift for shift in range(max(0, 22 - mbits), 24)):
        mantissas.append((np.arange(0, size + step, step)[:, None] + np.arange(-2, 3)).ravel())
    every = np.unique(np.concatenate(mantissas))
    chosen = every[(every >= 0) & (every < size)].astype(np.uint32)
    chosen.flags.writeable = False
    return chosen


def sweep_exponents(fmt, margin: int = 2) -> range:
    """Binades from 2 below the smallest subnormal to 2 above the largest normal of fmt."""
    smallest = fmt.emin - (fmt.mbits if fmt.subnormals and fmt.has_zero else 0)
    return range(max(smallest - margin, -127), min(fmt.emax + margin, 127) + 1)


def torch_codes(x: np.ndarray, dtype) -> np.ndarray:
    out = torch.from_numpy(x).to(dtype)
    bits = {1: torch.uint8, 2: torch.uint16}[out.element_size()]
    return out.view(bits).numpy()


def ml_dtypes_codes(x: np.ndarray, dtype) -> np.ndarray:
    """ml_dtypes' cast, as codes (ml_dtypes keeps sub-byte codes in the low bits of a byte)."""
    with np.errstate(over="ignore"):
        out = x.astype(dtype)
    return out.view({1: np.uint8, 2: np.uint16}[out.dtype.itemsize])


SPECIALS = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0], dtype=np.float32)


def table_convention(reference_id: str):
    """The convention simdq/emulate/parity/expected.py expects the installed library to implement for this reference."""
    from simdq.emulate.parity.expected import expected_convention
    from simdq.emulate.parity.refs import installed_references
    from simdq.emulate.parity.versions import installed_version

    library = reference_id.split(":")[0]
    (reference,) = [r for r in installed_references([library])[0] if r.id == reference_id]
    convention = expected_convention(reference, installed_version(library))
    assert convention is not None, f"{library} {installed_version(library)} is outside the table for {reference_id}"
    return convention
