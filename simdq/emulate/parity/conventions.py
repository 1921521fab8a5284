"""Named conventions: one way of rounding that the emulator implements, named by its options.

A convention is the set of emulator options that reproduce a behaviour (for example
`rounding=rne, overflow=nan, float64=via_float32`); its name lists them in a fixed order, so the same
behaviour always prints the same way and can be typed back as emulator keyword arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

import emulator as em

_ORDER = ("scale_op", "scale_rule", "rounding", "sr_bits", "overflow", "on_nan", "float64", "recipe", "requant", "padding")


@dataclass(frozen=True)
class Convention:
    """A behaviour as emulator options; `options` is a tuple of (key, value) pairs in canonical order."""

    options: tuple[tuple[str, object], ...]

    @classmethod
    def of(cls, **options) -> Convention:
        unknown = set(options) - set(_ORDER)
        if unknown:
            raise ValueError(f"unknown convention option(s) {sorted(unknown)}; known: {', '.join(_ORDER)}")
        return cls(tuple((key, options[key]) for key in _ORDER if key in options))

    @property
    def name(self) -> str:
        return ", ".join(f"{key}={value}" for key, value in self.options)

    def get(self, key, default=None):
        return dict(self.options).get(key, default)

    def satisfies(self, required: dict) -> bool:
        """True when every option in `required` has that value here."""
        mine = dict(self.options)
        return all(key in mine and str(mine[key]) == str(value) for key, value in required.items())


def parse_options(text: str) -> dict:
    """'rounding=rne, overflow=nan' -> {"rounding": "rne", "overflow": "nan"}."""
    options = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in _ORDER:
            raise ValueError(f"convention options are key=value with keys {', '.join(_ORDER)}; got {part!r}")
        options[key.strip()] = value.strip()
    return options


def cast_conventions(fmt: em.FloatFormat, float64_input: bool) -> list[Convention]:
    """Every rounding-to-nearest variant of a cast into `fmt` that the emulator implements.

    Ties even or away; each overflow policy the format family allows; NaN-less formats send NaN to zero
    (the only output a cast can give them); float64 input rounded once or through float32 first.
    """
    overflows = [o for o in em.formats.OVERFLOW_POLICIES if _overflow_allowed(fmt, o)]
    nan = {"on_nan": "zero"} if not fmt.has_nan else {}
    float64 = ("once", "via_float32") if float64_input else (None,)
    out = []
    for rounding in ("rne", "rna"):
        for overflow in overflows:
            for route in float64:
                extra = {"float64": route} if route else {}
                out.append(Convention.of(rounding=rounding, overflow=overflow, **nan, **extra))
    return out


def _overflow_allowed(fmt, overflow) -> bool:
    try:
        em.get_format(fmt, overflow=overflow)
    except ValueError:
        return False
    return True


def encode_with(convention: Convention, x, fmt: em.FloatFormat):
    """em.encode under a cast convention."""
    overrides = {k: convention.get(k) for k in ("overflow", "on_nan") if convention.get(k) is not None}
    return em.encode(x, em.get_format(fmt, **overrides), rounding=convention.get("rounding", "rne"),
                     via_float32=convention.get("float64") == "via_float32")
