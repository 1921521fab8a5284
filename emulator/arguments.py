"""Argument checks of the public API: a wrong type or range is a ValueError saying what is allowed.

Without them, `pack(bits=4.0)` fails inside Numba's type inference, `get_format("int8", narrow="yes")` is
accepted as truthy and `unpack` of a value of 256 wraps to 0.
"""

from __future__ import annotations

import dataclasses
import numbers

import numpy as np


def shown(value) -> str:
    """A value as an error message quotes it: on one line and short (an array by its shape and dtype)."""
    if isinstance(value, np.ndarray) and value.size > 4:
        return f"an array of shape {value.shape} ({value.dtype})"
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


def integer(value, name: str, low: int | None = None, high: int | None = None) -> int:
    """`value` as an int (Python or numpy integer, never a bool or a float), within [low, high]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer{_range(low, high)}, got {shown(value)}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be an integer{_range(low, high)}, got {value}")
    return value


def flag(value, name: str) -> bool:
    """True or False only: "no" is truthy, and a flag must not silently read it as yes."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {shown(value)}")
    return bool(value)


def text(value, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {shown(value)}")
    return value


def axis(value, name: str, ndim: int) -> int:
    """An axis of an array of `ndim` dimensions (negative counts from the end)."""
    if ndim == 0:
        raise ValueError(f"{name}: the array has no axes (it is 0-dimensional)")
    return integer(value, name, -ndim, ndim - 1)


def numeric_array(value, name: str) -> np.ndarray:
    """A real (bool, integer or float) array; objects, strings and complex numbers are refused."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as err:  # ragged lists
        raise ValueError(f"{name} must be a numeric array: {err}") from None
    if arr.dtype.kind not in "buif":
        raise ValueError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    return arr


def _range(low, high) -> str:
    if low is not None and high is not None:
        return f" from {low} to {high}"
    if low is not None:
        return f" >= {low}"
    return f" <= {high}" if high is not None else ""


_FIELD_CHECKS = {"int": integer, "bool": flag, "str": text}


def typed_fields(spec) -> None:
    """Every int, bool and str field of a frozen dataclass spec (formats, accumulators) of its own type."""
    for field in dataclasses.fields(spec):
        check = _FIELD_CHECKS.get(field.type if isinstance(field.type, str) else getattr(field.type, "__name__", ""))
        if check is not None:
            check(getattr(spec, field.name), f"{type(spec).__name__}.{field.name}")
