"""Did-you-mean hints and the "unknown X" line built from them."""

from __future__ import annotations

import difflib


def did_you_mean(name, allowed) -> str:
    """' (did you mean 'x'?)' for the closest allowed name, or '' when none is close."""
    hint = difflib.get_close_matches(str(name), [str(a) for a in allowed], n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


def unknown(what: str, name, allowed, tail: str = "") -> str:
    """"unknown WHAT 'name' (did you mean ...?); allowed: a, b, c" (allowed listed in the order given)."""
    return f"unknown {what} {name!r}{did_you_mean(name, allowed)}; allowed: {', '.join(map(str, allowed))}{tail}"
