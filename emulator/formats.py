"""Number formats: integer, minifloat, binary and block-scaled, each named once.

A format is a frozen dataclass; `get_format` turns a name (a preset or any "eXmY" string) plus
keyword overrides into one, and every derived quantity (max finite, min normal, codes of the special
values) is a property computed from the fields, so there is a single source of truth.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Union

from diagnostics import did_you_mean

from .arguments import integer, shown, typed_fields

SPECIAL_FAMILIES = ("ieee", "fn", "fnuz", "finite")
OVERFLOW_POLICIES = ("saturate", "nan", "inf")
NAN_POLICIES = ("raise", "zero")
BINARY_ZERO_RULES = ("+1", "-1")

_OVERFLOW_ALLOWED = {
    "ieee": ("inf", "saturate", "nan"),
    "fn": ("nan", "saturate"),
    "fnuz": ("nan", "saturate"),
    "finite": ("saturate",),
}
_OVERFLOW_DEFAULT = {"ieee": "inf", "fn": "nan", "fnuz": "nan", "finite": "saturate"}


def _choice(value, allowed, what):
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(map(repr, allowed))}, got {shown(value)}")


@dataclass(frozen=True)
class IntFormat:
    """Two's-complement (signed) or plain binary (unsigned) integer of 1..32 bits.

    `narrow` drops the most negative code, giving the symmetric range -(2^(b-1)-1)..2^(b-1)-1.
    Encoding rounds with the chosen mode and saturates to [qmin, qmax]; codes hold the low `bits`
    bits of the two's-complement value.
    """

    name: str
    bits: int
    signed: bool = True
    narrow: bool = False

    def __post_init__(self):
        typed_fields(self)
        if not isinstance(self.bits, int) or not 1 <= self.bits <= 32:
            raise ValueError(f"integer width must be 1..32 bits, got {shown(self.bits)}")
        if self.narrow and not (self.signed and self.bits >= 2):
            raise ValueError("narrow range needs a signed integer format of at least 2 bits")

    kind = "int"

    @property
    def qmin(self) -> int:
        if not self.signed:
            return 0
        return -(2 ** (self.bits - 1)) + (1 if self.narrow else 0)

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self.signed else 2**self.bits - 1

    @property
    def max_finite(self) -> float:
        return float(self.qmax)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "kind": "int",
            "bits": self.bits,
            "max_finite": self.qmax,
            "min_value": self.qmin,
            "min_normal": None,
            "min_subnormal": None,
            "specials": "none",
            "overflow": "saturate",
        }


@dataclass(frozen=True)
class FloatFormat:
    """Minifloat with `ebits` exponent and `mbits` mantissa bits.

    special:
      ieee    all-ones exponent holds inf (mantissa 0) and NaN (mantissa != 0), as IEEE 754.
      fn      no inf; only the all-ones code (per sign) is NaN (OCP FP8 E4M3).
      fnuz    no inf, no -0; the code 1000...0 is the single NaN (e4m3fnuz, e5m2fnuz).
      finite  no inf, no NaN (OCP FP6 / FP4).
    subnormals=False removes the subnormal values: inputs below the smallest normal round between zero
    and the smallest normal with the rounding mode, and subnormal codes decode as zero.
    overflow: what a finite input beyond max finite (after rounding) and an infinite input become.
    on_nan: for formats without NaN, whether a NaN input raises or becomes zero (ml_dtypes' behaviour,
    which flips the sign: +NaN -> -0).
    signed=False with has_zero=False describes E8M0: exponent field 0 is the normal value 2^-bias,
    and negative or zero inputs encode as NaN.
    """

    name: str
    ebits: int
    mbits: int
    bias: int
    special: str = "ieee"
    subnormals: bool = True
    overflow: str = ""
    signed: bool = True
    has_zero: bool = True
    on_nan: str = "raise"

    kind = "float"

    def __post_init__(self):
        typed_fields(self)
        if not isinstance(self.ebits, int) or not 1 <= self.ebits <= 8:
            raise ValueError(f"exponent bits must be 1..8, got {shown(self.ebits)}")
        if not isinstance(self.mbits, int) or not 0 <= self.mbits <= 10:
            raise ValueError(f"mantissa bits must be 0..10, got {shown(self.mbits)}")
        if not isinstance(self.bias, int):
            raise ValueError(f"bias must be an integer, got {shown(self.bias)}")
        _choice(self.special, SPECIAL_FAMILIES, "special-value family")
        _choice(self.on_nan, NAN_POLICIES, "on_nan")
        if not self.overflow:
            object.__setattr__(self, "overflow", _OVERFLOW_DEFAULT[self.special])
        _choice(self.overflow, _OVERFLOW_ALLOWED[self.special], f"overflow policy for the {self.special!r} family")
        if self.special == "ieee" and self.mbits == 0:
            raise ValueError("the 'ieee' family needs at least 1 mantissa bit to encode NaN; use 'fn' or 'finite'")
        if not self.signed and not self.has_nan:
            raise ValueError("an unsigned minifloat needs a NaN code for negative inputs: use special='fn'")
        if not self.has_zero and (self.signed or self.subnormals):
            raise ValueError("has_zero=False is only defined for unsigned formats without subnormals (E8M0)")
        if self.max_code_magnitude < 1:
            raise ValueError(f"e{self.ebits}m{self.mbits} {self.special} has no finite nonzero value")
        if self.emax > 127 or self.emin - self.mbits < -149:
            raise ValueError(
                f"bias {self.bias} puts the values of e{self.ebits}m{self.mbits} outside float32 "
                f"(exponents {self.emin - self.mbits}..{self.emax}; allowed -149..127)"
            )

    # ---- layout -------------------------------------------------------------------------
    @property
    def bits(self) -> int:
        return self.ebits + self.mbits + (1 if self.signed else 0)

    @property
    def magnitude_bits(self) -> int:
        return self.ebits + self.mbits

    @property
    def sign_mask(self) -> int:
        return 1 << self.magnitude_bits if self.signed else 0

    @property
    def emin(self) -> int:
        """Exponent of the smallest normal number."""
        return 1 - self.bias if self.has_zero else -self.bias

    @property
    def max_code_magnitude(self) -> int:
        all_ones = (1 << self.magnitude_bits) - 1
        if self.special == "ieee":
            return ((1 << self.ebits) - 1 << self.mbits) - 1
        if self.special == "fn":
            return all_ones - 1
        return all_ones

    @property
    def emax(self) -> int:
        return (self.max_code_magnitude >> self.mbits) - self.bias

    # ---- special values -----------------------------------------------------------------
    @property
    def has_inf(self) -> bool:
        return self.special == "ieee"

    @property
    def has_nan(self) -> bool:
        return self.special != "finite"

    @property
    def has_negative_zero(self) -> bool:
        return self.signed and self.special != "fnuz"

    @property
    def nan_code(self) -> int:
        """Code of a positive NaN (the canonical quiet NaN for ieee); -1 when there is none."""
        if self.special == "ieee":
            return ((1 << self.ebits) - 1 << self.mbits) | (1 << (self.mbits - 1))
        if self.special == "fn":
            return (1 << self.magnitude_bits) - 1
        if self.special == "fnuz":
            return self.sign_mask
        return -1

    @property
    def inf_code(self) -> int:
        return ((1 << self.ebits) - 1 << self.mbits) if self.has_inf else -1

    # ---- values -------------------------------------------------------------------------
    def magnitude_value(self, code_magnitude: int) -> Fraction:
        """Exact value of a non-special magnitude code."""
        exp_field = code_magnitude >> self.mbits
        mantissa = code_magnitude & ((1 << self.mbits) - 1)
        if not self.has_zero:
            return Fraction(2) ** (exp_field - self.bias) * (1 + Fraction(mantissa, 1 << self.mbits))
        if exp_field == 0:
            if not self.subnormals:
                return Fraction(0)
            return Fraction(2) ** self.emin * Fraction(mantissa, 1 << self.mbits)
        return Fraction(2) ** (exp_field - self.bias) * (1 + Fraction(mantissa, 1 << self.mbits))

    @property
    def max_finite(self) -> float:
        return float(self.magnitude_value(self.max_code_magnitude))

    @property
    def min_normal(self) -> float:
        return float(Fraction(2) ** self.emin)

    @property
    def min_subnormal(self) -> float | None:
        if not self.has_zero or not self.subnormals or self.mbits == 0:
            return None
        return float(Fraction(2) ** (self.emin - self.mbits))

    def describe(self) -> dict:
        specials = []
        if self.has_inf:
            specials.append("+-inf")
        if self.has_nan:
            specials.append("NaN" if self.special != "fnuz" else "NaN=0x%X" % self.nan_code)
        if self.has_negative_zero:
            specials.append("-0")
        if not self.has_zero:
            specials.append("no zero")
        if not self.signed:
            specials.append("unsigned")
        return {
            "name": self.name,
            "kind": "float",
            "bits": self.bits,
            "max_finite": self.max_finite,
            "min_value": -self.max_finite if self.signed else self.min_normal,
            "min_normal": self.min_normal,
            "min_subnormal": self.min_subnormal,
            "specials": ", ".join(specials) or "none",
            "overflow": self.overflow,
        }


@dataclass(frozen=True)
class BinaryFormat:
    """+-1 stored as one bit: +1 -> 0, -1 -> 1, so dot(a, w) = K - 2 * popcount(a XOR w).

    zero: the value a zero (or -0) input takes; "+1" matches inference engines (Larq: bit = x < 0).
    NaN inputs follow x < 0 being false, i.e. become +1 under either rule.
    """

    name: str = "binary"
    zero: str = "+1"

    kind = "binary"
    bits = 1
    max_finite = 1.0

    def __post_init__(self):
        typed_fields(self)
        _choice(self.zero, BINARY_ZERO_RULES, "binary zero rule")

    def describe(self) -> dict:
        return {
            "name": self.name,
            "kind": "binary",
            "bits": 1,
            "max_finite": 1.0,
            "min_value": -1.0,
            "min_normal": None,
            "min_subnormal": None,
            "specials": f"0 -> {self.zero}",
            "overflow": "sign",
        }


MAX_BINARY_BASES = 8


@dataclass(frozen=True)
class ResidualBinaryFormat:
    """A weight as a sum of `bases` scaled +-1 planes, w ~ sum_j alpha_j * s_j (residual binarization: s_1 =
    sign(w), s_j = sign of what the earlier planes leave), with one alpha per basis and output channel.

    BinaryDM's Evolvable-Basis Binarizer with two bases (its early "W1.1" model keeps them in the head and tail;
    ours_util.py BNNConv2d/BNNLinear with order=2) is `binary2`. An element's code holds one sign bit per plane,
    bit j set where plane j is -1 (as `binary`'s code), so a code takes `bases` bits. The codes mean nothing
    without their channel's scales: emulator.residual_binarize makes both, emulator.residual_dequantize reads
    them; elementwise encode/decode refuse the format. Weights only: no activation format has per-channel bases.
    """

    name: str = "binary2"
    bases: int = 2
    zero: str = "+1"

    kind = "residual_binary"
    max_finite = None

    def __post_init__(self):
        typed_fields(self)
        integer(self.bases, "bases", 2, MAX_BINARY_BASES)
        _choice(self.zero, BINARY_ZERO_RULES, "binary zero rule")

    @property
    def bits(self) -> int:
        return self.bases

    @property
    def plane(self) -> "BinaryFormat":
        """The format of one plane's codes."""
        return BinaryFormat("binary", self.zero)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "kind": "residual_binary",
            "bits": self.bases,
            "max_finite": None,
            "min_value": None,
            "min_normal": None,
            "min_subnormal": None,
            "specials": f"{self.bases} +-1 planes x {self.bases} per-channel scales (weights only); 0 -> {self.zero}",
            "overflow": "sign",
        }


MX_SCALE_RULES = ("floor", "rceil", "ceil", "even")


@dataclass(frozen=True)
class BlockFormat:
    """Blocks of `block_size` elements sharing one scale (OCP MX, NVFP4).

    The element format is a FloatFormat or an IntFormat; `element_unit` is the value of element code
    1 for MXINT8 (2^-6: MXINT8 elements are int8 / 64). `scale_rule` applies to E8M0 scales (MX);
    NVFP4 uses an E4M3 scale amax / 6 and an optional float32 tensor scale.
    """

    name: str
    element: Union[FloatFormat, IntFormat]
    scale: FloatFormat
    block_size: int
    scale_rule: str = "floor"
    tensor_scale: bool = False

    kind = "block"

    def __post_init__(self):
        typed_fields(self)
        if not isinstance(self.block_size, int) or self.block_size < 1:
            raise ValueError(f"block size must be a positive integer, got {shown(self.block_size)}")
        _choice(self.scale_rule, MX_SCALE_RULES + ("amax",), "block scale rule")
        if self.tensor_scale and self.scale.name != "e4m3fn":
            raise ValueError("a float32 tensor scale is defined only for NVFP4-style E4M3 block scales")

    @property
    def is_mx(self) -> bool:
        return self.scale.name == "e8m0"

    @property
    def bits(self) -> int:
        return self.element.bits

    @property
    def bits_per_element(self) -> float:
        return self.element.bits + self.scale.bits / self.block_size

    @property
    def element_emax(self) -> int:
        """Exponent of the element format's largest normal (OCP MX's emax_elem)."""
        if isinstance(self.element, IntFormat):
            return 0
        return self.element.emax

    @property
    def max_finite(self) -> float:
        return self.element.max_finite

    def describe(self) -> dict:
        return {
            "name": self.name,
            "kind": "block",
            "bits": self.element.bits,
            "max_finite": self.element.max_finite * (1 / 64 if isinstance(self.element, IntFormat) else 1),
            "min_value": None,
            "min_normal": None,
            "min_subnormal": None,
            "specials": (
                f"{self.element.name} x {self.block_size} + {self.scale.name} scale"
                f"{' + fp32 tensor scale' if self.tensor_scale else ''}; "
                f"{self.bits_per_element:g} bits/element"
            ),
            "overflow": "saturate",
        }


Format = Union[IntFormat, FloatFormat, BinaryFormat, ResidualBinaryFormat, BlockFormat]


# ---- presets ---------------------------------------------------------------------------------
def _ieee_bias(ebits: int) -> int:
    return (1 << (ebits - 1)) - 1


def _float(name, e, m, special="ieee", bias=None, **kw) -> FloatFormat:
    if bias is None:
        bias = _ieee_bias(e) + (1 if special == "fnuz" else 0)
    return FloatFormat(name, e, m, bias, special, **kw)


def _build_presets() -> dict:
    presets: dict = {}
    for b in range(1, 9):
        presets[f"int{b}"] = IntFormat(f"int{b}", b, signed=True)
        presets[f"uint{b}"] = IntFormat(f"uint{b}", b, signed=False)
    for fmt in (
        _float("e4m3fn", 4, 3, "fn"),
        _float("e5m2", 5, 2, "ieee"),
        _float("e4m3fnuz", 4, 3, "fnuz"),
        _float("e5m2fnuz", 5, 2, "fnuz"),
        _float("e4m3b11fnuz", 4, 3, "fnuz", bias=11),
        _float("e3m4", 3, 4, "ieee"),
        _float("e4m3", 4, 3, "ieee"),
        _float("e2m3", 2, 3, "finite"),
        _float("e3m2", 3, 2, "finite"),
        _float("e2m1", 2, 1, "finite"),
        FloatFormat("e8m0", 8, 0, 127, "fn", subnormals=False, signed=False, has_zero=False),
        _float("bf16", 8, 7, "ieee"),
        _float("fp16", 5, 10, "ieee"),
    ):
        presets[fmt.name] = fmt
    presets["binary"] = BinaryFormat("binary")
    presets["binary2"] = ResidualBinaryFormat("binary2", 2)
    e8m0 = presets["e8m0"]
    for name, element in (
        ("mxfp8_e4m3", presets["e4m3fn"]),
        ("mxfp8_e5m2", presets["e5m2"]),
        ("mxfp6_e2m3", presets["e2m3"]),
        ("mxfp6_e3m2", presets["e3m2"]),
        ("mxfp4", presets["e2m1"]),
        ("mxint8", IntFormat("int8", 8, signed=True, narrow=True)),
    ):
        presets[name] = BlockFormat(name, element, e8m0, 32, "floor")
    presets["nvfp4"] = BlockFormat("nvfp4", presets["e2m1"], presets["e4m3fn"], 16, "amax", tensor_scale=True)
    return presets


PRESETS = _build_presets()
ALIASES = {
    "fp8_e4m3": "e4m3fn", "fp8_e5m2": "e5m2", "float8_e4m3fn": "e4m3fn", "float8_e5m2": "e5m2",
    "fp6_e2m3": "e2m3", "fp6_e3m2": "e3m2", "fp4": "e2m1", "fp4_e2m1": "e2m1",
    "bfloat16": "bf16", "float16": "fp16", "half": "fp16", "ue8m0": "e8m0", "ebb2": "binary2",
}

_EXMY = re.compile(r"^e(\d+)m(\d+)(?:b(-?\d+))?(fnuz|fn|ieee|finite)?$")


def _parse_exmy(name: str) -> FloatFormat:
    match = _EXMY.match(name)
    if not match:
        raise ValueError(
            f"unknown format {name!r}{did_you_mean(name, sorted(PRESETS) + sorted(ALIASES))}: use a preset "
            f"({', '.join(sorted(PRESETS))}) or 'e<E>m<M>[b<bias>][fn|fnuz|ieee|finite]'"
        )
    e, m, bias, special = match.groups()
    if not 1 <= int(e) <= 8:
        raise ValueError(f"{shown(name)}: exponent bits must be 1..8, got {int(e)}")
    special = special or "ieee"
    bias = int(bias) if bias is not None else None
    return _float(name, int(e), int(m), special, bias=bias)


def get_format(spec, **overrides) -> Format:
    """Return the format named `spec` (or `spec` itself if it is a format), with field overrides.

    Examples: get_format("e4m3fn", overflow="saturate"); get_format("e3m3", special="finite");
    get_format("int4", narrow=True); get_format("mxfp8_e4m3", scale_rule="rceil").
    """
    if isinstance(spec, (IntFormat, FloatFormat, BinaryFormat, ResidualBinaryFormat, BlockFormat)):
        fmt = spec
    elif isinstance(spec, str):
        key = ALIASES.get(spec.lower(), spec.lower())
        if key in PRESETS:
            fmt = PRESETS[key]
        elif re.match(r"^binary\d+$", key):
            fmt = ResidualBinaryFormat(key, integer(int(key[6:]), f"{key}: bases", 2, MAX_BINARY_BASES))
        elif re.match(r"^u?int\d+$", key):
            signed = not key.startswith("u")
            fmt = IntFormat(key, int(key.lstrip("uint")), signed=signed)
        else:
            fmt = _parse_exmy(key)
    else:
        raise ValueError(f"a format must be a name or a format object, got {type(spec).__name__}")
    if not overrides:
        return fmt
    check_options(fmt, overrides)
    if isinstance(fmt, FloatFormat) and "ebits" in overrides:
        overrides["ebits"] = integer(overrides["ebits"], "ebits", 1, 8)
    if isinstance(fmt, FloatFormat) and "special" in overrides and "overflow" not in overrides:
        overrides["overflow"] = ""  # the new family's default
    if isinstance(fmt, FloatFormat) and "ebits" in overrides and "bias" not in overrides:
        overrides["bias"] = _ieee_bias(overrides["ebits"])
    return replaced(fmt, overrides)


def check_options(spec, overrides: dict) -> None:
    """Reject overrides that name no field of the frozen spec (formats, accumulators)."""
    fields = {f.name for f in dataclasses.fields(spec)} - {"name"}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"{spec.name} has no option {', '.join(unknown)}; allowed: {', '.join(sorted(fields))}")


def replaced(spec, overrides: dict):
    """The spec with fields replaced, named after them: e4m3fn[overflow=saturate], sm90_fp8[split_k=3]."""
    label = ",".join(f"{k}={v}" for k, v in sorted(overrides.items()) if v != "")
    return dataclasses.replace(spec, name=f"{spec.name}[{label}]", **overrides)


def list_formats() -> list:
    return [PRESETS[name] for name in PRESETS]
