"""Requantization: an int32 accumulator to the next layer's integer codes, under the convention a runtime uses.

Every convention starts from a = int32(acc + bias) (wrapping, as the runtimes add in int32) and ends with
clamp(., qmin, qmax) of the output format. sx, sw, sy are the input, weight (per tensor or per output channel)
and output scales, zp the output zero point. f32(.) is a float32 operation, rne round half to even.

  onnxruntime     y = rne(clamp(f32(f32(a) * m), qmin - zp, qmax - zp)) + zp,  m = f32(f32(sx * sw) / sy)
                  onnxruntime's MlasRequantizeOutput (QLinearMatMul, QLinearConv); torch.ops.quantized on the
                  fbgemm and x86 engines, and XNNPACK, compute the same.
  qnnpack         as onnxruntime with m = f32(f32(sw * sx) * f32(1 / sy))   (torch.ops.quantized, qnnpack).
  onnx_reference  y = clamp(rint(f64(a) * f64(m) + zp)),  m = f32(f32(sx * sw) / sy)   (onnx.reference's
                  QLinearMatMul / QLinearConv: an int32 array times a float32 array is float64 in numpy).
  tflite_reference
                  y = clamp(round-half-away(f64(a) * m) + zp),  m = f64(sx) * f64(sw) / f64(sy): TFLite's reference
                  kernels as ai-edge-litert 2.3.0 runs them (OpResolverType.BUILTIN_REF; measured, tests/
                  test_tflite.py): a float64 product rounded half away from zero, not the fixed point below.
  gemmlowp        m = f64(f32(sx * sw)) / f64(sy) = q * 2^(e - 31), q = round-half-away(frac(m) * 2^31);
                  y = clamp(RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(a * 2^max(e, 0), q), max(-e, 0))
                  + zp): gemmlowp's fixedpoint.h as TFLite's default MultiplyByQuantizedMultiplier composes it
                  (matched against fixedpoint.h itself, tests/test_gemmlowp.py). A double rounding: the high
                  multiply rounds half up, the division by 2^-e half away from zero.
  tflite_single_rounding
                  same q and e; y = clamp(((a * q + 2^(30 - e)) >> (31 - e)) + zp): TFLite's
                  MultiplyByQuantizedMultiplier built with TFLITE_SINGLE_ROUNDING, one rounding, half up (from its
                  source: ai-edge-litert 2.3.0's kernels do not build it, so only the plain twin checks it).
Results are the output format's codes, as `encode` writes them (two's complement low bits for signed formats).
"""

from __future__ import annotations

import numpy as np

from diagnostics import did_you_mean

from .arguments import axis as check_axis, integer, numeric_array, shown
from .codec import code_dtype
from .formats import IntFormat, get_format

REQUANT_CONVENTIONS = ("onnxruntime", "qnnpack", "onnx_reference", "tflite_reference", "gemmlowp",
                       "tflite_single_rounding")
_INT32 = np.int64(1) << 31
f32 = np.float32


def _wrap_int32(x: np.ndarray) -> np.ndarray:
    return ((x + _INT32) & ((_INT32 << 1) - 1)) - _INT32


def _float_multiplier(sx, sw, sy, convention):
    with np.errstate(over="ignore", divide="ignore"):
        if convention == "qnnpack":
            return f32(f32(sw * sx) * f32(f32(1.0) / sy))
        return f32(f32(sx * sw) / sy)


def quantize_multiplier(real_multiplier: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: (q, e) with real_multiplier = q * 2^(e - 31), q in [2^30, 2^31)."""
    if real_multiplier == 0:
        return 0, 0
    fraction, exponent = np.frexp(real_multiplier)
    q = int(np.floor(fraction * 2.0**31 + 0.5))  # std::round on a positive number: half away from zero
    if q == 1 << 31:
        q //= 2
        exponent += 1
    if exponent < -31:
        return 0, 0
    return q, int(exponent)


def _rounding_doubling_high_mul(a: np.ndarray, q: np.ndarray) -> np.ndarray:
    """gemmlowp SaturatingRoundingDoublingHighMul (a, q int32 values in int64 arrays)."""
    product = a * q
    nudge = np.where(product >= 0, np.int64(1) << 30, 1 - (np.int64(1) << 30))
    total = product + nudge
    high = np.where(total >= 0, total >> 31, -((-total) >> 31))  # C++ division truncates toward zero
    return np.where((a == -_INT32) & (q == -_INT32), _INT32 - 1, high)


def _rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def _fixed_point(a, sx, sw, sy, convention):
    pairs = [quantize_multiplier(float(np.float64(f32(f32(x) * f32(w)))) / float(np.float64(f32(sy))))
             for x, w in np.broadcast(sx, sw)]
    shape = np.broadcast(sx, sw).shape
    q = np.array([p[0] for p in pairs], dtype=np.int64).reshape(shape)
    e = np.array([p[1] for p in pairs], dtype=np.int64).reshape(shape)
    if convention == "gemmlowp":
        left = np.maximum(e, 0)
        shifted = _wrap_int32(a * (np.int64(1) << left))
        return _rounding_divide_by_pot(_rounding_doubling_high_mul(shifted, q), np.maximum(-e, 0))
    total_shift = 31 - e
    result = (a * q + (np.int64(1) << (total_shift - 1))) >> total_shift
    return np.clip(result, -_INT32, _INT32 - 1)


def _per_channel(values, shape, axis, dtype) -> np.ndarray:
    """A per-tensor or per-output-channel parameter, shaped to broadcast against the accumulator."""
    sw = np.asarray(values, dtype=dtype)
    if sw.size == 1:
        return sw.reshape(())
    if axis is None:
        axis = 1 if len(shape) == 4 else len(shape) - 1
    if sw.ndim != 1 or sw.size != shape[axis]:
        raise ValueError(f"weight_scale and bias must be scalars or have one entry per output channel "
                         f"({shape[axis]} along axis {axis}), got shape {sw.shape}")
    view = [1] * len(shape)
    view[axis] = sw.size
    return sw.reshape(view)


def requantize(acc, input_scale, weight_scale, output_scale, *, output_zero_point=0, bias=None,
               out_format="int8", convention="onnxruntime", channel_axis=None) -> np.ndarray:
    """Codes of `out_format` from int32 accumulators; see the module docstring for each convention's formula.

    weight_scale (and bias) are per tensor or per output channel: `channel_axis`, by default 1 for NCHW
    convolution outputs and the last axis otherwise.
    """
    if convention not in REQUANT_CONVENTIONS:
        raise ValueError(f"unknown requantization convention {shown(convention)}"
                         f"{did_you_mean(str(convention), REQUANT_CONVENTIONS)}; allowed: {', '.join(REQUANT_CONVENTIONS)}")
    fmt = get_format(out_format)
    if not isinstance(fmt, IntFormat):
        raise ValueError(f"requantization writes integer codes, not {fmt.name}")
    acc = numeric_array(acc, "acc")
    if acc.dtype.kind not in "iu":
        raise ValueError(f"acc must be an integer accumulator array, got {acc.dtype}")
    scales = [numeric_array(s, name).astype(np.float64) for s, name in
              ((input_scale, "input_scale"), (weight_scale, "weight_scale"), (output_scale, "output_scale"))]
    if not all(np.isfinite(s).all() and (s > 0).all() for s in scales):
        raise ValueError("input, weight and output scales must be finite and > 0")
    zp = integer(output_zero_point, "output_zero_point")
    if channel_axis is not None:
        channel_axis = check_axis(channel_axis, "channel_axis", acc.ndim)
    if not fmt.qmin <= zp <= fmt.qmax:
        raise ValueError(f"output_zero_point {zp} is outside {fmt.name}'s range {fmt.qmin}..{fmt.qmax}")
    a = acc.astype(np.int64)
    if bias is not None:
        a = a + _per_channel(bias, acc.shape, channel_axis, np.int64)
    a = _wrap_int32(a)
    sx, sy = f32(input_scale), f32(output_scale)
    sw = _per_channel(weight_scale, acc.shape, channel_axis, np.float32)
    if convention in ("gemmlowp", "tflite_single_rounding"):
        y = _fixed_point(a, sx, sw, sy, convention) + zp
    elif convention == "tflite_reference":
        m = np.float64(sx) * np.asarray(sw, dtype=np.float64) / np.float64(sy)
        product = a.astype(np.float64) * m
        y = np.sign(product) * np.floor(np.abs(product) + 0.5) + zp
    else:
        m = _float_multiplier(sx, sw, sy, convention)
        if convention == "onnx_reference":
            y = np.rint(a.astype(np.float64) * m.astype(np.float64) + zp)
        else:
            scaled = (a.astype(np.float32) * m).astype(np.float32)
            y = np.rint(np.clip(scaled, f32(fmt.qmin - zp), f32(fmt.qmax - zp))) + zp
    y = np.clip(y, fmt.qmin, fmt.qmax).astype(np.int64)
    return (y & ((1 << fmt.bits) - 1)).astype(code_dtype(fmt.bits))
