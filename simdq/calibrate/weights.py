"""The weight quantizer: a conv or linear weight to its stored codes and scales, once, per tensor, per
output channel or per group of input features, with the emulator's rounding (simdq.calibrate.torch_quant).

Binary weights are sign(W) (zero -> +1) times the mean |W| of their output channel, as BinaryDM and BiDM;
residual binary weights (binary2: BinaryDM's two-basis EBB) are the emulator's residual_binarize of each output
channel (or of the whole tensor, per_tensor), two sign planes and two scales; block formats (MX, NVFP4) are the
emulator's own block codes, a partial last block zero-padded.
"""

from __future__ import annotations

import numpy as np
import torch

from emulator import BinaryFormat, BlockFormat, ResidualBinaryFormat, block_encode, residual_binarize

from ..errors import SimdqError
from . import torch_quant
from .calibrators import calibrate_amax, scale_for
from .stored import QuantizedWeight
from .torch_quant import pad_to_blocks, saturating


class WeightQuantizer:
    def __init__(self, fmt_name: str, granularity: str = "per_channel", group_size: int = 128,
                 calibrator: str = "minmax"):
        self.fmt = saturating(fmt_name)
        self.granularity, self.group_size, self.calibrator = granularity, group_size, calibrator

    def quantize(self, weight: torch.Tensor) -> QuantizedWeight:
        rows = weight.detach().reshape(weight.shape[0], -1).float()
        shape, fmt = tuple(weight.shape), self.fmt
        if isinstance(fmt, BinaryFormat):
            # BinaryDM/BiDM: sign (zero -> +1) times the mean |W| of the output channel (or of the tensor)
            per_channel = self.granularity != "per_tensor"
            alpha = rows.abs().double().mean(dim=1) if per_channel else rows.abs().double().mean().expand(len(rows))
            codes = (rows < 0).long() if fmt.zero == "+1" else (rows <= 0).long()
            return QuantizedWeight(fmt, codes, alpha, "per_channel", self.group_size, shape)
        if isinstance(fmt, ResidualBinaryFormat):
            per_channel = self.granularity != "per_tensor"
            values = rows.double().numpy()
            encoded = residual_binarize(values if per_channel else values.reshape(1, -1), fmt, axis=0)
            codes, scales = encoded.codes.reshape(rows.shape), encoded.scales
            if not per_channel:  # one scale per plane, repeated for every channel as binary's alpha is
                scales = np.repeat(scales, len(rows), axis=0)
            return QuantizedWeight(fmt, torch.from_numpy(codes.astype(np.int64)), torch.from_numpy(scales),
                                   "per_channel", self.group_size, shape)
        if isinstance(fmt, BlockFormat):
            # the emulator itself (weights are quantized once); a partial last block is zero-padded, as MX
            # kernels pad K, which leaves that block's scale (its amax) unchanged
            padded = pad_to_blocks(rows.numpy(), fmt.block_size, axis=1)
            encoded = block_encode(padded, fmt, axis=1)
            return QuantizedWeight(fmt, torch.from_numpy(encoded.elements.astype(np.int64)),
                                   torch.from_numpy(encoded.scales.astype(np.int64)), "per_block", fmt.block_size,
                                   shape, encoded.tensor_scale)
        if self.granularity == "per_group":
            if rows.shape[1] % self.group_size:
                raise SimdqError(f"group size {self.group_size} does not divide {rows.shape[1]} input features")
            groups = rows.reshape(-1, self.group_size)
            scale = scale_for(calibrate_amax(groups, fmt, self.calibrator, per_channel=True), fmt)
            scale = scale.reshape(rows.shape[0], -1)
            codes = torch_quant.quantize(rows, fmt, scale, axis=1, group_size=self.group_size)
        elif self.granularity == "per_channel":
            scale = scale_for(calibrate_amax(rows, fmt, self.calibrator, per_channel=True), fmt)
            codes = torch_quant.quantize(rows, fmt, scale, axis=0)
        else:
            scale = scale_for(calibrate_amax(rows, fmt, self.calibrator), fmt).reshape(())
            codes = torch_quant.quantize(rows, fmt, scale)
        return QuantizedWeight(fmt, codes, scale, self.granularity, self.group_size, shape)

    def fake_quantize(self, weight: torch.Tensor) -> torch.Tensor:
        return self.quantize(weight).dequantize().to(weight.dtype)
