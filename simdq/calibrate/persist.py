"""A calibrated UNet to the artifact's records and back (the files themselves: simdq.artifact).

save_artifact stores every quantized module's weight codes and scales, every activation quantizer's
ranges and every quantized module's output range (amax per timestep group, for requantization);
load_artifact fills a UNet built from the artifact's model config, checking that the stored layers, formats
and shapes are those the scheme gives that model.
"""

from __future__ import annotations

from pathlib import Path

import torch

from emulator import BinaryFormat

from ..artifact import (ARTIFACT_FILES, GROUP_ALL, METADATA, TENSORS, pack_codes, read_metadata, stored_code_count,
                        unpack_codes, verify_tensors, write_metadata)
from ..config import parse_config
from ..errors import SimdqError
from ..output import replacing_directory
from .activations import ActivationQuantizer, OutputRange
from .modules import QuantConv2d, QuantLinear, quantize_model
from .stored import QuantizedWeight
from .torch_quant import saturating


def save_artifact(directory, model, metadata: dict) -> Path:
    """Write `model` (after quantize_model and calibration) and `metadata` (model, quant, settings, report) as
    a sealed artifact: both files appear at once, replacing an earlier artifact there, or neither does."""
    from safetensors.torch import save_file

    directory = Path(directory)
    tensors, layers, activations = {}, {}, {}
    quantized = {name: m for name, m in model.named_modules() if isinstance(m, (QuantConv2d, QuantLinear))}
    skip = set()
    for name, module in quantized.items():
        entry = {"kind": "conv" if isinstance(module, QuantConv2d) else "linear"}
        qw = module.quantized_weight
        if qw is not None:
            tensors[f"{name}.weight.codes"] = torch.from_numpy(pack_codes(qw.codes.numpy(), qw.fmt.bits))
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
    outputs = {}
    for path, observer in model.named_modules():
        if isinstance(observer, OutputRange) and observer.amax:  # what integer pipelines requantize to
            keys = sorted(observer.amax, key=lambda k: GROUP_ALL if k is None else k)
            tensors[f"{path}.groups"] = torch.tensor([GROUP_ALL if k is None else k for k in keys])
            tensors[f"{path}.amax"] = torch.stack([observer.amax[k].double() for k in keys])
            outputs[path] = {("all" if k is None else int(k)): float(observer.amax[k]) for k in keys}
    for key, value in model.state_dict().items():
        if key not in skip:  # a stored weight comes back from its codes
            tensors[key] = value.detach().clone().contiguous()
    with replacing_directory(directory, "-o", ARTIFACT_FILES) as staging:
        save_file(tensors, str(staging / TENSORS))
        write_metadata(staging, {**metadata, "layers": layers, "activations": activations, "outputs": outputs})
    return directory


def check_artifact(directory, unet=None):
    """Every check of an artifact, before any of it is used: quant.yaml's seal and records, its scheme applied
    to its model, and model.safetensors against both. `unet`: the UNet to fill (built from the artifact's
    model config); None checks against one on the meta device. Returns (metadata, config, the swapped UNet)."""
    from ..config import unet_spec
    from ..model.unets import build_unet

    directory = Path(directory)
    metadata = read_metadata(directory)
    where = directory / METADATA
    config = parse_config({"model": metadata["model"], "quant": metadata["quant"]}, str(where))
    unet = build_unet(unet_spec(config)) if unet is None else unet
    groups = metadata.get("settings", {}).get("timestep_groups")
    swapped = quantize_model(unet, config.quant, config.model.dtype, timestep_groups=groups, quantize_weights=False)
    layers, activations = metadata["layers"], metadata.get("activations", {})
    for name, (weight_format, activation_format) in swapped.items():
        entry, inputs = layers.get(name), activations.get(f"{name}.input_quantizer", {})
        if entry is None or entry.get("weight_format", weight_format) != weight_format or \
                inputs.get("format", activation_format) != activation_format:
            raise SimdqError(f"{where}: layer {name} does not match the scheme applied to its model")
    if set(layers) != set(swapped):
        extra = sorted(set(layers) - set(swapped))[0]
        raise SimdqError(f"{where}: layer {extra} is not in the model")
    modules = dict(unet.named_modules())
    for name, entry in layers.items():
        if "weight_format" in entry and tuple(entry["weight_shape"]) != tuple(modules[name].weight.shape):
            raise SimdqError(f"{where}: {name}: stored weight shape {entry['weight_shape']} does not match the "
                             f"model's {list(modules[name].weight.shape)}")
    quantizers = {p for p, m in unet.named_modules() if isinstance(m, ActivationQuantizer)}
    if quantizers != set(activations):
        odd = sorted(quantizers ^ set(activations))[0]
        raise SimdqError(f"{where}: activation quantizer {odd} does not match the model and scheme")
    verify_tensors(directory, metadata, {k: tuple(v.shape) for k, v in unet.state_dict().items()})
    return metadata, config, unet


def load_artifact(directory, unet):
    """Fill `unet` (built from the artifact's model config) with the artifact: returns (model, metadata)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    metadata, _, unet = check_artifact(directory, unet)
    path = directory / TENSORS
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:  # changed since it was checked
        raise SimdqError(f"{path}: damaged ({err})") from None
    layers, modules = metadata["layers"], dict(unet.named_modules())
    for name, entry in layers.items():
        if "weight_format" not in entry:
            continue
        module, fmt, shape = modules[name], saturating(entry["weight_format"]), tuple(entry["weight_shape"])
        codes = unpack_codes(tensors[f"{name}.weight.codes"].numpy(), fmt.bits, stored_code_count(entry, fmt))
        tensor_scale = tensors.get(f"{name}.weight.tensor_scale")
        # the narrowest dtype that holds the codes: an LDM-4's int64 codes alone would take 2 GB
        stored = QuantizedWeight(fmt, torch.from_numpy(codes).reshape(shape[0], -1), tensors[f"{name}.weight.scale"],
                                 entry["granularity"], entry["group_size"], shape,
                                 None if tensor_scale is None else float(tensor_scale))
        module.quantized_weight = stored
        module.weight = stored.dequantize().to(module.weight.dtype)
    for qpath, quantizer in unet.named_modules():
        if isinstance(quantizer, ActivationQuantizer):
            keys = tensors[f"{qpath}.groups"].tolist()
            quantizer.scales = {None if k == GROUP_ALL else k: s for k, s in zip(keys, tensors[f"{qpath}.scales"])}
            if isinstance(quantizer.fmt, BinaryFormat):
                quantizer.thresholds = tensors[f"{qpath}.thresholds"]
    for opath, observer in unet.named_modules():  # an observer that saw no output was not stored
        if isinstance(observer, OutputRange) and f"{opath}.groups" in tensors:
            keys = tensors[f"{opath}.groups"].tolist()
            observer.amax = {None if k == GROUP_ALL else k: a for k, a in zip(keys, tensors[f"{opath}.amax"])}
    restored = {f"{name}.weight" for name, entry in layers.items() if "weight_format" in entry}
    unet.load_state_dict({k: v for k, v in tensors.items() if k in unet.state_dict() and k not in restored},
                         strict=False)
    return unet, metadata
