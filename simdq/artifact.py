"""The quantized artifact on disk: ART_DIR/model.safetensors (packed weight codes and scales, activation
ranges, every full-precision tensor) and ART_DIR/quant.yaml (model, scheme, per-layer formats, calibration
settings, quality, simdq version).

This module knows the files and their records only (torch-free): names, code packing, the metadata's
checks, and that the tensors file holds what the metadata promises. Turning modules into records and back
is simdq.calibrate.persist's job. Nothing is unpickled: safetensors and safe_load only.

An artifact is sealed: quant.yaml records the SHA-256 of model.safetensors and of its own content, so any
changed byte of either is detected on every load. Beyond the seal, every load (estimate as emulate) checks
each record against the tensors: formats, shapes, dtypes, code ranges and finite scales, so that an artifact
whose seal was recomputed by hand still cannot carry what no calibration writes.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

from diagnostics import YamlFileError, read_yaml
from emulator import BinaryFormat, BlockFormat, FloatFormat, ResidualBinaryFormat, get_format, pack, unpack
from emulator.codec import decode_table

from . import __version__
from .errors import SimdqError
from .output import write_text

TENSORS, METADATA = "model.safetensors", "quant.yaml"
ARTIFACT_FILES = (TENSORS, METADATA)
GROUP_ALL = -1  # the key of a single (untimed or merged) activation range
SEAL = "integrity"  # quant.yaml's key: {tensors_sha256, metadata_sha256}
LAYER_KINDS = ("conv", "linear")
STORED_GRANULARITIES = ("per_tensor", "per_channel", "per_group", "per_block")
_CHUNK = 1 << 24


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


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _canonical(value):
    """The document as JSON sees it whichever way YAML typed its keys (timestep 0 and "all" alike)."""
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def metadata_sha256(document: dict) -> str:
    content = {k: v for k, v in document.items() if k != SEAL}
    text = json.dumps(_canonical(content), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def write_metadata(directory, document: dict) -> None:
    """quant.yaml, sealed with the SHA-256 of the model.safetensors already written beside it."""
    import yaml

    document = {"simdq_version": __version__, **{k: v for k, v in document.items() if k != SEAL}}
    document[SEAL] = {"tensors_sha256": file_sha256(Path(directory) / TENSORS),
                      "metadata_sha256": metadata_sha256(document)}
    write_text(Path(directory) / METADATA, yaml.safe_dump(document, sort_keys=False, width=120))


def _check_records(data: dict, path) -> None:
    """The shape of quant.yaml's records (what each value must be, before any is used)."""
    for key in ("layers", "activations", "outputs", "settings", "quality"):
        if key in data and not isinstance(data[key], dict):
            raise SimdqError(f"{path}: damaged ({key} must be a mapping, got {type(data[key]).__name__})")
    for name, entry in data["layers"].items():
        where = f"{path}: layers.{name}"
        if not isinstance(entry, dict) or entry.get("kind") not in LAYER_KINDS:
            raise SimdqError(f"{where}: damaged (needs kind: conv or linear)")
        if "weight_format" not in entry:
            continue
        shape = entry.get("weight_shape")
        if not isinstance(shape, list) or len(shape) not in (2, 4) or \
                not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape):
            raise SimdqError(f"{where}.weight_shape: damaged (expected 2 or 4 positive integers, got {shape!r})")
        if entry.get("granularity") not in STORED_GRANULARITIES:
            raise SimdqError(f"{where}.granularity: damaged (got {entry.get('granularity')!r}; allowed: "
                             f"{', '.join(STORED_GRANULARITIES)})")
        size = entry.get("group_size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise SimdqError(f"{where}.group_size: damaged (expected a positive integer, got {size!r})")
        weight_format(entry, where)
    for name, entry in data.get("activations", {}).items():
        if not isinstance(entry, dict) or not isinstance(entry.get("format"), str):
            raise SimdqError(f"{path}: activations.{name}: damaged (needs format)")


def weight_format(entry: dict, where: str):
    """The emulator format of a stored layer's weights (a quantized one)."""
    name = entry.get("weight_format")
    try:
        fmt = get_format(name) if isinstance(name, str) else None
    except ValueError as err:
        raise SimdqError(f"{where}.weight_format: {err}") from None
    if fmt is None:
        raise SimdqError(f"{where}.weight_format: damaged (got {name!r})")
    return fmt


def read_metadata(directory) -> dict:
    """quant.yaml, its seal and its records checked."""
    directory = Path(directory)
    path = directory / METADATA
    if not directory.is_dir():
        raise SimdqError(f"{directory}: not an artifact directory (expected {METADATA} and {TENSORS} in it)")
    if not path.exists():
        raise SimdqError(f"{directory}: {METADATA} is missing")
    if not path.is_file():
        raise SimdqError(f"{path}: damaged (not a file)")
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
    seal = data.get(SEAL)
    if not isinstance(seal, dict) or not {"tensors_sha256", "metadata_sha256"} <= set(seal):
        raise SimdqError(f"{path}: not sealed (no {SEAL}: tensors_sha256 and metadata_sha256): written before "
                         "simdq sealed its artifacts, or edited by hand; calibrate it again")
    if seal["metadata_sha256"] != metadata_sha256(data):
        raise SimdqError(f"{path}: damaged (its content does not match its recorded SHA-256: it was changed "
                         "after simdq calibrate wrote it)")
    _check_records(data, path)
    return data


def _open_tensors(directory, metadata: dict):
    """model.safetensors, its SHA-256 checked against the seal, as a safe_open handle (numpy)."""
    from safetensors import SafetensorError, safe_open

    path = Path(directory) / TENSORS
    try:
        digest = file_sha256(path)
    except FileNotFoundError:
        raise SimdqError(f"{directory}: {TENSORS} is missing") from None
    except IsADirectoryError:
        raise SimdqError(f"{path}: damaged (not a file)") from None
    if digest != metadata[SEAL]["tensors_sha256"]:
        raise SimdqError(f"{path}: damaged (its SHA-256 is not the one {METADATA} records: the tensors were "
                         "changed or truncated after simdq calibrate wrote them)")
    try:
        return safe_open(str(path), framework="numpy")
    except (SafetensorError, OSError) as err:
        raise SimdqError(f"{path}: damaged ({err})") from None


class _Tensors:
    """Named tensors of a checked file, each read once and reported by name when missing or malformed."""

    def __init__(self, handle, path):
        self.handle, self.path, self.keys = handle, path, set(handle.keys())

    def get(self, key, dtype=None, shape=None) -> np.ndarray:
        if key not in self.keys:
            raise SimdqError(f"{self.path}: tensor {key!r} is missing")
        value = self.handle.get_tensor(key)
        if dtype is not None and value.dtype != np.dtype(dtype):
            raise SimdqError(f"{self.path}: tensor {key!r} is {value.dtype}, expected {np.dtype(dtype)}")
        if shape is not None and tuple(value.shape) != tuple(shape):
            raise SimdqError(f"{self.path}: tensor {key!r} has shape {list(value.shape)}, expected {list(shape)}")
        return value

    def finite(self, key, value, positive: bool = False) -> None:
        bad = ~np.isfinite(value) | ((value <= 0) if positive else (value < 0))
        if bad.any():
            found = value.reshape(-1)[np.flatnonzero(bad.reshape(-1))[0]]
            raise SimdqError(f"{self.path}: tensor {key!r} holds {float(found)!r}; scales and ranges are finite and "
                             f"{'positive' if positive else 'non-negative'}")


def _activation_format(entry: dict, where: str):
    try:
        return get_format(entry["format"])
    except ValueError as err:
        raise SimdqError(f"{where}.format: {err}") from None


def stored_code_count(entry: dict, fmt) -> int:
    """Codes stored for a layer's weight: every element, rows zero-padded to whole blocks for block formats."""
    shape = entry["weight_shape"]
    count = math.prod(shape)
    if entry["granularity"] == "per_block":
        columns = count // shape[0]
        count = shape[0] * -(-columns // fmt.block_size) * fmt.block_size
    return count


def _invalid_codes(fmt) -> np.ndarray:
    """Codes no calibration writes for this format: NaN and infinity encodings."""
    element = fmt.element if isinstance(fmt, BlockFormat) else fmt
    if not isinstance(element, FloatFormat):
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(~np.isfinite(decode_table(element)))


def _scale_shape(entry: dict, fmt, rows: int, where: str) -> tuple:
    granularity, columns = entry["granularity"], math.prod(entry["weight_shape"]) // rows
    if isinstance(fmt, BlockFormat):
        return (rows, -(-columns // fmt.block_size))
    if isinstance(fmt, ResidualBinaryFormat):
        return (rows, fmt.bases)
    if isinstance(fmt, BinaryFormat) or granularity == "per_channel":
        return (rows,)
    if granularity == "per_group":
        if columns % entry["group_size"]:
            raise SimdqError(f"{where}: {columns} input features cannot make groups of {entry['group_size']}")
        return (rows, columns // entry["group_size"])
    return ()


def _check_weight(tensors: _Tensors, name: str, entry: dict, where: str) -> None:
    fmt = weight_format(entry, where)
    if isinstance(fmt, BlockFormat) != (entry["granularity"] == "per_block"):
        raise SimdqError(f"{where}: granularity {entry['granularity']} does not go with {fmt.name} weights")
    bits, count = fmt.bits, stored_code_count(entry, fmt)
    key = f"{name}.weight.codes"
    if bits > 8:
        codes = tensors.get(key, np.int32, (count,))
        if codes.size and (codes.min() < 0 or codes.max() >= 1 << bits):  # bit patterns, as the packed ones
            raise SimdqError(f"{tensors.path}: tensor {key!r} holds codes outside {fmt.name}'s 0..{(1 << bits) - 1}")
    else:
        packed = tensors.get(key, np.uint8, ((count * bits + 7) // 8,))
        invalid = _invalid_codes(fmt)
        if invalid.size and np.isin(unpack(packed, bits, count), invalid).any():
            raise SimdqError(f"{tensors.path}: tensor {key!r} holds NaN or infinity codes of {fmt.name}")
    rows, key = entry["weight_shape"][0], f"{name}.weight.scale"
    shape = _scale_shape(entry, fmt, rows, where)
    if isinstance(fmt, BlockFormat):
        scales = tensors.get(key, np.int64, shape)
        table = decode_table(fmt.scale)
        if scales.size and (scales.min() < 0 or scales.max() >= len(table) or
                            not np.isfinite(table[scales]).all()):
            raise SimdqError(f"{tensors.path}: tensor {key!r} holds codes that are not finite {fmt.scale.name} "
                             "scales")
        if fmt.tensor_scale:
            key = f"{name}.weight.tensor_scale"
            tensors.finite(key, tensors.get(key, np.float64, ()), positive=True)
    else:
        tensors.finite(key, tensors.get(key, np.float64, shape))


def _check_ranges(tensors: _Tensors, prefix: str, values: str, positive: bool, dynamic: bool = False) -> None:
    groups = tensors.get(f"{prefix}.groups", np.int64)
    if groups.ndim != 1 or not groups.size or len(set(groups.tolist())) != groups.size or \
            (groups.min() < GROUP_ALL):
        raise SimdqError(f"{tensors.path}: tensor '{prefix}.groups' is damaged (expected distinct timestep groups)")
    key = f"{prefix}.{values}"
    scales = tensors.get(key, np.float64, (groups.size,))
    if dynamic:  # block formats scale every block at run time: their stored scale is NaN
        if not np.isnan(scales).all():
            raise SimdqError(f"{tensors.path}: tensor {key!r} is damaged (a block format's range is computed per "
                             "call and stored as NaN)")
        return
    tensors.finite(key, scales, positive)


def verify_tensors(directory, metadata: dict, model_shapes: dict | None = None) -> None:
    """model.safetensors against its seal and every record of `metadata` (read_metadata's). `model_shapes`
    (state-dict key -> shape of the UNet the artifact names) also checks the full-precision tensors."""
    path = Path(directory) / TENSORS
    with _open_tensors(directory, metadata) as handle:
        tensors = _Tensors(handle, path)
        for name, entry in metadata["layers"].items():
            if "weight_format" in entry:
                _check_weight(tensors, name, entry, f"{Path(directory) / METADATA}: layers.{name}")
        for prefix, entry in metadata.get("activations", {}).items():
            fmt = _activation_format(entry, f"{Path(directory) / METADATA}: activations.{prefix}")
            binary = isinstance(fmt, BinaryFormat)
            # a binary range is a mean |x|, zero for an all-zero input; dividing ranges are positive
            _check_ranges(tensors, prefix, "scales", positive=not binary, dynamic=isinstance(fmt, BlockFormat))
            if binary:
                key = f"{prefix}.thresholds"
                tensors.finite(key, np.abs(tensors.get(key, np.float64)))
        for prefix in metadata.get("outputs", {}):
            _check_ranges(tensors, prefix, "amax", positive=False)
        if model_shapes is None:
            return
        restored = {f"{name}.weight" for name, entry in metadata["layers"].items() if "weight_format" in entry}
        for key, shape in model_shapes.items():
            if key in restored:
                continue
            value = tensors.get(key)
            if tuple(value.shape) != tuple(shape):
                raise SimdqError(f"{path}: tensor {key!r} has shape {list(value.shape)}, the model's is {list(shape)}")
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise SimdqError(f"{path}: tensor {key!r} holds NaN or infinity")

