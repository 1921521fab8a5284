"""A layer's two GEMM operands as the emulator takes them: activations quantized with the artifact's ranges
for the current timestep group, weights from their stored codes.

Each operand is codes (integer, minifloat, binary: the format's bit patterns) with the scales the epilogue
applies (per tensor for activations; per tensor or per output channel for weights), or, for MX/NVFP4, the
exact decoded values (element x block scale) as an emulator Operand, with NVFP4's tensor scale kept apart for
the epilogue. The codes are exactly those the fake-quantized module rounds to (simdq.calibrate.torch_quant,
the same ranges and thresholds), so the emulated and fake-quantized layers differ only in arithmetic.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

import emulator
from emulator import BinaryFormat, BlockEncoded, BlockFormat, ResidualBinaryFormat, block_encode, residual_planes
from emulator.codec import code_dtype
from emulator.gemm import Operand, operand

from ..calibrate import torch_quant
from ..calibrate.activations import ActivationQuantizer
from ..calibrate.stored import QuantizedWeight
from ..errors import SimdqError


@dataclass
class Encoded:
    """One operand: `data` is codes (numpy) or an emulator Operand (block formats); `scale` what the epilogue
    multiplies by (a float, or one per output channel for weights; None: nothing)."""

    data: object
    fmt: object
    scale: object = None


def _tensor_scale(value) -> float | None:
    return None if value is None or float(value) == 1.0 else float(np.float32(value))


def encode_activation(quantizer: ActivationQuantizer, x: torch.Tensor, axis: int) -> Encoded:
    """x quantized by `quantizer` (its range for the running timestep group); `axis` is the GEMM's reduction
    axis (block formats are blocked along it, binary thresholds are per channel of it)."""
    fmt = quantizer.fmt
    if isinstance(fmt, BlockFormat):
        values = x.detach().float().cpu().numpy()
        padded = torch_quant.pad_to_blocks(values, fmt.block_size, axis)
        encoded = block_encode(padded, fmt, axis=axis)
        decoded = operand(encoded, fmt, block_axis=axis)
        kept = np.take(decoded.values, np.arange(values.shape[axis]), axis=axis)
        return Encoded(dataclasses.replace(decoded, values=kept, tensor_scale=1.0), fmt,
                       _tensor_scale(encoded.tensor_scale))
    scale = quantizer.scale_for(quantizer.group())
    if isinstance(fmt, BinaryFormat):
        shape = [1] * x.dim()
        shape[axis] = -1
        codes = (x - quantizer.thresholds.reshape(shape).to(x.dtype)) < 0  # -1 is code 1
        return Encoded(codes.numpy().view(np.uint8), fmt, float(scale))
    codes = emulator.quantize(x.detach().numpy(), fmt, float(scale))  # what torch_quant rounds, code for code
    return Encoded(codes, fmt, float(scale))


def encode_weight(stored: QuantizedWeight, conv: bool) -> Encoded:
    """The stored weight in the kernel's layout: OIHW codes for a convolution, (K x O) for a linear layer."""
    fmt = stored.fmt
    if isinstance(fmt, BlockFormat):
        k = int(np.prod(stored.shape[1:]))
        encoded = BlockEncoded(stored.codes.numpy(), stored.scale.numpy(), stored.tensor_scale)
        rows = operand(encoded, fmt, block_axis=1)
        values = rows.values[:, :k].reshape(stored.shape) if conv else np.ascontiguousarray(rows.values[:, :k].T)
        return Encoded(dataclasses.replace(rows, values=values, tensor_scale=1.0), fmt,
                       _tensor_scale(stored.tensor_scale))
    if stored.granularity == "per_group":
        raise SimdqError(f"per_group weight scales vary along the GEMM's reduction, so no epilogue applies them; "
                         f"emulating {fmt.name} weights needs per_channel or per_tensor granularity")
    codes = stored.codes.numpy().astype(code_dtype(fmt.bits))
    codes = codes.reshape(stored.shape) if conv else np.ascontiguousarray(codes.T)
    if isinstance(fmt, ResidualBinaryFormat):  # scale: (output channels, planes)
        return Encoded(codes, fmt, stored.scale.numpy().astype(np.float64))
    scale = stored.scale.numpy().astype(np.float64).reshape(-1)
    return Encoded(codes, fmt, float(scale[0]) if scale.size == 1 else scale)


def weight_planes(encoded: Encoded) -> list:
    """A residual binary weight as its planes: binary codes, each with its own per-channel scales."""
    fmt = encoded.fmt
    return [Encoded(plane, fmt.plane, encoded.scale[:, j].copy())
            for j, plane in enumerate(residual_planes(encoded.data, fmt))]


def operand_values(encoded: Encoded) -> np.ndarray:
    """The exact values of the codes (float64), without the epilogue's scales: what the GEMM sums."""
    if isinstance(encoded.data, Operand):
        return encoded.data.values
    return operand(encoded.data, encoded.fmt).values.astype(np.float64)


def dequantized(encoded: Encoded) -> np.ndarray:
    """value x scale in float64 (exact for these operands): activations scale by one number, OIHW weights by
    one per filter, (K x O) weights by one per column."""
    values = operand_values(encoded)
    if encoded.scale is None:
        return values
    scale = np.asarray(encoded.scale, dtype=np.float64)
    if scale.ndim == 0:
        return values * scale
    return values * (scale.reshape(-1, 1, 1, 1) if values.ndim == 4 else scale.reshape(1, -1))
