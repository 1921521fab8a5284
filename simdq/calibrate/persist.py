"""The quantized artifact: ART_DIR/model.safetensors (packed weight codes and scales, activation ranges,
every full-precision tensor) and ART_DIR/quant.yaml (model, scheme, per-layer formats, calibration
settings, quality, simdq version). Loading checks all of it and reports a damaged or mismatched artifact
in one line. Nothing is unpickled: safetensors and safe_load only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml

from emulator import BinaryFormat, pack, unpack

from . import __version__
from .errors import SimdqError
from .quant_modules import ActivationQuantizer, QuantConv2d, QuantizedWeight, QuantLinear, saturating

TENSORS, METADATA = "model.safetensors", "quant.yaml"
GROUP_ALL = -1  # the key of a single (untimed or merged) activation range


def _packed(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Codes of up to 8 bits packed (emulator bit order); wider codes kept as int32."""
    if bits > 8:
        return codes.reshape(-1).to(torch.int32)
    return torch.from_numpy(pack(codes.reshape(-1).numpy().astype(np.uint8), bits))


def _unpacked(packed: torch.Tensor, bits: int, count: int) -> np.ndarray:
    if bits > 8:
        if packed.numel() != count:
            raise ValueError(f"expected {count} codes, found {packed.numel()}")
        return packed.numpy().astype(np.int64)
    return unpack(packed.numpy(), bits, count)


def save_artifact(directory, model, metadata: dict) -> Path:
    """Write `model` (after quantize_model and calibration) and `metadata` (model, quant, settings, report)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors, layers, activations = {}, {}, {}
    quantized = {name: m for name, m in model.named_modules() if isinstance(m, (QuantConv2d, QuantLinear))}
    skip = set()
    for name, module in quantized.items():
        entry = {"kind": "conv" if isinstance(module, QuantConv2d) else "linear"}
        qw = module.quantized_weight
        if qw is not None:
            tensors[f"{name}.weight.codes"] = _packed(qw.codes, qw.fmt.bits)
            # block formats keep their scale codes (E8M0/E4M3, int64 here); the others their float64 scales
            tensors[f"{name}.weight.scale"] = qw.scale.contiguous() if qw.scale.dtype == torch.int64 else \
                qw.scale.double().contiguous()
            if qw.tensor_scale is not None:
                tensors[f"{name}.weight.tensor_scale"] = torch.tensor(qw.tensor_scale, dtype=torch.float64)
            entry.update(weight_format=qw.fmt.name, weight_shape=list(qw.shape), granularity=qw.granularity,
                         group_size=qw.group_size)
            skip.add(f"{name}.weight")
        layers[name] = entry
    for path, quantizer in model.named_modules():
        if isinstance(quantizer, ActivationQuantizer):  # conv/linear inputs and attention matmul operands
            keys = sorted(quantizer.scales, key=lambda k: GROUP_ALL if k is None else k)
            tensors[f"{path}.groups"] = torch.tensor([GROUP_ALL if k is None else k for k in keys])
            tensors[f"{path}.scales"] = torch.stack([quantizer.scales[k].double() for k in keys])
            if quantizer.thresholds is not None:
                tensors[f"{path}.thresholds"] = quantizer.thresholds.double().contiguous()
            activations[path] = {"format": quantizer.fmt.name, "calibrator": quantizer.calibrator,
                                 "timestep_groups": quantizer.timestep_groups,
                                 # readable copy of the ranges (the tensors file is what loading uses)
                                 "scales": {("all" if k is None else int(k)): float(quantizer.scales[k]) for k in keys}}
    for key, value in model.state_dict().items():
        if key not in skip:  # a stored weight comes back from its codes
            tensors[key] = value.detach().clone().contiguous()
    save_file(tensors, str(directory / TENSORS))
    document = {"simdq_version": __version__, **metadata, "layers": layers, "activations": activations}
    (directory / METADATA).write_text(yaml.safe_dump(document, sort_keys=False, width=120))
    return directory


def read_metadata(directory) -> dict:
    directory = Path(directory)
    path = directory / METADATA
    if not directory.is_dir():
        raise SimdqError(f"{directory}: not an artifact directory (expected {METADATA} and {TENSORS} in it)")
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SimdqError(f"{directory}: {METADATA} is missing") from None
    except yaml.YAMLError as err:
        raise SimdqError(f"{path}: damaged ({str(err).splitlines()[0]})") from None
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
        with safe_open(str(path), framework="pt") as handle:
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


def _tensor(tensors, key, path):
    if key not in tensors:
        raise SimdqError(f"{path}: tensor {key!r} is missing")
    return tensors[key]


def load_artifact(directory, unet):
    """Fill `unet` (built from the artifact's model config) with the artifact: returns (model, metadata)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .model_config import parse_config
    from .quant_modules import quantize_model

    directory = Path(directory)
    metadata = read_metadata(directory)
    path = directory / TENSORS
    try:
        tensors = load_file(str(path))
    except FileNotFoundError:
        raise SimdqError(f"{directory}: {TENSORS} is missing") from None
    except (SafetensorError, OSError) as err:
        raise SimdqError(f"{path}: damaged ({err})") from None
    config = parse_config({"model": metadata["model"], "quant": metadata["quant"]}, str(directory / METADATA))
    groups = metadata.get("settings", {}).get("timestep_groups")
    swapped = quantize_model(unet, config.quant, config.model.dtype, timestep_groups=groups, quantize_weights=False)
    layers, activations = metadata["layers"], metadata.get("activations", {})
    for name, (weight_format, activation_format) in swapped.items():
        entry, inputs = layers.get(name), activations.get(f"{name}.input_quantizer", {})
        if entry is None or entry.get("weight_format", weight_format) != weight_format or \
                inputs.get("format", activation_format) != activation_format:
            raise SimdqError(f"{directory / METADATA}: layer {name} does not match the scheme applied to its model")
    if set(layers) != set(swapped):
        extra = sorted(set(layers) - set(swapped))[0]
        raise SimdqError(f"{directory / METADATA}: layer {extra} is not in the model")
    modules = dict(unet.named_modules())
    for name, entry in layers.items():
        module = modules[name]
        if "weight_format" in entry:
            fmt, shape = saturating(entry["weight_format"]), tuple(entry["weight_shape"])
            if shape != tuple(module.weight.shape):
                raise SimdqError(f"{path}: {name}: stored weight shape {list(shape)} does not match the model's "
                                 f"{list(module.weight.shape)}")
            packed = _tensor(tensors, f"{name}.weight.codes", path)
            try:
                codes = _unpacked(packed, fmt.bits, int(np.prod(shape)))
            except ValueError as err:
                raise SimdqError(f"{path}: {name}: weight codes damaged ({err})") from None
            scale = _tensor(tensors, f"{name}.weight.scale", path)
            expected = torch.int64 if entry["granularity"] == "per_block" else torch.float64
            if scale.dtype != expected:
                raise SimdqError(f"{path}: {name}.weight.scale is {scale.dtype}, expected {expected}")
            tensor_scale = tensors.get(f"{name}.weight.tensor_scale")
            stored = QuantizedWeight(fmt, torch.from_numpy(codes.astype(np.int64)).reshape(shape[0], -1), scale,
                                     entry["granularity"], entry["group_size"], shape,
                                     None if tensor_scale is None else float(tensor_scale))
            module.quantized_weight = stored
            module.weight = stored.dequantize().to(module.weight.dtype)
    quantizers = {p: m for p, m in unet.named_modules() if isinstance(m, ActivationQuantizer)}
    if set(quantizers) != set(activations):
        odd = sorted(set(quantizers) ^ set(activations))[0]
        raise SimdqError(f"{directory / METADATA}: activation quantizer {odd} does not match the model and scheme")
    for qpath, quantizer in quantizers.items():
        keys = _tensor(tensors, f"{qpath}.groups", path).tolist()
        scales = _tensor(tensors, f"{qpath}.scales", path)
        quantizer.scales = {None if k == GROUP_ALL else k: s for k, s in zip(keys, scales)}
        if isinstance(quantizer.fmt, BinaryFormat):
            quantizer.thresholds = _tensor(tensors, f"{qpath}.thresholds", path)
    restored = {k for k in unet.state_dict() if k.endswith(".weight") and "weight_format" in layers.get(k[:-7], {})}
    state = {k: v for k, v in tensors.items() if k in unet.state_dict() and k not in restored}
    absent = sorted(set(unet.state_dict()) - restored - set(state))
    if absent:
        raise SimdqError(f"{path}: tensor {absent[0]!r} is missing")
    unet.load_state_dict(state, strict=False)
    return unet, metadata
