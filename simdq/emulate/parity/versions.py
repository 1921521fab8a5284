"""Installed library versions and the version ranges of the expectation table (a PEP 440 subset)."""

from __future__ import annotations

import re
from importlib import metadata

_RELEASE = re.compile(r"\d+(\.\d+)*")
_CLAUSE = re.compile(r"\s*(>=|<=|==|<|>)\s*(\d+(?:\.\d+)*)\s*")


def installed_version(distribution: str) -> str | None:
    """The installed version string of a distribution ("2.13.0+cpu"), or None if it is not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def release(version: str) -> tuple[int, ...]:
    """The release numbers of a version, without local labels or pre-release tags: "2.14.1+cu130" -> (2, 14, 1)."""
    match = _RELEASE.match(version.strip())
    if not match:
        raise ValueError(f"not a version: {version!r}")
    return tuple(int(part) for part in match.group(0).split("."))


def _padded(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    width = max(len(a), len(b))
    return a + (0,) * (width - len(a)), b + (0,) * (width - len(b))


_COMPARE = {
    ">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, "==": lambda a, b: a == b,
    "<": lambda a, b: a < b, ">": lambda a, b: a > b,
}


def in_range(version: str, spec: str) -> bool:
    """Whether `version` satisfies every comma-separated clause of `spec` (">=2.13,<2.14"); "" is any version."""
    have = release(version)
    for clause in filter(None, (part.strip() for part in spec.split(","))):
        match = _CLAUSE.fullmatch(clause)
        if not match:
            raise ValueError(f"version range clause must be like '>=2.13' or '<0.7', got {clause!r} in {spec!r}")
        op, bound = match.groups()
        if not _COMPARE[op](*_padded(have, release(bound))):
            return False
    return True


def reference_version(reference) -> str | None:
    """The version a reference speaks for: its recorded one, else its library's installed version."""
    return reference.recorded_version or installed_version(reference.library)
