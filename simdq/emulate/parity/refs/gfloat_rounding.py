"""gfloat's round_float (every rounding mode, saturating or not) against emulator.encode.

Candidates: the emulator's rounding modes (stochastic with the same per-element random bits, drawn
from emulator.rounding's counter-based hash, 4 of them so that ties of the random threshold occur).
Compared as format codes, through gfloat's encode_float; any NaN matches any NaN (gfloat picks one
NaN code whatever the sign).
"""

from __future__ import annotations

import math

import numpy as np

import emulator as em
from emulator.rounding import random_bits_reference, seed_key

from ..conventions import Convention
from .base import NAN, Reference, float_text, rows
from .casts import format_boundaries

SR_BITS = 4
SEED = 7
FORMATS = ("e4m3fn", "e5m2", "e3m2ieee", "e2m1")
ROUNDING = {"TiesToEven": "rne", "TiesToAway": "rna", "TowardZero": "rtz", "TowardPositive": "rtp",
            "TowardNegative": "rtn", "StochasticFastest": "stochastic"}


def gfloat_info(fmt: em.FloatFormat):
    from gfloat import FormatInfo
    from gfloat.types import Domain

    high_nans = {"ieee": (1 << fmt.mbits) - 1, "fn": 1, "fnuz": 0, "finite": 0}[fmt.special]
    return FormatInfo(
        name=fmt.name, k=fmt.bits, precision=fmt.mbits + 1, bias=fmt.bias, is_signed=True,
        domain=Domain.Extended if fmt.special == "ieee" else Domain.Finite,
        has_nz=fmt.special != "fnuz", num_high_nans=high_nans, has_subnormals=True, is_twos_complement=False,
    )


class RoundFloatReference(Reference):
    library = "gfloat"
    domain = ("finite inputs (gfloat raises on inf into formats without inf unless saturating); boundary values "
              "moved by 1 +- 2^-20, not by one float64 ulp: gfloat adds the dropped fraction to 1/2 (or to the random "
              "threshold) in float64, which rounds a fraction one ulp below the threshold up to it")

    def __init__(self, fmt_name: str, mode_name: str):
        from gfloat import RoundMode

        self.mode = RoundMode[mode_name]
        self.sat = em.get_format(fmt_name).special == "finite"
        self.fmt = em.get_format(fmt_name, overflow="saturate") if self.sat else em.get_format(fmt_name)
        self.info = gfloat_info(self.fmt)
        self.id = f"gfloat: round_float({fmt_name}, {mode_name}{', sat=True' if self.sat else ''})"
        self.conventions = [Convention.of(rounding=r) for r in ("rne", "rna", "rtz", "rtp", "rtn")]
        self.conventions.append(Convention.of(rounding="stochastic", sr_bits=SR_BITS))

    def reference(self, case):
        from gfloat import encode_float, round_float

        key = seed_key(SEED)
        codes = []
        for index, v in enumerate(case["x"].tolist()):
            bits = random_bits_reference(key, index, SR_BITS) if self.mode.name.startswith("Stochastic") else -1
            rounded = round_float(self.info, v, self.mode, sat=self.sat, srbits=bits, srnumbits=SR_BITS)
            codes.append(NAN if math.isnan(rounded) else encode_float(self.info, rounded))
        return rows(codes)

    def emulate(self, convention, case):
        rounding = convention.get("rounding")
        stochastic = rounding == "stochastic"
        codes = em.encode(case["x"], self.fmt, rounding=rounding, seed=SEED if stochastic else None,
                          sr_bits=SR_BITS if stochastic else 32)
        return rows(np.where(np.isnan(em.decode(codes, self.fmt)), NAN, codes.astype(np.int64)))

    def boundary_cases(self):
        base = format_boundaries(self.fmt)
        x = np.concatenate([base, base * (1 + 2.0**-20), base * (1 - 2.0**-20)])
        return [{"x": x[np.isfinite(x)]}]

    def strategy(self):
        from hypothesis import strategies as st

        boundary = tuple(self.boundary_cases()[0]["x"].tolist())
        top = 2 * float(self.fmt.max_finite)
        element = st.one_of(st.sampled_from(boundary), st.floats(-top, top))
        return st.lists(element, min_size=1, max_size=16).map(lambda xs: {"x": np.array(xs, np.float64)})

    def narrow(self, case, unit):
        # stochastic rounding draws its bits by element index: only the first element keeps them
        return {"x": case["x"][unit:unit + 1]} if unit == 0 or not self.mode.name.startswith("Stochastic") else case

    def show(self, case):
        return f"x={float_text(case['x'])}"


def gfloat_references() -> list[Reference]:
    import gfloat  # noqa: F401  (missing library: the caller reports it as not installed)

    return [RoundFloatReference(fmt, mode) for fmt in FORMATS for mode in ROUNDING]
