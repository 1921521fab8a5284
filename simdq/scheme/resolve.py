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


def _bidm_shortcut(layer: Layer) -> list:
    """BiDM's full-precision 1x1 conv beside a binarized conv whose channel counts differ."""
    if layer.in_channels == layer.out_channels:
        return []
    positions = layer.write // layer.out_channels
    return [Layer(
        name=f"{layer.name}.bidm_shortcut", module=layer.module, module_type="Conv2d 1x1 (BiDM shortcut)",
        kind="conv", macs=positions * layer.in_channels * layer.out_channels, gemm_read=layer.gemm_read,
        write=layer.write, kernels=1, weight_params=layer.in_channels * layer.out_channels,
        in_channels=layer.in_channels, out_channels=layer.out_channels, kernel_size=(1, 1),
        input_shape=layer.input_shape, output_shape=layer.output_shape, extra=True,
        gemm_dims=(1, positions, layer.out_channels, layer.in_channels),
    )]


def _bidm_scale_path(layer: Layer) -> list:
    """BiDM's activation scale beside a binary x binary conv (util_ours.py BNNConv2d), as the three operations
    its code runs: mean(|x|, dim=1) (abs and mean: two kernels), fliter_k, a k x k conv with bias from that one
    map to one (the conv's stride and padding), and y * K, K broadcast over the output channels."""
    batch, channels, *_ = layer.input_shape
    inputs = layer.gemm_read
    in_positions, out_positions = inputs // channels, layer.write // layer.out_channels
    window = layer.kernel_size[0] * layer.kernel_size[1]
    common = dict(module=layer.module, extra=True)
    return [
        Layer(name=f"{layer.name}.bidm_scale.mean_abs", module_type="mean(|x|, dim=1) (BiDM scale)",
              kind="elementwise", vector_flops=2 * inputs + in_positions, read=inputs, write=in_positions,
              kernels=2, **common),
        Layer(name=f"{layer.name}.bidm_scale.k_conv", module_type="Conv2d 1->1 (BiDM scale fliter_k)", kind="conv",
              macs=out_positions * window, gemm_read=in_positions, write=out_positions, kernels=1,
              weight_params=window, other_params=1, in_channels=1, out_channels=1, kernel_size=layer.kernel_size,
              input_shape=(batch, 1, *layer.input_shape[2:]), output_shape=(batch, 1, *layer.output_shape[2:]),
              gemm_dims=(1, out_positions, 1, window), **common),
        Layer(name=f"{layer.name}.bidm_scale.multiply", module_type="y * K (BiDM scale)", kind="elementwise",
              vector_flops=layer.write, read=layer.write + out_positions, write=layer.write, kernels=1, **common),
    ]


def add_policy_layers(layers: list, schemes: list, quant, model_dtype: str) -> tuple:
    """Layers a policy adds to the traced model (BiDM's extra shortcuts and scale paths), with their schemes:
    full precision, the model's dtype."""
    policy = get_policy(quant.policy) if quant.policy else None
    if not policy or not (policy.extra_shortcuts or policy.scale_path):
        return layers, schemes
    extra = []
    for layer, scheme in zip(layers, schemes):
        if layer.kind != "conv" or layer.extra or scheme.weight is None or scheme.weight.full_precision:
            continue
        if policy.extra_shortcuts:
            extra += _bidm_shortcut(layer)
        if policy.scale_path and scheme.weight.family == "binary" and scheme.activation.family == "binary":
            extra += _bidm_scale_path(layer)
    full = quant_format(model_dtype)
    extra_schemes = [LayerScheme(full if layer.is_weight_layer else None, full,
                                 decided_by=f"policy {policy.name} (extra layer)") for layer in extra]
    return layers + extra, schemes + extra_schemes
