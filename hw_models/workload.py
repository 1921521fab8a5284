"""What a device model is given: one record per layer, formats described by plain numbers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

OPERAND_FAMILIES = ("float", "int", "binary")

LAYER_KINDS = (
    "conv", "linear", "attention_matmul", "norm", "softmax", "elementwise", "resample", "concat", "embedding",
)
GEMM_KINDS = ("conv", "linear", "attention_matmul")


@dataclass(frozen=True)
class OperandFormat:
    """The number format of a GEMM operand, as far as choosing a compute precision needs it.

    significand_bits, max_exponent and min_exponent describe floats (min_exponent: exponent of the
    smallest nonzero magnitude, a subnormal where the format keeps them); block_size > 0 marks a
    block-scaled format whose scales vary along the reduction and so cannot move to the epilogue.
    full_precision marks the model's own unquantized dtype (fp32, fp16, bf16).
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

    def __post_init__(self):
        if self.family not in OPERAND_FAMILIES:
            raise ValueError(f"operand family must be one of {', '.join(OPERAND_FAMILIES)}, got {self.family!r}")


FP32 = OperandFormat("fp32", "float", 32, True, 24, 127, -149, full_precision=True)
FP16 = OperandFormat("fp16", "float", 16, True, 11, 15, -24, full_precision=True)
BF16 = OperandFormat("bf16", "float", 16, True, 8, 127, -133, full_precision=True)
FULL_PRECISION = {f.name: f for f in (FP32, FP16, BF16)}


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

    def __post_init__(self):
        if self.kind not in LAYER_KINDS:
            raise ValueError(f"layer kind must be one of {', '.join(LAYER_KINDS)}, got {self.kind!r}")

    @property
    def is_gemm(self) -> bool:
        return self.kind in GEMM_KINDS and self.macs > 0

    @property
    def traffic_bytes(self) -> float:
        return self.weight_bytes + self.read_bytes + self.write_bytes
