"""Resolve the quantization scheme of model.yaml into formats for every layer.

For a conv/linear layer: the user's rules (first match wins), then the policy's rules, then the scheme's
weights/activations. Attention matmuls (qk, av) follow quant.attention; all other layers run in the
model's dtype. Globs match module paths (fnmatch).
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from ..model.layer import Layer
from .formats import QuantFormat, quant_format
from .policies import FULL, PolicyRule, get_policy


@dataclass(frozen=True)
class LayerScheme:
    """Formats of one layer. weight is None for layers without a quantizable weight; count_ops False
    leaves the layer out of the papers' op counts; decided_by says which rule chose the formats."""

    weight: QuantFormat | None
    activation: QuantFormat
    count_ops: bool = True
    decided_by: str = "scheme"


def _pick(value, default: QuantFormat, model_dtype: str) -> QuantFormat:
    if value is None:
        return default
    return quant_format(model_dtype if value == FULL else value)


def attention_format(quant, model_dtype: str) -> QuantFormat:
    """The format of both operands of the attention matmuls (QK^T, softmax x V): quant.attention.activations,
    else the scheme's activations, else the model's dtype; the model's dtype when attention is not quantized."""
    if not quant.attention.quantize:
        return quant_format(model_dtype)
    return quant_format(quant.attention.activations or quant.activations or model_dtype)


def resolve(layers: list, quant, model_dtype: str) -> list:
    """One LayerScheme per layer, in order. `quant` is the QuantSection of model.yaml."""
    full = quant_format(model_dtype)
    # formats not given default to the model's own precision (unquantized)
    weights = quant_format(quant.weights or model_dtype)
    activations = quant_format(quant.activations or model_dtype)
    policy = get_policy(quant.policy) if quant.policy else None
    rules = [(f"rules[{i}]", PolicyRule(tuple(r.match), r.weights, r.activations, r.count_ops))
             for i, r in enumerate(quant.rules)]
    if policy:
        rules += [(f"policy {policy.name}", rule) for rule in policy.rules]
    attention = attention_format(quant, model_dtype)
    schemes = []
    for layer in layers:
        if layer.kind == "attention_matmul":
            schemes.append(LayerScheme(None, attention, decided_by="attention"))
        elif not layer.is_weight_layer:
            schemes.append(LayerScheme(None, full, decided_by="model dtype"))
        else:
            schemes.append(_weight_layer_scheme(layer, rules, weights, activations, model_dtype))
    return schemes


def _weight_layer_scheme(layer: Layer, rules, weights, activations, model_dtype) -> LayerScheme:
    for label, rule in rules:
        if any(fnmatchcase(layer.name, pattern) for pattern in rule.match):
            return LayerScheme(
                _pick(rule.weights, weights, model_dtype),
                _pick(rule.activations, activations, model_dtype),
                rule.count_ops,
                label,
            )
    return LayerScheme(weights, activations)


def add_policy_layers(layers: list, schemes: list, quant, model_dtype: str) -> tuple:
    """Layers a policy adds to the traced model (BiDM's extra shortcuts), with their schemes."""
    policy = get_policy(quant.policy) if quant.policy else None
    if not policy or not policy.extra_shortcuts:
        return layers, schemes
    extra = []
    for layer, scheme in zip(layers, schemes):
        binarized = scheme.weight is not None and not scheme.weight.full_precision
        if layer.kind == "conv" and binarized and layer.in_channels != layer.out_channels and not layer.extra:
            positions = layer.write // layer.out_channels
            extra.append(Layer(
                name=f"{layer.name}.bidm_shortcut", module=layer.module, module_type="Conv2d 1x1 (BiDM shortcut)",
                kind="conv", macs=positions * layer.in_channels * layer.out_channels, gemm_read=layer.gemm_read,
                write=layer.write, kernels=1, weight_params=layer.in_channels * layer.out_channels,
                in_channels=layer.in_channels, out_channels=layer.out_channels, kernel_size=(1, 1),
                input_shape=layer.input_shape, output_shape=layer.output_shape, extra=True,
                gemm_dims=(1, positions, layer.out_channels, layer.in_channels),
            ))
    full = quant_format(model_dtype)
    extra_schemes = [LayerScheme(full, full, decided_by=f"policy {policy.name} (extra layer)")] * len(extra)
    return layers + extra, schemes + extra_schemes
