"""The quantized artifact on disk: ART_DIR/model.safetensors (packed weight codes and scales, activation
ranges, every full-precision tensor) and ART_DIR/quant.yaml (model, scheme, per-layer formats, calibration
settings, quality, simdq version).

This module knows the files and their records only (torch-free): names, code packing, the metadata's
checks, and that the tensors file holds what the metadata promises. Turning modules into records and back
is simdq.calibrate.persist's job. Loading reports a damaged or mismatched artifact in one line. Nothing
is unpickled: safetensors and safe_load only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diagnostics import YamlFileError, read_yaml
from emulator import pack, unpack

from . import __version__
from .errors import SimdqError
from .output import write_text

TENSORS, METADATA = "model.safetensors", "quant.yaml"
GROUP_ALL = -1  # the key of a single (untimed or merged) activation range


def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """Codes of up to 8 bits packed (emulator bit order); wider codes kept as int32."""
    if bits > 8:
        return codes.reshape(-1).astype(np.int32)
    return pack(codes.reshape(-1).astype(np.uint8), bits)


def unpack_codes(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    if bits > 8:
        if packed.size != count:
            raise ValueError(f"expected {count} codes, found {packed.size}")
        return packed.astype(np.int64)
    return unpack(packed, bits, count)


def write_metadata(directory, document: dict) -> None:
    import yaml

    document = {"simdq_version": __version__, **document}
    write_text(Path(directory) / METADATA, yaml.safe_dump(document, sort_keys=False, width=120))


def read_metadata(directory) -> dict:
    directory = Path(directory)
    path = directory / METADATA
    if not directory.is_dir():
        raise SimdqError(f"{directory}: not an artifact directory (expected {METADATA} and {TENSORS} in it)")
    if not path.exists():
        raise SimdqError(f"{directory}: {METADATA} is missing")
    try:
        data = read_yaml(path, "artifact metadata")
    except YamlFileError as err:
        raise SimdqError(f"{path}: damaged ({str(err).removeprefix(f'{path}: ')})") from None
    if not isinstance(data, dict) or not {"simdq_version", "model", "quant", "layers"} <= set(data):
        raise SimdqError(f"{path}: damaged (needs simdq_version, model, quant and layers)")
    major = str(data["simdq_version"]).split(".")[0]
    if major != __version__.split(".")[0]:
        raise SimdqError(f"{path}: written by simdq {data['simdq_version']}, which this simdq {__version__} "
                         "cannot read (different major version)")
    return data


def check_tensors(directory, metadata: dict) -> None:
    """That model.safetensors opens and holds every stored layer's tensors (without reading them)."""
    from safetensors import SafetensorError, safe_open

    path = Path(directory) / TENSORS
    try:
        with safe_open(str(path), framework="numpy") as handle:
            keys = set(handle.keys())
    except FileNotFoundError:
        raise SimdqError(f"{directory}: {TENSORS} is missing") from None
    except (SafetensorError, OSError) as err:
        raise SimdqError(f"{path}: damaged ({err})") from None
    wanted = [f"{name}.weight.{part}" for name, entry in metadata["layers"].items() if "weight_format" in entry
              for part in ("codes", "scale")]
    wanted += [f"{path}.{part}" for path in metadata.get("activations", {}) for part in ("groups", "scales")]
    for key in wanted:
        if key not in keys:
            raise SimdqError(f"{path}: tensor {key!r} is missing")


def tensor(tensors, key, path):
    if key not in tensors:
        raise SimdqError(f"{path}: tensor {key!r} is missing")
    return tensors[key]
