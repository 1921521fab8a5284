"""A quantized weight as stored: the format's codes and their scales, and the values they stand for."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from emulator import BinaryFormat, BlockEncoded, BlockFormat, ResidualBinaryFormat, block_decode, residual_dequantize

from . import torch_quant


@dataclass
class QuantizedWeight:
    """A weight as stored: codes (the format's bit patterns as integers, one row per output channel) and
    scales (float64: one, one per output channel, or one per output channel and group; residual binary formats:
    one per output channel and plane)."""

    fmt: object
    codes: torch.Tensor
    scale: torch.Tensor  # block formats: the block scales' codes (int64), one per output channel and block
    granularity: str
    group_size: int
    shape: tuple
    tensor_scale: float | None = None  # NVFP4's fp32 tensor scale

    def dequantize(self) -> torch.Tensor:
        if isinstance(self.fmt, BlockFormat):  # blocks run along the input features, as the GEMM reduces
            encoded = BlockEncoded(self.codes.numpy(), self.scale.numpy(), self.tensor_scale)
            rows = block_decode(encoded, self.fmt, axis=1)[:, : int(np.prod(self.shape[1:]))]
            return torch.from_numpy(np.ascontiguousarray(rows)).reshape(self.shape)
        if isinstance(self.fmt, ResidualBinaryFormat):  # scale: (output channels, planes)
            rows = residual_dequantize(self.codes.numpy(), self.scale.numpy(), self.fmt, axis=0)
            return torch.from_numpy(rows).reshape(self.shape)
        if isinstance(self.fmt, BinaryFormat):  # code 0 is +1, code 1 is -1
            values = (1 - 2 * self.codes.long()).double() * self.scale.reshape(-1, 1)
            return values.float().reshape(self.shape)
        if self.granularity == "per_group":
            rows = torch_quant.dequantize(self.codes, self.fmt, self.scale, axis=1, group_size=self.group_size)
        elif self.granularity == "per_channel":
            rows = torch_quant.dequantize(self.codes, self.fmt, self.scale, axis=0)
        else:
            rows = torch_quant.dequantize(self.codes, self.fmt, self.scale.reshape(()))
        return rows.reshape(self.shape)
