"""Module swapping: every conv and linear the scheme of model.yaml quantizes becomes a fake-quantized module
(weights from simdq.calibrate.weights, inputs through simdq.calibrate.activations), and, with
quant.attention.quantize, every attention module's matmul operands are quantized (simdq.calibrate.attention).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..model.layer import Layer
from ..scheme import attention_format, resolve
from .activations import ActivationQuantizer, OutputRange
from .attention import quantize_attention
from .timesteps import TimestepContext
from .weights import WeightQuantizer


class _QuantGemm(nn.Module):
    """Holds the weight as stored (`quantized_weight`, None if unquantized) and its fake-quantized values."""

    def __init__(self, module, weights, activations, output_range=None):
        super().__init__()
        self.bias = module.bias
        self.output_range = output_range
        weight = module.weight.detach()
        self.quantized_weight = weights.quantize(weight) if weights else None
        fake = self.quantized_weight.dequantize().to(weight.dtype) if weights else weight
        self.register_buffer("weight", fake)
        self.input_quantizer = activations


    def observed(self, y):
        return self.output_range(y) if self.output_range is not None else y


class QuantLinear(_QuantGemm):
    def __init__(self, linear: nn.Linear, weights: WeightQuantizer | None, activations: ActivationQuantizer | None,
                 output_range: OutputRange | None = None):
        super().__init__(linear, weights, activations, output_range)

    def forward(self, x):
        return self.observed(F.linear(self.input_quantizer(x) if self.input_quantizer else x, self.weight, self.bias))


class QuantConv2d(_QuantGemm):
    def __init__(self, conv: nn.Conv2d, weights: WeightQuantizer | None, activations: ActivationQuantizer | None,
                 output_range: OutputRange | None = None):
        super().__init__(conv, weights, activations, output_range)
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups

    def forward(self, x):
        x = self.input_quantizer(x) if self.input_quantizer else x
        return self.observed(F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                                      self.groups))


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
        outputs = OutputRange(context, timestep_groups, num_train_timesteps)  # for integer pipelines' requantization
        setattr(parent, child, wrapper(module, w_quant, a_quant, outputs))
        swapped[stub.name] = (weight.name, activation.name)
    attention = attention_format(quant, model_dtype)
    if not attention.full_precision:
        quantize_attention(model, attention.name, calibrator, context, timestep_groups, num_train_timesteps)
    return swapped


def activation_quantizers(model: nn.Module) -> list:
    return [m for m in model.modules() if isinstance(m, ActivationQuantizer)]


def calibrate_activations(model: nn.Module, batches, merge: bool = False) -> None:
    """Run `batches` (keyword-argument dicts for the model) with every activation quantizer and output range
    recording, then fit each one's range (per timestep group unless merged)."""
    quantizers = activation_quantizers(model) + [m for m in model.modules() if isinstance(m, OutputRange)]
    for q in quantizers:
        q.calibrating = True
    with torch.no_grad():
        for inputs in batches:
            model(**inputs)
    for q in quantizers:
        q.finish_calibration(merge)
