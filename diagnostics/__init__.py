"""One-line diagnostics shared by emulator, hw_models and simdq: did-you-mean hints, YAML read errors,
and pydantic validation errors turned into one line naming the path and what is allowed.

Standard library only at import time (pyyaml and pydantic are imported by the functions that need them),
so that every package may import it without taking on a dependency.
"""

from .messages import did_you_mean, unknown
from .validation import explain, validate
from .yaml_files import YamlFileError, read_yaml

__all__ = ["YamlFileError", "did_you_mean", "explain", "read_yaml", "unknown", "validate"]
