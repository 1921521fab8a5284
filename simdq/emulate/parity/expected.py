"""Which convention each reference implements, by library version: the table the tests hold the
installed references to, and that `simdq parity refs` compares its findings with.

Each row: library, a glob on reference ids, a version range, and options that the convention must
have. A reference's expected convention is the one candidate that has the options of every row
matching it (later rows override earlier ones, key by key). A version that no row covers is outside
the table: its behaviour is unknown until someone runs `simdq parity refs` and adds a row.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from .conventions import Convention, parse_options
from .refs.base import Reference
from .versions import in_range


@dataclass(frozen=True)
class Expectation:
    library: str
    references: str  # glob on reference ids
    versions: str  # ">=2.13,<2.14"; "" for any version
    options: str  # "scale_op=reciprocal_fma"
    why: str = ""


TABLE: tuple[Expectation, ...] = (
    # integer GEMM requantization (oracles.md): onnxruntime's MlasRequantizeOutput; fbgemm / x86 the same
    Expectation("onnxruntime", "onnxruntime: QLinearMatMul *", ">=1.20", "requant=onnxruntime"),
    Expectation("onnx", "onnx: reference QLinearMatMul *", ">=1.16", "requant=onnx_reference",
                "int32 times float32 is float64 in numpy: one rint of acc * m + zp"),
    Expectation("ai_edge_litert", "ai_edge_litert: * (reference kernels)", ">=2.3", "requant=tflite_reference",
                "BUILTIN_REF rounds the float64 product half away from zero (not the single-rounding fixed point)"),
    Expectation("ai_edge_litert", "ai_edge_litert: * (XNNPACK)", ">=2.3", "requant=onnxruntime"),
    Expectation("larq_compute_engine", "*pad_values=0*", ">=0.16", "padding=zero",
                "LCE pads with +1 bits and corrects the border: exact zero padding"),
    Expectation("larq_compute_engine", "*pad_values=1*", ">=0.16", "padding=plus_one"),
    Expectation("torch", "torch: ops.quantized.linear (fbgemm) *", ">=2.13", "requant=onnxruntime"),
    Expectation("torch", "torch: ops.quantized.linear (x86) *", ">=2.13", "requant=onnxruntime"),
    Expectation("torch", "torch: ops.quantized.linear (qnnpack) *", ">=2.13", "requant=qnnpack",
                "m = f32(f32(sw * sx) * f32(1 / sy))"),
    # ml_dtypes: float32 input
    Expectation("ml_dtypes", "ml_dtypes: astype(*", ">=0.5", "rounding=rne, overflow=inf"),
    Expectation("ml_dtypes", "ml_dtypes: astype(float8_e4m3fn) *", ">=0.5", "overflow=nan"),
    Expectation("ml_dtypes", "ml_dtypes: astype(float8_e*fnuz) *", ">=0.5", "overflow=nan"),
    Expectation("ml_dtypes", "ml_dtypes: astype(float[64]_e*) *", ">=0.5", "overflow=saturate, on_nan=zero",
                "the OCP FP6/FP4 types have neither inf nor NaN: overflow saturates, NaN becomes zero"),
    Expectation("ml_dtypes", "ml_dtypes: astype(float8_e8m0fnu) *", ">=0.5", "rounding=rna, overflow=nan",
                "E8M0 ties go away from zero (gfloat's ties-to-even picks the even code)"),
    # ml_dtypes: float64 input
    Expectation("ml_dtypes", "* from float64", ">=0.5,<0.7", "float64=via_float32",
                "float64 is cast to float32 first: 1 + 2^-4 + 2^-30 lands on the e4m3 tie 1.0625 and goes to 1.0"),
    Expectation("ml_dtypes", "* from float64", ">=0.7", "float64=once", "float64 is rounded once, correctly"),
    # numpy
    Expectation("numpy", "numpy: astype(float16) *", ">=1.26", "rounding=rne, overflow=inf"),
    Expectation("numpy", "* from float64", ">=1.26", "float64=once"),
    # torch casts
    Expectation("torch", "torch: Tensor.to(*", ">=2.13", "rounding=rne, overflow=inf"),
    Expectation("torch", "torch: Tensor.to(float8_e4m3fn) *", ">=2.13", "overflow=saturate",
                "e4m3fn saturates to +-448, inf included (ml_dtypes gives NaN)"),
    Expectation("torch", "torch: Tensor.to(float8_e*fnuz) *", ">=2.13", "overflow=nan"),
    Expectation("torch", "torch: Tensor.to(float8_e8m0fnu) *", ">=2.13", "rounding=rna, overflow=nan"),
    Expectation("torch", "torch: Tensor.to(*) from float64", ">=2.13", "float64=via_float32",
                "float64 tensors are cast through float32"),
    # torch quantized tensors
    Expectation("torch", "torch: quantize_per_tensor(q*int8)", ">=2.13,<2.14", "scale_op=reciprocal_fma",
                "x * inv + z in one fused multiply-add, then rounded"),
    Expectation("torch", "torch: quantize_per_tensor(qint32)", ">=2.13,<2.14", "scale_op=reciprocal_add",
                "x * inv, then + z, each rounded to float32, then rounded to an integer"),
    Expectation("torch", "torch: quantize_per_channel(*)", ">=2.13,<2.14", "scale_op=reciprocal_add"),
    Expectation("torch", "torch: quantize_per_*(q*int8)", ">=2.14", "scale_op=reciprocal",
                "x * inv rounded to an integer, then + z"),
    Expectation("torch", "torch: quantize_per_*(qint32)", ">=2.14", "scale_op=reciprocal_round_add",
                "x * inv rounded to an integer, then + z in float32 (1e9 + 5 stays 1e9)"),
    Expectation("torch", "torch: fake_quantize_*", ">=2.13", "scale_op=reciprocal"),
    # torchao
    Expectation("torchao", "torchao: to_mx(*, FLOOR)", ">=0.18", "scale_rule=floor, rounding=rne"),
    Expectation("torchao", "torchao: to_mx(*, CEIL)", ">=0.18", "scale_rule=ceil, rounding=rne"),
    Expectation("torchao", "torchao: to_mx(*, EVEN)", ">=0.18", "scale_rule=even, rounding=rne"),
    Expectation("torchao", "torchao: to_mx(*, RCEIL)", ">=0.18", "scale_rule=rceil, rounding=rne"),
    Expectation("torchao", "torchao: nvfp4_quantize(*", ">=0.18", "recipe=nvfp4, rounding=rne"),
    # gfloat
    Expectation("gfloat", "gfloat: round_float(*, TiesToEven*", ">=0.5", "rounding=rne"),
    Expectation("gfloat", "gfloat: round_float(*, TiesToAway*", ">=0.5", "rounding=rna"),
    Expectation("gfloat", "gfloat: round_float(*, TowardZero*", ">=0.5", "rounding=rtz"),
    Expectation("gfloat", "gfloat: round_float(*, TowardPositive*", ">=0.5", "rounding=rtp"),
    Expectation("gfloat", "gfloat: round_float(*, TowardNegative*", ">=0.5", "rounding=rtn"),
    Expectation("gfloat", "gfloat: round_float(*, StochasticFastest*", ">=0.5", "rounding=stochastic, sr_bits=4",
                "rounds away iff r + floor(delta * 2^bits) >= 2^bits, the same random bits on both sides"),
)


def rows_for(reference: Reference, version: str) -> list[Expectation]:
    return [row for row in TABLE if row.library == reference.library and fnmatchcase(reference.id, row.references)
            and in_range(version, row.versions)]


def expected_convention(reference: Reference, version: str) -> Convention | None:
    """The table's convention for this reference at this version, or None if the table does not say."""
    options: dict = {}
    for row in rows_for(reference, version):
        options.update(parse_options(row.options))
    if not options:
        return None
    fitting = [c for c in reference.conventions if c.satisfies(options)]
    return fitting[0] if len(fitting) == 1 else None


def table_markdown() -> str:
    """The table as Markdown, as the README's semantics section shows it (a test keeps the two equal)."""
    lines = ["| library | references | versions | convention | why |", "|---|---|---|---|---|"]
    for row in TABLE:
        cells = (row.library, f"`{row.references}`", row.versions or "any", f"`{row.options}`", row.why)
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)
