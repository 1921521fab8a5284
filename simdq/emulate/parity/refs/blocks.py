"""torchao's MX and NVFP4 quantizers against emulator.block_encode, block by block.

Candidates: the four MX scale rules (floor, ceil, even, rceil) for every torchao scaling mode, and
the one NVFP4 recipe. Boundary blocks: amax on and around every binade edge and every point where the
EVEN rule rounds up, the OCP example 957, zero blocks, the extremes of E8M0 (and of NVFP4's E4M3
scale), with the other elements on the element format's ties. Left out: non-finite blocks (torchao
derives a scale from inf (0xF7) and writes NaN elements, where the emulator, as OCP MX, gives the NaN
scale 0xFF and zero elements), MX blocks whose scale is 2^-127 (torchao stores code 0 but divides
the elements by 2^-126, float32's smallest normal) and, for the amax tensor scale, all-zero tensors
(their tensor scale is 0, which the emulator rejects).
"""

from __future__ import annotations

import numpy as np

import emulator as em

from ..conventions import Convention
from .base import Reference

MX_RULES = ("floor", "ceil", "even", "rceil")
MX_ELEMENTS = {"mxfp8_e4m3": "float8_e4m3fn", "mxfp8_e5m2": "float8_e5m2", "mxfp6_e2m3": "fp6_e2m3",
               "mxfp6_e3m2": "fp6_e3m2", "mxfp4": "float4_e2m1fn_x2"}
FINITE_ONLY = "finite inputs (torchao and OCP MX mark non-finite blocks differently)"
MX_DOMAIN = FINITE_ONLY + "; no block whose scale is 2^-127 (torchao divides its elements by 2^-126)"


def boundary_blocks(fmt: em.BlockFormat, exponents: range) -> np.ndarray:
    """Blocks of fmt.block_size float32 values whose amax sits on the scale rules' decision points."""
    element = fmt.element
    mbits = getattr(element, "mbits", 6)
    mantissas = [1.0, 1.0 + 2.0**-(mbits + 1), 1.0 + 2.0**-(mbits + 1) - 2.0**-20, 1.5, 1.75, 2.0 - 2.0**-20]
    table = em.decode(np.arange(1 << element.bits), element).astype(np.float64)
    grid = np.unique(np.abs(table[np.isfinite(table)]))
    ties = (grid[1:] + grid[:-1]) / 2 / grid[-1]  # element ties relative to the largest element
    rng = np.random.default_rng(0)
    blocks = []
    for e in exponents:
        for m in mantissas:
            amax = np.ldexp(m, e)
            rest = rng.choice(ties, fmt.block_size - 1) * amax * rng.choice([-1.0, 1.0], fmt.block_size - 1)
            blocks.append(np.concatenate([[amax], rest]))
    blocks.append(np.full(fmt.block_size, 957.0))
    blocks.append(np.zeros(fmt.block_size))
    out = np.array(blocks, dtype=np.float64).astype(np.float32)
    return out[np.isfinite(out).all(axis=1)]


def _block_strategy(st, block_size: int, boundary: np.ndarray):
    values = tuple(np.unique(np.abs(boundary)).tolist())
    element = st.one_of(st.sampled_from(values), st.floats(-1e4, 1e4, width=32))
    block = st.tuples(st.integers(-30, 30), st.lists(element, min_size=block_size, max_size=block_size))
    scaled = block.map(lambda b: np.float32(np.ldexp(np.array(b[1], np.float64), b[0])))
    return st.lists(scaled, min_size=1, max_size=2).map(lambda bs: np.array(bs, np.float32)).filter(
        lambda x: bool(np.isfinite(x).all()))


class MXReference(Reference):
    library = "torchao"
    domain = MX_DOMAIN

    def __init__(self, fmt_name: str, mode):
        import torch

        self.torch, self.mode = torch, mode
        self.fmt = em.get_format(fmt_name)
        element = MX_ELEMENTS[fmt_name]
        self.elem_dtype = getattr(torch, element, element)  # fp6 types are torchao strings
        self.id = f"torchao: to_mx({element}, {mode.name})"
        self.conventions = [Convention.of(scale_rule=rule, rounding="rne") for rule in MX_RULES]

    def reference(self, case):
        from torchao.prototype.mx_formats.mx_tensor import to_mx

        x = case["x"]
        scales, data = to_mx(self.torch.from_numpy(x), self.elem_dtype, self.fmt.block_size, self.mode)
        data = data.view(self.torch.uint8).numpy() if data.dtype != self.torch.uint8 else data.numpy()
        if self.fmt.element.bits == 4:
            data = em.unpack(data.reshape(-1), 4, x.size)
        return _block_rows(scales.view(self.torch.uint8).numpy(), data, x.shape[0])

    def emulate(self, convention, case):
        encoded = em.block_encode(case["x"], self.fmt, scale_rule=convention.get("scale_rule"),
                                  rounding=convention.get("rounding"))
        return _block_rows(encoded.scales, encoded.elements, case["x"].shape[0])

    def boundary_cases(self):
        lowest = -126 + self.fmt.element_emax + 1  # the smallest amax whose scale is above 2^-127
        return [{"x": boundary_blocks(self.fmt, range(lowest, 128))}]

    def strategy(self):
        from hypothesis import strategies as st

        return _block_strategy(st, self.fmt.block_size, boundary_blocks(self.fmt, range(-8, 9))).map(
            lambda x: {"x": x})

    def narrow(self, case, unit):
        return {"x": case["x"][unit:unit + 1]}

    def show(self, case):
        return "block x=[" + ", ".join(float(v).hex() for v in case["x"].reshape(-1)) + "]"

    def show_output(self, rows):
        return f"scale {int(rows[0, 0]):02x}, elements " + " ".join(f"{int(v):02x}" for v in rows[0, 1:])


class NVFP4Reference(Reference):
    library = "torchao"

    def __init__(self, tensor_scale: bool):
        import torch

        self.torch, self.tensor_scale = torch, tensor_scale
        self.fmt = em.get_format("nvfp4")
        self.domain = FINITE_ONLY + ("; no all-zero tensor (tensor scale 0)" if tensor_scale else "")
        scale = "per_tensor_amax_to_scale(amax)" if tensor_scale else "None"
        self.id = f"torchao: nvfp4_quantize(per_tensor_scale={scale})"
        self.conventions = [Convention.of(recipe="nvfp4", rounding="rne")]

    def reference(self, case):
        from torchao.prototype.mx_formats.nvfp4_tensor import nvfp4_quantize, per_tensor_amax_to_scale

        x = self.torch.from_numpy(case["x"])
        scale = per_tensor_amax_to_scale(x.abs().max()) if self.tensor_scale else None
        scales, data = nvfp4_quantize(x, self.fmt.block_size, scale)
        elements = em.unpack(data.numpy().reshape(-1), 4, case["x"].size)
        return _block_rows(scales.view(self.torch.uint8).numpy(), elements, case["x"].shape[0])

    def emulate(self, convention, case):
        encoded = em.block_encode(case["x"], self.fmt, tensor_scale="amax" if self.tensor_scale else None,
                                  rounding=convention.get("rounding"))
        return _block_rows(encoded.scales, encoded.elements, case["x"].shape[0])

    def boundary_cases(self):
        x = boundary_blocks(self.fmt, range(-20, 12))
        if not self.tensor_scale:
            return [{"x": x}]
        return [{"x": x[i:i + 8]} for i in range(0, len(x), 8) if np.any(x[i:i + 8])]

    def strategy(self):
        from hypothesis import strategies as st

        blocks = _block_strategy(st, self.fmt.block_size, boundary_blocks(self.fmt, range(-6, 7)))
        if self.tensor_scale:
            blocks = blocks.filter(lambda x: bool(np.any(x)))
        return blocks.map(lambda x: {"x": x})

    def narrow(self, case, unit):
        return {"x": case["x"][unit:unit + 1]}

    show = MXReference.show
    show_output = MXReference.show_output


def _block_rows(scales, elements, blocks: int) -> np.ndarray:
    """One row per block: its scale code, then its element codes."""
    return np.concatenate([np.asarray(scales).reshape(blocks, 1), np.asarray(elements).reshape(blocks, -1)],
                          axis=1).astype(np.int64)


def torchao_references() -> list[Reference]:
    from torchao.prototype.mx_formats.config import ScaleCalculationMode

    out = [MXReference(name, mode) for name in MX_ELEMENTS for mode in ScaleCalculationMode]
    return out + [NVFP4Reference(False), NVFP4Reference(True)]
