"""Bit-aware cost of every layer under a counting convention.

Conventions (simdq.scheme.conventions; the papers' rules in docs/papers.md):
- binarydm / bidm (BinaryDM App. B.1, BiDM App. A): only conv and linear layers count. BOPs = b_w * b_a *
  MACs for quantized layers, FLOPs = MACs for full-precision ones, OPs = BOPs / 64 + FLOPs. Size: quantized
  weights at b_w bits, every other parameter at the model's precision; no scales. A residual binary weight of
  P planes (binary2) has b_w = P: P sign bits per weight in the size, P x b_a x MACs in BOPs.
- full: every op. FLOPs = 2 x MACs of full-precision GEMMs plus all non-GEMM arithmetic (norms, softmax,
  elementwise: per-element counts in simdq.model.trace); BOPs = b_w * b_a * MACs of quantized GEMMs, including
  attention matmuls when they are quantized; OPs = 2 x MACs of every GEMM plus the non-GEMM arithmetic.
  Size: the weights as stored (codes, scales, zero points, block scales).
weight_bytes is always the as-stored size, whatever the convention.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

from ..model.layer import Layer
from ..scheme import PAPER_CONVENTIONS, LayerScheme, QuantFormat


@dataclass(frozen=True)
class LayerCost:
    """Costs of one layer; macs, bops, flops and ops are those the convention counts."""

    params: int
    weight_bytes: float
    size_bytes: float
    read_bytes: float
    write_bytes: float
    macs: int
    bops: int
    flops: int
    ops: float
    counted: bool


def scale_count(layer: Layer, granularity, fmt: QuantFormat) -> int:
    """Scales a per-tensor/per-channel/per-group quantized weight needs (one per output channel per group).
    Binary weights keep one per output channel under per_group too: their scale is the channel's mean |W|
    (BinaryDM, BiDM), which is what `simdq calibrate` stores."""
    if granularity.weights == "per_tensor":
        return 1
    if granularity.weights == "per_channel" or fmt.family == "binary":
        return layer.out_channels
    reduction = layer.weight_params // layer.out_channels
    return layer.out_channels * ceil(reduction / granularity.group_size)


def weight_storage_bits(layer: Layer, fmt: QuantFormat, quant, scale_bits: int) -> int:
    """Bits of a conv/linear weight as stored: codes, plus scales and zero points or block scales."""
    codes = layer.weight_params * fmt.bits
    if fmt.full_precision:
        return codes
    if fmt.family == "block":
        reduction = layer.weight_params // layer.out_channels
        blocks = layer.out_channels * ceil(reduction / fmt.block_size)
        return codes + blocks * fmt.block_scale_bits + fmt.tensor_scale_bits
    scales = scale_count(layer, quant.granularity, fmt) * fmt.planes  # residual binary: one per plane and channel
    zero_points = scales * fmt.bits if quant.weight_zero_point and fmt.family == "int" else 0
    return codes + scales * scale_bits + zero_points


def _activation_bits(fmt: QuantFormat, elements: int) -> float:
    bits = elements * fmt.bits
    if fmt.family == "block":
        bits += ceil(elements / fmt.block_size) * fmt.block_scale_bits
    return bits


def layer_cost(layer: Layer, scheme: LayerScheme, quant, model_format: QuantFormat, scale_bits: int,
               convention: str) -> LayerCost:
    model_bits = model_format.bits
    weight = scheme.weight or scheme.activation
    activation = scheme.activation
    if layer.is_weight_layer:
        weight_bits = weight_storage_bits(layer, weight, quant, scale_bits)
        size_bits = layer.weight_params * weight.bits
    else:
        weight_bits = size_bits = 0
    other_bits = layer.other_params * model_bits
    read_bits = _activation_bits(activation, layer.gemm_read) + layer.read * model_bits
    quantized = not (weight.full_precision and activation.full_precision)
    if convention in PAPER_CONVENTIONS:
        counted = layer.is_weight_layer and scheme.count_ops
        macs = layer.macs if counted else 0
        bops = weight.bits * activation.bits * macs if quantized else 0
        flops = 0 if quantized else macs
        ops = bops / 64 + flops
        size = size_bits + other_bits
    else:
        counted = True
        macs = layer.macs
        bops = weight.bits * activation.bits * macs if quantized else 0
        flops = layer.vector_flops + (0 if quantized else 2 * macs)
        ops = 2 * macs + layer.vector_flops
        size = weight_bits + other_bits
    return LayerCost(
        params=layer.params,
        weight_bytes=(weight_bits + other_bits) / 8,
        size_bytes=size / 8,
        read_bytes=read_bits / 8,
        write_bytes=layer.write * model_bits / 8,
        macs=macs,
        bops=bops,
        flops=flops,
        ops=ops,
        counted=counted,
    )
