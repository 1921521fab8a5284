"""torch's quantize_per_tensor / quantize_per_channel and fake_quantize_*_affine against emulator.quantize.

Candidates: every scale_op of emulator.quantize (divide, reciprocal, reciprocal_fma, reciprocal_add).
Boundary values: for each scale and zero point, x on every half-way point (k + 1/2) * scale of the grid
and its float32 neighbours (where one rounding of x * inv + z and two part ways), whole grid points,
values past the clamp. Left out: NaN (the emulator raises on it; torch's kernels disagree) and
|x / scale| >= 2^30 (torch converts to a machine integer before it clamps, and x86 gives the most
negative integer for values past its range, so such x land on either end depending on the kernel).
"""

from __future__ import annotations

import numpy as np

import emulator as em
from emulator.affine import SCALE_OPS

from ..conventions import Convention
from .base import Reference, float_text, rows

SCALE_CONVENTIONS = [Convention.of(scale_op=op) for op in SCALE_OPS]
SCALES = (1.0, 0.37, 0.05, 0.125, 1 / 3, 3.3, 1e-3)
ZERO_POINTS = {"int8": (0, -3, 101, 127, -128), "uint8": (0, 5, 128, 255), "int32": (0, 5, -7, 2**24 + 1)}
DOMAIN = ("NaN and |x / scale| >= 2^30 left out (the emulator raises on NaN; past 2^30 torch converts to a "
          "machine integer before clamping and x86 gives the most negative one, so the clamp goes either way)")
LIMIT = 2.0**30


def grid_values(scale: float, big: bool = False) -> np.ndarray:
    """float32 values on and around the rounding boundaries of x / scale."""
    k = np.arange(-300, 300, dtype=np.float64)
    ties = ((k + 0.5) * scale).astype(np.float32)
    whole = (k * scale).astype(np.float32)
    spread = [ties]
    for steps in (1, 2):
        spread += [_ulps(ties, steps), _ulps(ties, -steps)]
    far = (np.array([1e6, 1e8], np.float32) * np.float32(scale)).astype(np.float32)
    out = [*spread, whole, far, -far]
    if big:  # qint32: integers past float32's 2^24, where the product itself rounds
        out.append((np.float64(2.0**24 + np.arange(-40, 40)) * scale).astype(np.float32))
    return np.concatenate(out)


def _ulps(x: np.ndarray, steps: int) -> np.ndarray:
    return (x.view(np.int32) + np.int32(steps) * np.where(x >= 0, 1, -1).astype(np.int32)).view(np.float32)


def _x_strategy(st, scale_strategy):
    def values(scale):
        tie = st.builds(lambda k, steps: _ulps(np.array([(k + 0.5) * scale], np.float32), steps)[0],
                        st.integers(-300, 300), st.integers(-2, 2))
        bound = float(np.float32(LIMIT * scale * 0.99))
        anywhere = st.floats(-bound, bound, width=32)
        return st.lists(st.one_of(tie, anywhere), min_size=1, max_size=16)
    return scale_strategy.flatmap(lambda scale: values(scale).map(lambda xs: (scale, np.array(xs, np.float32))))


class QuantizeReference(Reference):
    """torch.quantize_per_tensor / quantize_per_channel (fake=False) or fake_quantize_* (fake=True)."""

    library = "torch"
    domain = DOMAIN

    def __init__(self, fmt_name: str, per_channel: bool, fake: bool):
        import torch

        self.torch = torch
        self.fmt = em.get_format(fmt_name)
        self.per_channel, self.fake = per_channel, fake
        self.qdtype = {"int8": torch.qint8, "uint8": torch.quint8, "int32": torch.qint32}[fmt_name]
        what = "per_channel" if per_channel else "per_tensor"
        self.id = (f"torch: fake_quantize_{what}_affine({fmt_name})" if fake
                   else f"torch: quantize_{what}({self.qdtype})".replace("torch.", ""))
        self.conventions = SCALE_CONVENTIONS

    def reference(self, case):
        t = self.torch
        x = t.from_numpy(np.ascontiguousarray(case["x"]))
        if self.fake:
            qmin, qmax = self.fmt.qmin, self.fmt.qmax
            if self.per_channel:
                out = t.fake_quantize_per_channel_affine(
                    x, t.from_numpy(case["scale"].astype(np.float32)),
                    t.from_numpy(case["zero_point"].astype(np.int32)), 0, qmin, qmax)
            else:
                out = t.fake_quantize_per_tensor_affine(x, float(case["scale"]), int(case["zero_point"]), qmin, qmax)
            return rows(out.numpy().view(np.uint32))
        if self.per_channel:
            q = t.quantize_per_channel(x, t.from_numpy(case["scale"]), t.from_numpy(case["zero_point"]), 0, self.qdtype)
        else:
            q = t.quantize_per_tensor(x, float(case["scale"]), int(case["zero_point"]), self.qdtype)
        return rows(q.int_repr().numpy().astype(np.int64) & ((1 << self.fmt.bits) - 1))

    def emulate(self, convention, case):
        op = convention.get("scale_op")
        axis = {"axis": 0} if self.per_channel else {}
        if self.fake:
            return rows(em.fake_quantize(case["x"], self.fmt, case["scale"], case["zero_point"], scale_op=op,
                                         **axis).view(np.uint32))
        return rows(em.quantize(case["x"], self.fmt, case["scale"], case["zero_point"], scale_op=op, **axis))

    def _zero_points(self):
        return ZERO_POINTS[self.fmt.name] if not self.fake else (0, 3, self.fmt.qmin, self.fmt.qmax)

    def boundary_cases(self):
        pairs = [(s, z) for s in SCALES for z in self._zero_points()]
        big = self.fmt.bits > 24
        if not self.per_channel:
            return [{"x": grid_values(s, big), "scale": s, "zero_point": z} for s, z in pairs]
        return [{"x": np.stack([grid_values(s, big) for s, _ in pairs]),
                 "scale": np.array([s for s, _ in pairs]), "zero_point": np.array([z for _, z in pairs])}]

    def strategy(self):
        from hypothesis import strategies as st

        scales = st.one_of(st.sampled_from(SCALES), st.floats(1e-4, 10.0))
        lo, hi = (self.fmt.qmin, self.fmt.qmax) if self.fmt.bits <= 16 else (-(2**25), 2**25)
        zero_points = st.one_of(st.sampled_from(self._zero_points()), st.integers(lo, hi))
        drawn = st.tuples(_x_strategy(st, scales), zero_points)
        if not self.per_channel:
            return drawn.map(lambda d: {"x": d[0][1], "scale": d[0][0], "zero_point": d[1]})
        return drawn.map(lambda d: {"x": d[0][1][None, :], "scale": np.array([d[0][0]]),
                                    "zero_point": np.array([d[1]])})

    def narrow(self, case, unit):
        if not self.per_channel:
            return {**case, "x": case["x"][unit:unit + 1]}
        channel, index = divmod(unit, case["x"].shape[1])
        return {"x": case["x"][channel:channel + 1, index:index + 1], "scale": case["scale"][channel:channel + 1],
                "zero_point": case["zero_point"][channel:channel + 1]}

    def show(self, case):
        scale = np.asarray(case["scale"], np.float64).reshape(-1)
        return (f"x={float_text(case['x'])}, scale={float_text(scale)}, "
                f"zero_point={np.asarray(case['zero_point']).reshape(-1).tolist()}")


def torch_quantize_references() -> list[Reference]:
    out = []
    for per_channel in (False, True):
        out += [QuantizeReference(name, per_channel, fake=False) for name in ("int8", "uint8", "int32")]
        out += [QuantizeReference(name, per_channel, fake=True) for name in ("int8", "uint8")]
    return out
