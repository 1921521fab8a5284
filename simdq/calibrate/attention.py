"""Fake-quantized conv and linear modules, swapped into a UNet by the scheme of model.yaml.

Weights are quantized once, per tensor, per output channel or per group of input features, with the
emulator's rounding (simdq.torch_quant); binary weights are sign(W) (zero -> +1) times the mean |W| of
their output channel, as BinaryDM and BiDM. Activations are quantized per tensor with a range fitted by a
calibrator from the inputs the module sees while `calibrating` is on. Timestep-aware ranges, the
attention matmuls, calibration data and the saved artifact come with the rest of the calibration work.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

import numpy as np

from emulator import BinaryFormat, BlockEncoded, BlockFormat, FloatFormat, block_decode, block_encode, get_format

from . import torch_quant
from .calibrators import calibrate_amax, scale_for
from .errors import SimdqError
from .layers import Layer
from .quant_formats import quant_format
from .scheme import resolve

MAX_CALIBRATION_VALUES = 1 << 22  # a uniform subsample per module keeps percentile/MSE memory bounded


def saturating(fmt_name: str):
    """The format for scaled quantization: minifloats saturate at their largest finite value instead of
    overflowing to inf or NaN (what quantization libraries do once a tensor is scaled into range; a value
    past the calibrated range must not poison the next layer). The name stays the scheme's."""
    fmt = get_format(fmt_name)
    if isinstance(fmt, FloatFormat) and fmt.overflow != "saturate":
        return dataclasses.replace(fmt, overflow="saturate")
    return fmt


def _pad_to_blocks(values: np.ndarray, block_size: int, axis: int) -> np.ndarray:
    """Zero-pad `axis` to a whole number of blocks."""
    missing = -values.shape[axis] % block_size
    if not missing:
        return values
    widths = [(0, 0)] * values.ndim
    widths[axis] = (0, missing)
    return np.pad(values, widths)


@dataclass
class QuantizedWeight:
    """A weight as stored: codes (the format's bit patterns, int64, one row per output channel) and
    scales (float64: one, one per output channel, or one per output channel and group)."""

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
        if isinstance(self.fmt, BinaryFormat):  # code 0 is +1, code 1 is -1
            values = (1 - 2 * self.codes).double() * self.scale.reshape(-1, 1)
            return values.float().reshape(self.shape)
        if self.granularity == "per_group":
            rows = torch_quant.dequantize(self.codes, self.fmt, self.scale, axis=1, group_size=self.group_size)
        elif self.granularity == "per_channel":
            rows = torch_quant.dequantize(self.codes, self.fmt, self.scale, axis=0)
        else:
            rows = torch_quant.dequantize(self.codes, self.fmt, self.scale.reshape(()))
        return rows.reshape(self.shape)


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
        if isinstance(fmt, BlockFormat):
            # the emulator itself (weights are quantized once); a partial last block is zero-padded, as MX
            # kernels pad K, which leaves that block's scale (its amax) unchanged
            padded = _pad_to_blocks(rows.numpy(), fmt.block_size, axis=1)
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


class TimestepContext:
    """The timestep of the forward pass in progress, read from the UNet's own `timestep` argument (never a
    call counter, which classifier-free guidance and batching would break)."""

    def __init__(self):
        self.timestep = None

    def attach(self, model: nn.Module):
        def remember(module, args, kwargs):
            value = kwargs.get("timestep", args[1] if len(args) > 1 else None)
            values = torch.as_tensor(value).reshape(-1)
            if values.numel() == 0 or not torch.all(values == values[0]):
                raise SimdqError("timestep-aware quantization needs one timestep per UNet call "
                                 f"(got {values.tolist()})")
            self.timestep = int(values[0])

        return model.register_forward_pre_hook(remember, with_kwargs=True)


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
        if self.context is None or self.timestep_groups is None:
            return None
        if self.context.timestep is None:
            raise SimdqError("timestep-aware quantizer called outside a UNet forward")
        if self.timestep_groups == "per_step":
            return self.context.timestep
        width = self.num_train_timesteps / self.timestep_groups
        return min(int(self.context.timestep // width), self.timestep_groups - 1)

    @property
    def dynamic(self) -> bool:
        """Block formats scale each block from its own values at run time: nothing to calibrate."""
        return isinstance(self.fmt, BlockFormat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dynamic and not self.calibrating:
            values = x.detach().float().cpu().numpy()
            padded = _pad_to_blocks(values, self.fmt.block_size, self.block_axis)
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
        if key not in self.scales:
            known = sorted(k for k in self.scales if k is not None)
            raise SimdqError("activation quantizer used before calibration" if not self.scales else
                             f"no calibrated range for timestep group {key!r}; calibrated: {known}")
        scale = self.scales[key]
        if isinstance(self.fmt, BinaryFormat):
            shape = [1] * x.dim()
            shape[self.block_axis] = -1
            centred = x - self.thresholds.reshape(shape).to(x.dtype)
            return torch.where(centred < 0, -1.0, 1.0).to(x.dtype) * scale.to(x.dtype)
        return torch_quant.fake_quantize(x, self.fmt, scale).to(x.dtype)

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


class _QuantGemm(nn.Module):
    """Holds the weight as stored (`quantized_weight`, None if unquantized) and its fake-quantized values."""

    def __init__(self, module, weights, activations):
        super().__init__()
        self.bias = module.bias
        weight = module.weight.detach()
        self.quantized_weight = weights.quantize(weight) if weights else None
        fake = self.quantized_weight.dequantize().to(weight.dtype) if weights else weight
        self.register_buffer("weight", fake)
        self.input_quantizer = activations


class QuantLinear(_QuantGemm):
    def __init__(self, linear: nn.Linear, weights: WeightQuantizer | None, activations: ActivationQuantizer | None):
        super().__init__(linear, weights, activations)

    def forward(self, x):
        return F.linear(self.input_quantizer(x) if self.input_quantizer else x, self.weight, self.bias)


class QuantConv2d(_QuantGemm):
    def __init__(self, conv: nn.Conv2d, weights: WeightQuantizer | None, activations: ActivationQuantizer | None):
        super().__init__(conv, weights, activations)
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups

    def forward(self, x):
        x = self.input_quantizer(x) if self.input_quantizer else x
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class AttentionQuantizers(nn.Module):
    """Quantizers of one attention module's activation x activation matmuls: the operands of QK^T (q, k),
    and of softmax(QK^T) V (the probabilities p, and v)."""

    def __init__(self, fmt_name: str, calibrator: str, context, timestep_groups, num_train_timesteps: int):
        super().__init__()
        for name in ("q", "k", "p", "v"):
            setattr(self, name, ActivationQuantizer(fmt_name, calibrator, context, timestep_groups, num_train_timesteps))

    def attention(self, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **_):
        """scaled_dot_product_attention, written out so that every matmul operand is quantized."""
        scale = scale if scale is not None else query.shape[-1] ** -0.5
        scores = self.q(query) @ self.k(key).transpose(-2, -1) * scale
        if is_causal:
            causal = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).tril()
            scores = scores.masked_fill(~causal, float("-inf"))
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else scores + attn_mask
        return self.p(scores.softmax(dim=-1)) @ self.v(value)


class _QuantizedAttentionProcessor:
    """Runs the module's own attention processor with its scaled_dot_product_attention call replaced by
    the quantized one (the processor stays in charge of projections, norms and reshapes)."""

    def __init__(self, processor, quantizers: AttentionQuantizers):
        self.processor, self.quantizers = processor, quantizers

    # explicit parameters: diffusers passes a processor only the keyword arguments its signature names
    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args,
                 **kwargs):
        from torch.overrides import TorchFunctionMode

        quantizers = self.quantizers

        class Replace(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                if func is F.scaled_dot_product_attention:
                    return quantizers.attention(*args, **(kwargs or {}))
                return func(*args, **(kwargs or {}))

        with Replace():
            return self.processor(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)


def quantize_attention(model: nn.Module, fmt_name: str, calibrator: str, context, timestep_groups,
                       num_train_timesteps: int) -> list:
    """Install AttentionQuantizers (as `attention_quantizers`) in every diffusers Attention module."""
    from diffusers.models.attention_processor import Attention

    names = []
    for name, module in model.named_modules():
        if isinstance(module, Attention):
            quantizers = AttentionQuantizers(fmt_name, calibrator, context, timestep_groups, num_train_timesteps)
            module.attention_quantizers = quantizers
            module.set_processor(_QuantizedAttentionProcessor(module.processor, quantizers))
            names.append(name)
    return names


def quantize_model(model: nn.Module, quant, model_dtype: str = "fp32", calibrator: str = "minmax",
                   timestep_groups=None, num_train_timesteps: int = 1000, quantize_weights: bool = True) -> dict:
    """Swap every conv and linear of `model` that the scheme quantizes for a fake-quantized module;
    returns name -> (weight format, activation format) of the swapped modules. timestep_groups: None (one
    activation range), "per_step" or a number of equal timestep bins. quantize_weights=False leaves the
    weights to be filled in (from a saved artifact)."""
    context = TimestepContext() if timestep_groups is not None else None
    if context is not None:
        model._simdq_timestep_hook = context.attach(model)
    modules = {name: m for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    stubs = [Layer(name=name, module=name, module_type=type(m).__name__,
                   kind="conv" if isinstance(m, nn.Conv2d) else "linear", weight_params=m.weight.numel())
             for name, m in modules.items()]
    swapped = {}
    for stub, scheme in zip(stubs, resolve(stubs, quant, model_dtype)):
        weight, activation = scheme.weight, scheme.activation
        if weight.full_precision and activation.full_precision:
            continue
        w_quant = None if weight.full_precision or not quantize_weights else WeightQuantizer(
            weight.name, quant.granularity.weights, quant.granularity.group_size, calibrator)
        a_quant = None if activation.full_precision else ActivationQuantizer(
            activation.name, calibrator, context, timestep_groups, num_train_timesteps,
            block_axis=1 if stub.kind == "conv" else -1)
        module = modules[stub.name]
        wrapper = QuantConv2d if isinstance(module, nn.Conv2d) else QuantLinear
        parent_name, _, child = stub.name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, wrapper(module, w_quant, a_quant))
        swapped[stub.name] = (weight.name, activation.name)
    if quant.attention.quantize:
        fmt = quant_format(quant.attention.activations or quant.activations or model_dtype)
        if not fmt.full_precision:
            quantize_attention(model, fmt.name, calibrator, context, timestep_groups, num_train_timesteps)
    return swapped


def activation_quantizers(model: nn.Module) -> list:
    return [m for m in model.modules() if isinstance(m, ActivationQuantizer)]


def calibrate_activations(model: nn.Module, batches, merge: bool = False) -> None:
    """Run `batches` (keyword-argument dicts for the model) with every activation quantizer recording,
    then fit each one's range (per timestep group unless merged)."""
    quantizers = activation_quantizers(model)
    for q in quantizers:
        q.calibrating = True
    with torch.no_grad():
        for inputs in batches:
            model(**inputs)
    for q in quantizers:
        q.finish_calibration(merge)

