"""Quantized attention: the operands of QK^T and softmax(QK^T) V quantized inside each diffusers Attention
module's own processor, which stays in charge of projections, norms and reshapes.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .activations import ActivationQuantizer


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
