"""Casts of float32 and float64 arrays into narrow float types: ml_dtypes, torch and numpy.

Candidates: every round-to-nearest convention of emulator.encode for the format (cast_conventions).
Boundary values: every value of the format, every midpoint between neighbours (the ties), the overflow
points, half the smallest magnitude, specials, each with its neighbours in the input type; float64 input
also gets each of them times 1 +- 2^-30, which float32 rounds back onto the tie (double rounding).
"""

from __future__ import annotations

import numpy as np

import emulator as em
from emulator.codec import decode_table

from ..conventions import cast_conventions, encode_with
from .base import NAN, Reference, float_text, rows

# emulator format -> the type's name in ml_dtypes and in torch
ML_DTYPES_NAMES = {
    "e4m3fn": "float8_e4m3fn", "e5m2": "float8_e5m2", "e4m3fnuz": "float8_e4m3fnuz", "e5m2fnuz": "float8_e5m2fnuz",
    "e4m3b11fnuz": "float8_e4m3b11fnuz", "e3m4": "float8_e3m4", "e4m3": "float8_e4m3", "e2m3": "float6_e2m3fn",
    "e3m2": "float6_e3m2fn", "e2m1": "float4_e2m1fn", "e8m0": "float8_e8m0fnu", "bf16": "bfloat16",
}
TORCH_NAMES = {
    "e4m3fn": "float8_e4m3fn", "e5m2": "float8_e5m2", "e4m3fnuz": "float8_e4m3fnuz", "e5m2fnuz": "float8_e5m2fnuz",
    "e8m0": "float8_e8m0fnu", "bf16": "bfloat16", "fp16": "float16",
}
E8M0_SUBNORMAL_NOTE = ("float32 subnormals left out: the library sends (2^-127, 1.5*2^-127) to 2^-126, reading "
                       "the mantissa field as 1.m, a rule the emulator does not name (it rounds to nearest, as gfloat)")


def format_boundaries(fmt: em.FloatFormat) -> np.ndarray:
    """float64 values at which a cast into fmt decides something (exact in float64)."""
    table = decode_table(fmt).astype(np.float64)
    finite = np.unique(table[np.isfinite(table)])
    magnitudes = np.unique(np.abs(finite))
    top, below_top = magnitudes[-1], magnitudes[-2]
    step = top - below_top
    smallest = magnitudes[magnitudes > 0][0]
    edges = np.array([top + step / 2, top + step, 1.5 * top, 2 * top, smallest / 2, smallest / 4, 0.75 * smallest])
    base = np.concatenate([finite, (finite[1:] + finite[:-1]) / 2, edges, -edges,
                           [0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan]])
    return np.concatenate([base, -base[:finite.size]]) if not fmt.signed else base


def with_neighbours(values: np.ndarray, dtype) -> np.ndarray:
    with np.errstate(over="ignore"):
        typed = values.astype(dtype)
    out = [typed, np.nextafter(typed, dtype(np.inf)), np.nextafter(typed, dtype(-np.inf))]
    if dtype == np.float64:
        out += [typed * (1 + 2.0**-30), typed * (1 - 2.0**-30)]
    return np.concatenate(out)


class CastReference(Reference):
    nan_rule = "bits"  # "bits": NaN codes compare exactly; "class": any NaN matches any NaN

    def __init__(self, library: str, call: str, fmt_name: str, input_dtype, cast, keep=None, domain=None):
        self.library = library
        self.fmt = em.get_format(fmt_name)
        self.input_dtype = np.dtype(input_dtype).type
        self.id = f"{library}: {call} from {np.dtype(input_dtype).name}"
        self.conventions = cast_conventions(self.fmt, self.input_dtype == np.float64)
        self._cast = cast
        self._keep = keep
        if domain:
            self.domain = domain

    def kept(self, x: np.ndarray) -> np.ndarray:
        return x if self._keep is None else x[self._keep(x)]

    def canonical(self, codes: np.ndarray) -> np.ndarray:
        if self.nan_rule == "class":
            codes = np.where(np.isnan(decode_table(self.fmt)[codes]), NAN, codes)
        return rows(codes)

    def reference(self, case):
        return self.canonical(self._cast(case["x"]).astype(np.int64))

    def emulate(self, convention, case):
        return self.canonical(encode_with(convention, case["x"], self.fmt).astype(np.int64))

    def boundary_cases(self):
        return [{"x": self.kept(with_neighbours(format_boundaries(self.fmt), self.input_dtype))}]

    def strategy(self):
        from hypothesis import strategies as st

        width = 32 if self.input_dtype == np.float32 else 64
        bound = min(2 * float(self.fmt.max_finite), float(np.finfo(self.input_dtype).max))
        boundary = tuple(self.boundary_cases()[0]["x"].tolist())
        element = st.one_of(st.sampled_from(boundary), st.floats(width=width),
                            st.floats(-bound, bound, width=width))
        cases = st.lists(element, min_size=1, max_size=16).map(
            lambda xs: {"x": self.kept(np.array(xs, dtype=self.input_dtype))})
        return cases.filter(lambda case: case["x"].size > 0)

    def narrow(self, case, unit):
        return {"x": case["x"][unit:unit + 1]}

    def show(self, case):
        return f"x={float_text(case['x'])}"


def _astype_cast(dtype):
    """A numpy astype (ml_dtypes registers its types with numpy), as codes."""
    view = {1: np.uint8, 2: np.uint16}[np.dtype(dtype).itemsize]

    def cast(x):
        with np.errstate(all="ignore"):
            return x.astype(dtype).view(view)
    return cast


def _torch_cast(dtype):
    import torch

    def cast(x):
        out = torch.from_numpy(np.ascontiguousarray(x)).to(dtype)
        return out.view({1: torch.uint8, 2: torch.uint16}[out.element_size()]).numpy()
    return cast


def _normal_or_zero(x):
    return ~((np.abs(x) > 0) & (np.abs(x) < 2.0**-126))


def _positive_normal(x):
    return np.isnan(x) | (x >= 2.0**-126)


def ml_dtypes_references() -> list[Reference]:
    import ml_dtypes

    out = []
    for fmt_name, type_name in ML_DTYPES_NAMES.items():
        dtype = getattr(ml_dtypes, type_name, None)
        if dtype is None:  # an older release without this type
            continue
        e8m0 = fmt_name == "e8m0"
        for source in (np.float32, np.float64):
            out.append(CastReference("ml_dtypes", f"astype({type_name})", fmt_name, source, _astype_cast(dtype),
                                     keep=_normal_or_zero if e8m0 else None, domain=E8M0_SUBNORMAL_NOTE if e8m0 else None))
    return out


def torch_cast_references() -> list[Reference]:
    import torch

    out = []
    for fmt_name, type_name in TORCH_NAMES.items():
        dtype = getattr(torch, type_name, None)
        if dtype is None:
            continue
        e8m0 = fmt_name == "e8m0"
        domain = ("NaN compared by class: torch's NaN codes drop the sign and payload (bfloat16 from float32 "
                  "gives 0xFFFF for every NaN)")
        if e8m0:
            domain = (E8M0_SUBNORMAL_NOTE + "; zero and negative inputs left out: torch gives 2^-127 for zero and "
                      "casts |x| for negatives, where the emulator (as ml_dtypes) gives NaN; " + domain)
        for source in (np.float32, np.float64):
            ref = CastReference("torch", f"Tensor.to({type_name})", fmt_name, source, _torch_cast(dtype),
                                keep=_positive_normal if e8m0 else None, domain=domain)
            ref.nan_rule = "class"
            out.append(ref)
    return out


def numpy_references() -> list[Reference]:
    return [CastReference("numpy", "astype(float16)", "fp16", source, _astype_cast(np.float16))
            for source in (np.float32, np.float64)]
