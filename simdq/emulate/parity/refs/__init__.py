"""Adapters for every reference function simdq claims parity with, grouped by library.

`installed_references()` builds those whose library is installed and names the libraries that are not.
"""

from __future__ import annotations

import importlib

from .base import Reference

# library (distribution name) -> the factories of its references, as "module:function"
FACTORIES = {
    "ml_dtypes": ["casts:ml_dtypes_references"],
    "numpy": ["casts:numpy_references"],
    "torch": ["casts:torch_cast_references", "affine:torch_quantize_references", "requant:torch_quantized_references"],
    "torchao": ["blocks:torchao_references"],
    "gfloat": ["gfloat_rounding:gfloat_references"],
    "onnxruntime": ["requant:onnxruntime_references"],
    "onnx": ["requant:onnx_reference_references"],
    "ai_edge_litert": ["requant:litert_references"],
    "larq_compute_engine": ["larq:larq_recorded_references"],  # recorded vectors: nothing to import
}


def installed_references(libraries=None) -> tuple[list[Reference], list[str]]:
    """(references of the installed libraries, libraries that are not installed), in FACTORIES order."""
    references, missing = [], []
    for library, factories in FACTORIES.items():
        if libraries is not None and library not in libraries:
            continue
        try:
            for factory in factories:
                module, function = factory.split(":")
                references += getattr(importlib.import_module(f".{module}", __name__), function)()
        except ImportError:
            missing.append(library)
    return references, missing


__all__ = ["FACTORIES", "Reference", "installed_references"]
