"""Emulated layers: a calibrated conv, linear or attention matmul computed by the emulator's kernels.

EmulatedGemm replaces a fake-quantized QuantConv2d / QuantLinear (which it keeps, as `fake`, for parity and
for layers with an unquantized operand). Its forward quantizes the input with the artifact's range, runs
emulator.conv2d / emulator.matmul on the codes with the layer's accumulator, then the epilogue as cuBLAS
applies it (emulator.gemm.epilogue: the float32 accumulator times the activation and weight scales), then
adds the bias in float32; or, with a requantization convention, writes int8 codes at the layer's calibrated
output range and dequantizes them, as an integer pipeline does. Everything around it (norms, SiLU, softmax, residual adds, resampling) stays the
UNet's own float32 torch code.

Hooks: `observer(product)` sees every emulated Product (simdq.emulate.parity.model), and
`clock` adds the time spent quantizing activations and in kernels (the benchmark's split).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

import emulator
from emulator import BlockFormat, ResidualBinaryFormat
from emulator.gemm import Operand, accumulate, epilogue, operand

from ..calibrate.modules import QuantConv2d
from ..errors import SimdqError
from .arithmetic import LayerArithmetic
from .operands import Encoded, dequantized, encode_activation, encode_weight, weight_planes


class Clock:
    """Seconds spent quantizing activations and in the emulator's kernels (epilogue included)."""

    def __init__(self):
        self.quantize = self.kernels = 0.0


@dataclass
class Product:
    """One emulated GEMM as an observer sees it: its operands, the raw accumulator (before the epilogue), the
    output (after it, bias added), and what recomputes the same output the fake-quantized way."""

    name: str
    arithmetic: LayerArithmetic
    activation: Encoded
    weight: Encoded
    accumulator: np.ndarray
    output: torch.Tensor
    fake_output: object  # () -> the fake-quantized module's output on the same input
    finish: object  # raw accumulator -> the layer's output (epilogue and bias, or requantization)
    conv: object = None  # the geometry (stride, padding, dilation, groups) of a convolution
    output_scale: float | None = None  # requantized layers: the int8 output's scale
    bias: object = None


def gemm_product(a: Encoded, b: Encoded, accumulator: str) -> np.ndarray:
    """a (M x K) @ b (K x N) on the emulator, before the epilogue."""
    if isinstance(a.data, Operand) or isinstance(b.data, Operand):  # block-scaled: decoded values
        left, right = (e.data if isinstance(e.data, Operand) else operand(e.data, e.fmt) for e in (a, b))
        return accumulate(left, right, accumulator)
    return emulator.matmul(a.data, b.data, a_format=a.fmt, b_format=b.fmt, accumulator=accumulator)


def conv_product(x: Encoded, w: Encoded, accumulator: str, conv) -> np.ndarray:
    """NCHW x OIHW on the emulator, before the epilogue; `conv` gives the geometry (padding: exact zeros)."""
    return emulator.conv2d(x.data, w.data, x_format=x.fmt, w_format=w.fmt, stride=conv.stride,
                           padding=conv.padding, dilation=conv.dilation, groups=conv.groups, accumulator=accumulator)


def apply_epilogue(raw: np.ndarray, a: Encoded, b: Encoded) -> np.ndarray:
    """The float32 output: raw accumulators (output channels along axis 1) times the scales, as cuBLAS."""
    return epilogue(raw, a_scale=a.scale, b_scale=b.scale, channel_axis=1)


class EmulatedGemm(nn.Module):
    def __init__(self, name: str, fake: nn.Module, arithmetic: LayerArithmetic):
        super().__init__()
        self.name, self.fake, self.arithmetic = name, fake, arithmetic
        self.conv = isinstance(fake, QuantConv2d)
        if self.conv and getattr(fake, "padding_mode", "zeros") != "zeros":
            raise SimdqError(f"{name}: only zero padding is emulated")
        self.weight = encode_weight(fake.quantized_weight, self.conv) if arithmetic.emulated else None
        if self.weight is not None:
            fake.quantized_weight = None  # the codes now live here, in their narrow dtype
        self.planes = None
        if self.weight is not None and isinstance(self.weight.fmt, ResidualBinaryFormat):
            self.planes, self.weight = weight_planes(self.weight), None  # the planes are the only copy kept
        self.accumulator = arithmetic.accumulator
        self.observer = None
        self.clock = None
        self.emulating = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.emulating and self.arithmetic.emulated):
            return self.fake(x)
        started = time.perf_counter()
        shape = x.shape
        inputs = x if self.conv else x.reshape(-1, shape[-1])
        activation = encode_activation(self.fake.input_quantizer, inputs, axis=1)
        encoded = time.perf_counter()
        out = self._planes(activation) if self.planes is not None else self._product(activation, inputs)
        if self.clock is not None:
            self.clock.quantize += encoded - started
            self.clock.kernels += time.perf_counter() - encoded
        return out if self.conv else out.reshape(*shape[:-1], out.shape[-1])

    def _raw(self, activation: Encoded, weight: Encoded) -> np.ndarray:
        if self.conv:
            return conv_product(activation, weight, self.accumulator, self.fake)
        return gemm_product(activation, weight, self.accumulator)

    def _with_bias(self, out: torch.Tensor) -> torch.Tensor:
        if self.fake.bias is None:
            return out
        return out + self.fake.bias.detach().reshape((1, -1, 1, 1) if self.conv else (1, -1))

    def _product(self, activation: Encoded, inputs: torch.Tensor) -> torch.Tensor:
        raw = self._raw(activation, self.weight)
        output_scale = self.output_scale() if self.arithmetic.requant else None

        def finish(accumulators):
            if output_scale is not None:
                return self.requantized(accumulators, activation, output_scale)
            return self._with_bias(torch.from_numpy(apply_epilogue(accumulators, activation, self.weight)))

        out = finish(raw)
        if self.observer is not None:
            self.observer(Product(self.name, self.arithmetic, activation, self.weight, raw, out,
                                  lambda: self.fake(inputs), finish, self.fake if self.conv else None, output_scale,
                                  self.fake.bias))
        return out

    def _planes(self, activation: Encoded) -> torch.Tensor:
        """A residual binary weight: each plane a binary GEMM with its own float32 epilogue (the accumulator
        times the activation scale and the plane's per-channel scale, as cuBLAS applies them), the planes'
        float32 outputs added in plane order, then the bias. Observers see one Product per plane (NAME.planeJ),
        each against the fake-quantized product of the same two operands."""
        total = None
        for j, plane in enumerate(self.planes):
            raw = self._raw(activation, plane)
            out = apply_epilogue(raw, activation, plane)
            total = out if total is None else total + out
            if self.observer is not None:
                self.observer(Product(
                    f"{self.name}.plane{j}", self.arithmetic, activation, plane, raw, torch.from_numpy(out),
                    lambda plane=plane: fake_product(activation, plane, self.fake if self.conv else None),
                    lambda accumulators, plane=plane: torch.from_numpy(apply_epilogue(accumulators, activation, plane)),
                    self.fake if self.conv else None))
        return self._with_bias(torch.from_numpy(total))

    def output_scale(self) -> float:
        """The int8 output scale of the running timestep group (amax / 127, recorded by calibration)."""
        observed = self.fake.output_range
        if observed is None:
            raise SimdqError(f"{self.name}: no output range to requantize to")
        return observed.scale_for(observed.group())

    def requantized(self, raw: np.ndarray, activation: Encoded, output_scale: float) -> torch.Tensor:
        """int8 codes by emulator.requantize (the bias quantized as onnxruntime.quantization's
        quantize_bias_static does: rint(f32(b) / f32(f32(sx) * f32(sw))), an int32 per channel), then
        dequantized as DequantizeLinear: f32(code) * f32(sy)."""
        sx, sw = np.float32(activation.scale), np.asarray(self.weight.scale, dtype=np.float32)
        bias = None
        if self.fake.bias is not None:
            bias_scale = (sx * sw).astype(np.float32)
            bias = np.rint(self.fake.bias.detach().numpy().astype(np.float32) / bias_scale).astype(np.int64)
        codes = emulator.requantize(raw, sx, sw, output_scale, bias=bias, out_format="int8",
                                    convention=self.arithmetic.requant, channel_axis=1)
        values = codes.view(np.int8).astype(np.float32) * np.float32(output_scale)
        return torch.from_numpy(values)


class EmulatedAttention(nn.Module):
    """An attention module's QK^T and softmax(QK^T) V on the emulator, replacing the fake-quantized ones
    (simdq.calibrate.attention.AttentionQuantizers) inside the module's own processor."""

    def __init__(self, name: str, fake, qk: LayerArithmetic, av: LayerArithmetic):
        super().__init__()
        if isinstance(fake.q.fmt, BlockFormat):
            raise SimdqError(f"{name}: block-scaled attention operands are not emulated (V's blocks run across "
                             "the reduction of softmax x V)")
        self.name, self.fake, self.qk, self.av = name, fake, qk, av
        self.observer = None
        self.clock = None
        self.emulating = True

    def _batched(self, arithmetic, role, a, b_t, qa, qb, b_axis) -> torch.Tensor:
        """a @ b_t^T per leading index (batch x heads), each on the emulator; b_t's last axis is the reduction."""
        started = time.perf_counter()
        ea, eb = encode_activation(qa, a, -1), encode_activation(qb, b_t, b_axis)
        encoded = time.perf_counter()
        a_codes, b_codes = ea.data.reshape(-1, *a.shape[-2:]), eb.data.reshape(-1, *b_t.shape[-2:])
        outs = []
        for left_codes, right_codes in zip(a_codes, b_codes):
            left = Encoded(left_codes, ea.fmt, ea.scale)
            right = Encoded(np.ascontiguousarray(right_codes.T), eb.fmt, eb.scale)
            raw = gemm_product(left, right, arithmetic.accumulator)
            out = torch.from_numpy(apply_epilogue(raw, left, right))
            if self.observer is not None:
                self.observer(Product(f"{self.name}.{role}", arithmetic, left, right, raw, out,
                                      lambda: fake_matmul(left, right),
                                      lambda accumulators: torch.from_numpy(
                                          apply_epilogue(accumulators, left, right))))
            outs.append(out)
        if self.clock is not None:
            self.clock.quantize += encoded - started
            self.clock.kernels += time.perf_counter() - encoded
        return torch.stack(outs).reshape(*a.shape[:-1], outs[0].shape[-1])

    def attention(self, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **_):
        if not self.emulating:
            return self.fake.attention(query, key, value, attn_mask, dropout_p, is_causal, scale)
        if attn_mask is not None or is_causal:
            raise SimdqError(f"{self.name}: masked attention is not emulated")
        scale = scale if scale is not None else query.shape[-1] ** -0.5
        fake = self.fake
        scores = self._batched(self.qk, "qk", query, key, fake.q, fake.k, -1) * scale
        # V enters transposed, so that the reduction (tokens) is its last axis; its binary thresholds stay
        # per channel of V (now axis -2)
        return self._batched(self.av, "av", scores.softmax(dim=-1), value.transpose(-2, -1), fake.p, fake.v, -2)


def fake_matmul(a: Encoded, b: Encoded) -> torch.Tensor:
    """What the fake-quantized attention computes: float32 dequantized operands (each rounded once from
    value x scale, as torch_quant.dequantize), a float32 torch matmul."""
    return torch.from_numpy(dequantized(a).astype(np.float32)) @ torch.from_numpy(dequantized(b).astype(np.float32))


def fake_product(a: Encoded, w: Encoded, conv=None) -> torch.Tensor:
    """fake_matmul, or with `conv` (its geometry) a float32 torch convolution of the dequantized operands."""
    if conv is None:
        return fake_matmul(a, w)
    x, weight = (torch.from_numpy(dequantized(e).astype(np.float32)) for e in (a, w))
    return torch.nn.functional.conv2d(x, weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)
