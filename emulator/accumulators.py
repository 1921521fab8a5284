"""Accumulators: how a GEMM or convolution sums its products, each rule named once.

kind = "exact"
  Integer operands: int64, and `matmul` raises if the operands could overflow it. Float operands: the products
  are summed exactly (a Kulisch accumulator) and rounded once, to nearest even, to float32.
kind = "int"  (int<P>, P = 8..64)
  overflow="wrap": two's complement modulo 2^P; order-independent (onnxruntime's int32, torch's quantized engines).
  overflow="saturate": every partial sum is clamped to [-2^(P-1), 2^(P-1) - 1], in K-ascending order (the order
  of `reference.gemm.reference_dot`); with one chunk of K this is H100's `torch._int_mm`, which saturates.
kind = "float32"
  order="sequential": float32 adds in K order, each product exact in float32 first (ml_dtypes' `np.dot` on
  float8 arrays). order="pairwise": a balanced tree, halves split at floor(n / 2), each add in float32.
kind = "tensor_core"  (the family measured on Hopper; tests/data/tensor_cores has the GPU's bit patterns)
  Per MMA instruction of `chunk` products, the accumulator and the products are aligned to the largest exponent
  among them (a product's exponent is the sum of its operands' exponents, subnormals at emin, so its significand
  lies in [1, 4)), each is truncated toward zero to `fraction_bits` bits below that exponent, they are summed
  exactly and the sum is truncated toward zero to `accumulator_mbits` mantissa bits (fp32's exponent range).
  With promote_every = P > 0 the partial sum is added into a float32 register (round to nearest even) after
  every P elements of K and restarted from zero (cuBLAS's FP8 kernels without fast accumulation).
  split_k = S > 1 reproduces cuBLAS's split-K kernels: K is cut into S parts of ceil(K/split_tile / S) tiles of
  `split_tile`, each part accumulated on its own and the parts added in float32 in order (cuBLAS's
  splitKreduce); which calls split is cuBLAS's heuristic, shown by the kernel name (`..._splitK_...`).

Presets with the hardware in the name were fitted to bit patterns recorded on an H200 (the H100's tensor
cores) with scripts/record-tensor-core-vectors: bit-exact on every recorded case (tests/emulator/
test_tensor_cores.py), and agree bit for bit with MMA-Sim's wgmma on chains along K (tests/test_mmasim.py).
`sm80_fp16` and `sm80_bf16` follow MMA-Sim's Ampere mma (24 fraction bits, two groups of 8 per instruction),
checked against MMA-Sim only: no Ampere GPU was measured.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from diagnostics import did_you_mean

from .arguments import shown, typed_fields
from .formats import check_options, replaced

ACCUMULATOR_KINDS = ("exact", "int", "float32", "tensor_core")
INT_OVERFLOW = ("wrap", "saturate")
FLOAT32_ORDERS = ("sequential", "pairwise")


@dataclass(frozen=True)
class Accumulator:
    """One accumulation rule; see the module docstring for what each kind computes."""

    name: str
    kind: str
    bits: int = 64
    overflow: str = "wrap"
    order: str = "sequential"
    chunk: int = 0
    fraction_bits: int = 0
    accumulator_mbits: int = 23
    promote_every: int = 0
    split_k: int = 1
    split_tile: int = 128

    def __post_init__(self):
        typed_fields(self)
        if self.kind not in ACCUMULATOR_KINDS:
            raise ValueError(f"accumulator kind must be one of {', '.join(ACCUMULATOR_KINDS)}, got {shown(self.kind)}")
        if self.kind == "int":
            if not isinstance(self.bits, int) or not 8 <= self.bits <= 64:
                raise ValueError(f"an integer accumulator has 8..64 bits, got {shown(self.bits)}")
            if self.overflow not in INT_OVERFLOW:
                raise ValueError(f"integer overflow must be one of {', '.join(INT_OVERFLOW)}, got {shown(self.overflow)}")
        if self.kind == "float32" and self.order not in FLOAT32_ORDERS:
            raise ValueError(f"float32 order must be one of {', '.join(FLOAT32_ORDERS)}, got {shown(self.order)}")
        if self.kind == "tensor_core":
            if not (isinstance(self.chunk, int) and 1 <= self.chunk <= 256):
                raise ValueError(f"a tensor-core chunk (products per MMA) must be 1..256, got {shown(self.chunk)}")
            if not (isinstance(self.fraction_bits, int) and 1 <= self.fraction_bits <= 40):
                raise ValueError(f"fraction_bits must be 1..40, got {shown(self.fraction_bits)}")
            if not (isinstance(self.accumulator_mbits, int) and 1 <= self.accumulator_mbits <= 23):
                raise ValueError(f"accumulator_mbits must be 1..23 (an fp32 register at most), "
                                 f"got {self.accumulator_mbits!r}")
            if not (isinstance(self.promote_every, int) and self.promote_every >= 0
                    and self.promote_every % self.chunk == 0):
                raise ValueError(f"promote_every must be 0 or a multiple of the chunk ({self.chunk}), "
                                 f"got {self.promote_every!r}")
        for field in ("split_k", "split_tile"):
            value = getattr(self, field)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{field} must be a positive integer, got {shown(value)}")
        if self.split_k > 1 and self.kind != "tensor_core":
            raise ValueError("split_k models cuBLAS's split-K reduction of tensor-core GEMMs: use it with a "
                             "tensor_core accumulator")

    @property
    def min_value(self) -> int:
        return -(1 << (self.bits - 1))

    @property
    def max_value(self) -> int:
        return (1 << (self.bits - 1)) - 1

    def describe(self) -> str:
        if self.kind == "exact":
            return "exact (int64 for integers; exact sum rounded once to float32 for floats)"
        if self.kind == "int":
            return f"int{self.bits}, {self.overflow} on overflow" + (", K ascending" if self.overflow == "saturate"
                                                                      else "")
        if self.kind == "float32":
            return f"float32 adds, {self.order}"
        promote = f", float32 promotion every {self.promote_every}" if self.promote_every else ", no promotion"
        split = f", split-K {self.split_k} x {self.split_tile}" if self.split_k > 1 else ""
        return (f"tensor core: {self.chunk} products per MMA aligned and truncated to {self.fraction_bits} "
                f"fraction bits, sum truncated to e8m{self.accumulator_mbits}{promote}{split}")


def _int(bits: int, overflow: str) -> Accumulator:
    return Accumulator(f"int{bits}" + ("_saturate" if overflow == "saturate" else ""), "int", bits, overflow)


def _tensor_core(name, chunk, fraction_bits, accumulator_mbits, promote_every=0) -> Accumulator:
    return Accumulator(name, "tensor_core", chunk=chunk, fraction_bits=fraction_bits,
                       accumulator_mbits=accumulator_mbits, promote_every=promote_every)


ACCUMULATORS = {
    acc.name: acc
    for acc in (
        Accumulator("exact", "exact"),
        _int(32, "wrap"), _int(32, "saturate"), _int(16, "wrap"), _int(16, "saturate"),
        Accumulator("fp32", "float32", order="sequential"),
        Accumulator("fp32_pairwise", "float32", order="pairwise"),
        # Hopper FP8 wgmma: k = 32 per instruction, 13 fraction bits, e8m13 result; cuBLAS's default promotes
        # into fp32 every 128 (bit-exact on the H200's patterns, tests/data/tensor_cores).
        _tensor_core("sm90_fp8", 32, 13, 13, promote_every=128),
        _tensor_core("sm90_fp8_fast", 32, 13, 13),
        # Hopper bf16/fp16 wgmma: k = 16, 25 fraction bits, result truncated to fp32 (bit-exact, same data).
        _tensor_core("sm90_bf16", 16, 25, 23),
        _tensor_core("sm90_fp16", 16, 25, 23),
        # Ampere mma.sync m16n8k16 fp16 / bf16: two groups of 8 per instruction, 24 fraction bits (MMA-Sim's
        # model; bit-exact on its chains, tests/data/mmasim; not measured on an Ampere GPU here).
        _tensor_core("sm80_fp16", 8, 24, 23),
        _tensor_core("sm80_bf16", 8, 24, 23),
    )
}
_INT_NAME = re.compile(r"^int(\d+)(?:_(wrap|saturate))?$")


def list_accumulators() -> list:
    return list(ACCUMULATORS.values())


def get_accumulator(spec, **overrides) -> Accumulator:
    """The accumulator named `spec` (a preset, or int<P>[_wrap|_saturate] for P = 8..64), with field overrides.

    Examples: get_accumulator("int20_saturate"); get_accumulator("sm90_fp8", split_k=3).
    """
    if isinstance(spec, Accumulator):
        acc = spec
    elif isinstance(spec, str):
        key = spec.strip().lower()
        match = _INT_NAME.match(key)
        if key in ACCUMULATORS:
            acc = ACCUMULATORS[key]
        elif match and 8 <= int(match.group(1)) <= 64:
            acc = _int(int(match.group(1)), match.group(2) or "wrap")
        else:
            raise ValueError(f"unknown accumulator {shown(spec)}{did_you_mean(key, sorted(ACCUMULATORS))}; allowed: "
                             f"{', '.join(ACCUMULATORS)}, or int<P>[_wrap|_saturate] for P = 8..64")
    else:
        raise ValueError(f"an accumulator must be a name or an Accumulator, got {type(spec).__name__}")
    if not overrides:
        return acc
    check_options(acc, overrides)
    return replaced(acc, overrides)
