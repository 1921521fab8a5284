"""What a device model is given: one record per layer, formats described by plain numbers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

OPERAND_FAMILIES = ("float", "int", "binary")

LAYER_KINDS = (
    "conv", "linear", "attention_matmul", "norm", "softmax", "elementwise", "resample", "concat", "embedding",
    "quantize", "dequantize",
)
GEMM_KINDS = ("conv", "linear", "attention_matmul")


@dataclass(frozen=True)
class OperandFormat:
    """The number format of a GEMM operand, as far as choosing a compute precision needs it.

    significand_bits, max_exponent and min_exponent describe floats (min_exponent: exponent of the
    smallest nonzero magnitude, a subnormal where the format keeps them); block_size > 0 marks a
    block-scaled format whose scales vary along the reduction and so cannot move to the epilogue.
    full_precision marks the model's own unquantized dtype (fp32, fp16, bf16). planes > 1: a weight that is
    the sum of that many scaled +-1 planes (residual binarization); bits then describe one plane, and every
    engine runs one GEMM pass per plane (LayerWork.macs already counts them).
    """

    name: str
    family: str
    bits: int
    signed: bool = True
    significand_bits: int = 0
    max_exponent: int = 0
    min_exponent: int = 0
    block_size: int = 0
    full_precision: bool = False
    planes: int = 1

    def __post_init__(self):
        if self.family not in OPERAND_FAMILIES:
            raise ValueError(f"operand family must be one of {', '.join(OPERAND_FAMILIES)}, got {self.family!r}")


FP32 = OperandFormat("fp32", "float", 32, True, 24, 127, -149, full_precision=True)
FP16 = OperandFormat("fp16", "float", 16, True, 11, 15, -24, full_precision=True)
BF16 = OperandFormat("bf16", "float", 16, True, 8, 127, -133, full_precision=True)
FULL_PRECISION = {f.name: f for f in (FP32, FP16, BF16)}
INT32_ACCUMULATOR = OperandFormat("int32", "int", 32)


def layout_transform_bytes(precision, channels_first_bytes: float, channels_last_bytes: float) -> float:
    """What a GPU's convolution kernels at compute `precision` transform of operands stored channels-first or
    channels-last: cuDNN's full-fp32 kernels read NCHW (`nchwkcrs_nchw` in reports/gpu-kernel-census-h100.md), so
    they transform those stored channels-last; its tensor-core kernels read NHWC, so those stored channels-first."""
    return channels_last_bytes if precision == FP32.name else channels_first_bytes


@dataclass(frozen=True)
class LayerWork:
    """One layer's work on a device.

    kind: one of LAYER_KINDS. macs: multiply-accumulates of the GEMM (0 for other kinds).
    vector_flops: arithmetic outside GEMMs (norms, softmax, elementwise, GEMM epilogues).
    weight_bytes, read_bytes, write_bytes: DRAM traffic of the weights as stored and of the activations.
    kernels: kernel launches the layer needs (0: fused into another layer's kernel). weight_format is None for layers without weights; for an
    activation x activation matmul both operands take activation_format. vector_dtype: the dtype the
    non-GEMM arithmetic runs in.
    """

    name: str
    kind: str
    macs: int
    vector_flops: int
    weight_bytes: float
    read_bytes: float
    write_bytes: float
    kernels: int
    activation_format: OperandFormat
    weight_format: Optional[OperandFormat] = None
    vector_dtype: str = "fp32"
    gemm_dims: tuple = ()  # (batch, M, N, K): batch x (M x K) @ (K x N), when known
    tf32: bool = False  # fp32 operands may run on TF32 tensor cores (the runtime allows it for this kind)
    window: int = 0  # a convolution's kernel window (kh x kw; 1: pointwise), 0 where unknown or not a conv
    stride: int = 1  # a convolution's stride (a downsampling convolution's: 2)
    parallel_rows: int = 0  # a norm's independent rows (GroupNorm: batch x groups), 0 where unknown
    input_elements: int = 0  # elements of the GEMM's quantizable input (what a packer reads), 0 where unknown
    relayout_kernels: int = 0  # of `kernels`: copies of a non-contiguous input into contiguous memory
    relayout_bytes: float = 0.0  # of the traffic: what those copies read and write
    strided_kernels: int = 0  # of `kernels`: ops reading another memory order than they write (not copies)
    strided_bytes: float = 0.0  # of the traffic: what those ops read and write
    fused_attention: str = ""  # "qk" or "av": a half of one fused attention kernel (flash SDPA); "" otherwise
    # of a convolution's traffic: its operands stored channels-first (an NCHW input and the output it gets back,
    # OIHW weights), which a GPU's NHWC convolution kernels transform on every call, and those stored channels-last,
    # which its NCHW kernels transform (layout_transform_bytes)
    channels_first_bytes: float = 0.0
    channels_last_bytes: float = 0.0
    # GPU memory free for a kernel's workspace while the layer runs (cuDNN takes an FFT only where its workspace fits)
    free_memory_bytes: float = float("inf")
    batch: int = 0  # a convolution's batch (0 where unknown): gemm_dims fold it into M with the pixels

    def __post_init__(self):
        if self.kind not in LAYER_KINDS:
            raise ValueError(f"layer kind must be one of {', '.join(LAYER_KINDS)}, got {self.kind!r}")

    def layout_transform_bytes(self, precision) -> float:
        """Of a convolution's traffic, the operands a GPU's kernels at compute `precision` transform on every call."""
        return layout_transform_bytes(precision, self.channels_first_bytes, self.channels_last_bytes)

    @property
    def is_gemm(self) -> bool:
        return self.kind in GEMM_KINDS and self.macs > 0

    @property
    def traffic_bytes(self) -> float:
        return self.weight_bytes + self.read_bytes + self.write_bytes


# Dynamic activation quantization as eager PyTorch runs it (simdq.microbench times the same sequence, so the
# calibrated class of each is fitted on exactly this work): |x| (read and write x), amax (read), the scale (two
# tiny kernels), x / scale (read and write), for integers round and clamp (read and write each), then the cast
# (read x, write the codes).
READ_WRITE_PASSES = {"float": 2, "int": 4}
QUANTIZE_KERNELS = {"float": 6, "int": 8}


def quantize_work(name: str, elements: int, source_bytes: int, target: OperandFormat,
                  vector_dtype: str = "fp32") -> LayerWork:
    """The kernels that quantize `elements` activations of `source_bytes` each to `target` at run time."""
    family = "int" if target.family == "int" else "float"
    passes = READ_WRITE_PASSES[family]
    read = elements * source_bytes * (passes + 2)
    write = elements * source_bytes * passes + elements * max(1, target.bits // 8)
    return LayerWork(f"{name}.quantize", "quantize", 0, elements * (passes + 1), 0.0, float(read), float(write),
                     QUANTIZE_KERNELS[family], target, None, vector_dtype)


# What follows an integer GEMM that returns int32 (torch._int_mm): x scale (int32 -> fp32), the cast to the
# model's dtype, the bias add: one kernel each.
DEQUANTIZE_KERNELS = 3


def dequantize_work(name: str, outputs: int, output_bytes: int, vector_dtype: str = "fp32") -> LayerWork:
    read = outputs * (4 + 4 + output_bytes)
    write = outputs * (4 + output_bytes + output_bytes)
    return LayerWork(f"{name}.dequantize", "dequantize", 0, 2 * outputs, 0.0, float(read), float(write),
                     DEQUANTIZE_KERNELS, INT32_ACCUMULATOR, None, vector_dtype)


# Weight-only quantization run by eager PyTorch: the stored codes cast to the activations' dtype (read the
# codes, write the weights), then multiplied by their scales (read and write): two kernels every forward.
WEIGHT_DEQUANTIZE_KERNELS = 2


def weight_dequantize_work(name: str, weights: int, stored_bytes: float, model_bytes: int,
                           vector_dtype: str = "fp32") -> LayerWork:
    read = stored_bytes + weights * model_bytes
    write = 2 * weights * model_bytes
    return LayerWork(f"{name}.dequantize_weights", "elementwise", 0, 2 * weights, 0.0, float(read), float(write),
                     WEIGHT_DEQUANTIZE_KERNELS, FULL_PRECISION.get(vector_dtype, FP32), None, vector_dtype)
