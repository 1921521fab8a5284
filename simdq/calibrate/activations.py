"""Activation quantizers: record inputs while calibrating, then fake-quantize them with a range fitted per
timestep group (or per block at run time for MX/NVFP4, or sign(x - threshold) for binary).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from emulator import BinaryFormat, BlockFormat, block_decode, block_encode

from ..errors import SimdqError
from . import torch_quant
from .calibrators import calibrate_amax, scale_for
from .timesteps import TimestepContext
from .torch_quant import pad_to_blocks, saturating

MAX_CALIBRATION_VALUES = 1 << 22  # a uniform subsample per module keeps percentile/MSE memory bounded


def timestep_group(context, timestep_groups, num_train_timesteps: int):
    """The key of the running timestep's range: None (one range), the timestep ("per_step"), or its bin."""
    if context is None or timestep_groups is None:
        return None
    if context.timestep is None:
        raise SimdqError("timestep-aware quantizer called outside a UNet forward")
    if timestep_groups == "per_step":
        return context.timestep
    width = num_train_timesteps / timestep_groups
    return min(int(context.timestep // width), timestep_groups - 1)


class ActivationQuantizer(nn.Module):
    """Per-tensor activation quantizer; while `calibrating`, it records inputs and passes them through.

    Binary activations are sign(x - threshold_c) x the mean |x|, with a threshold per channel (the axis
    the consuming GEMM reduces) set to the channel's mean over the calibration inputs.

    With a TimestepContext and `timestep_groups`, it keeps one range per group of timesteps: "per_step"
    (every timestep value its own range) or an int n (n equal bins of [0, num_train_timesteps)).
    """

    def __init__(self, fmt_name: str, calibrator: str = "minmax", context: TimestepContext | None = None,
                 timestep_groups=None, num_train_timesteps: int = 1000, block_axis: int = -1):
        super().__init__()
        self.fmt = saturating(fmt_name)
        self.block_axis = block_axis  # block formats: the axis the consuming GEMM reduces (conv: channels)
        self.calibrator = calibrator
        self.context, self.timestep_groups, self.num_train_timesteps = context, timestep_groups, num_train_timesteps
        self.calibrating = False
        self.samples: dict = {}
        self.scales: dict = {}  # timestep group -> scale (float64 0-d tensor); group None: all timesteps
        self.thresholds = None  # binary formats: one per channel of block_axis (sign(x - threshold))
        self._channel_sums = None

    def group(self):
        return timestep_group(self.context, self.timestep_groups, self.num_train_timesteps)

    @property
    def dynamic(self) -> bool:
        """Block formats scale each block from its own values at run time: nothing to calibrate."""
        return isinstance(self.fmt, BlockFormat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dynamic and not self.calibrating:
            values = x.detach().float().cpu().numpy()
            padded = pad_to_blocks(values, self.fmt.block_size, self.block_axis)
            decoded = block_decode(block_encode(padded, self.fmt, axis=self.block_axis), self.fmt, axis=self.block_axis)
            decoded = np.take(decoded, np.arange(values.shape[self.block_axis]), axis=self.block_axis)
            return torch.from_numpy(decoded).to(x.device, x.dtype)
        key = self.group()
        if self.calibrating:
            if isinstance(self.fmt, BinaryFormat):
                channels = x.detach().double().movedim(self.block_axis, -1).reshape(-1, x.shape[self.block_axis])
                sums = torch.stack([channels.sum(dim=0), torch.full_like(channels[0], len(channels))])
                self._channel_sums = sums if self._channel_sums is None else self._channel_sums + sums
            flat = x.detach().reshape(-1).float()
            if flat.numel() > MAX_CALIBRATION_VALUES:
                flat = flat[torch.randperm(flat.numel(), device=flat.device)[:MAX_CALIBRATION_VALUES]]
            self.samples.setdefault(key, []).append(flat.cpu())
            return x
        scale = self.scale_for(key)
        if isinstance(self.fmt, BinaryFormat):
            shape = [1] * x.dim()
            shape[self.block_axis] = -1
            centred = x - self.thresholds.reshape(shape).to(x.dtype)
            return torch.where(centred < 0, -1.0, 1.0).to(x.dtype) * scale.to(x.dtype)
        return torch_quant.fake_quantize(x, self.fmt, scale).to(x.dtype)

    def scale_for(self, key) -> torch.Tensor:
        """The calibrated scale of timestep group `key` (self.group() in a UNet forward)."""
        if key not in self.scales:
            known = sorted(k for k in self.scales if k is not None)
            raise SimdqError("activation quantizer used before calibration" if not self.scales else
                             f"no calibrated range for timestep group {key!r}; calibrated: {known}")
        return self.scales[key]

    def _fit(self, values: torch.Tensor) -> torch.Tensor:
        if self.dynamic:
            return torch.tensor(float("nan"), dtype=torch.float64)
        if isinstance(self.fmt, BinaryFormat):
            return values.abs().mean().double()
        return scale_for(calibrate_amax(values, self.fmt, self.calibrator), self.fmt).reshape(())

    def finish_calibration(self, merge: bool = False) -> None:
        """Fit a range per timestep group (or, with merge, one range from all of them for every group)."""
        if not self.samples:
            raise SimdqError("no calibration inputs reached this layer")
        groups = {key: torch.cat(parts) for key, parts in self.samples.items()}
        self.samples, self.calibrating = {}, False
        if self._channel_sums is not None:  # binary: each channel thresholded at its mean (BiDM's init is 0)
            self.thresholds = self._channel_sums[0] / self._channel_sums[1]
            self._channel_sums = None
        if merge:
            scale = self._fit(torch.cat(list(groups.values())))
            self.scales = {key: scale for key in groups}
        else:
            self.scales = {key: self._fit(values) for key, values in groups.items()}


class OutputRange(nn.Module):
    """The largest |output| of a quantized conv or linear per timestep group (the same groups as its input's
    ranges), recorded while calibrating: the int8 output scale, amax / 127, that an integer pipeline requantizes
    to (simdq emulate --requant). It never changes the module's output."""

    def __init__(self, context: TimestepContext | None = None, timestep_groups=None, num_train_timesteps: int = 1000):
        super().__init__()
        self.context, self.timestep_groups, self.num_train_timesteps = context, timestep_groups, num_train_timesteps
        self.calibrating = False
        self.amax: dict = {}  # timestep group -> float64 0-d tensor

    def group(self):
        return timestep_group(self.context, self.timestep_groups, self.num_train_timesteps)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if self.calibrating:
            key = self.group()
            peak = y.detach().abs().max().double()
            self.amax[key] = torch.maximum(self.amax[key], peak) if key in self.amax else peak
        return y

    def finish_calibration(self, merge: bool = False) -> None:
        self.calibrating = False
        if merge and self.amax:
            peak = torch.stack(list(self.amax.values())).max()
            self.amax = {key: peak for key in self.amax}

    def scale_for(self, key) -> float:
        if key not in self.amax:
            raise SimdqError("this artifact records no output range for timestep group "
                             f"{key!r}; recalibrate it with this simdq to requantize" if self.amax else
                             "this artifact records no output ranges (calibrated before simdq recorded them); "
                             "recalibrate it to requantize")
        amax = float(self.amax[key])
        return amax / 127 if amax > 0 else 1.0
