"""A calibrated UNet to the artifact's records and back (the files themselves: simdq.artifact).

save_artifact stores every quantized module's weight codes and scales, every activation quantizer's
ranges and every quantized module's output range (amax per timestep group, for requantization);
load_artifact fills a UNet built from the artifact's model config, checking that the stored layers, formats
and shapes are those the scheme gives that model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from emulator import BinaryFormat

from ..artifact import GROUP_ALL, METADATA, TENSORS, pack_codes, read_metadata, tensor, unpack_codes, write_metadata
from ..config import parse_config
from ..errors import SimdqError
from ..output import replacing
from .activations import ActivationQuantizer, OutputRange
from .modules import QuantConv2d, QuantLinear, quantize_model
from .stored import QuantizedWeight
from .torch_quant import saturating


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
    with replacing(directory / TENSORS) as temporary:
        save_file(tensors, str(temporary))
    write_metadata(directory, {**metadata, "layers": layers, "activations": activations, "outputs": outputs})
    return directory


def load_artifact(directory, unet):
    """Fill `unet` (built from the artifact's model config) with the artifact: returns (model, metadata)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

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
            packed = tensor(tensors, f"{name}.weight.codes", path)
            count = int(np.prod(shape))
            if entry["granularity"] == "per_block":  # rows were zero-padded to whole blocks
                block = entry["group_size"]
                count = shape[0] * (-(-(count // shape[0]) // block) * block)
            try:
                codes = unpack_codes(packed.numpy(), fmt.bits, count)
            except ValueError as err:
                raise SimdqError(f"{path}: {name}: weight codes damaged ({err})") from None
            scale = tensor(tensors, f"{name}.weight.scale", path)
            expected = torch.int64 if entry["granularity"] == "per_block" else torch.float64
            if scale.dtype != expected:
                raise SimdqError(f"{path}: {name}.weight.scale is {scale.dtype}, expected {expected}")
            tensor_scale = tensors.get(f"{name}.weight.tensor_scale")
            # the narrowest dtype that holds the codes: an LDM-4's int64 codes alone would take 2 GB
            stored = QuantizedWeight(fmt, torch.from_numpy(codes).reshape(shape[0], -1), scale,
                                     entry["granularity"], entry["group_size"], shape,
                                     None if tensor_scale is None else float(tensor_scale))
            module.quantized_weight = stored
            module.weight = stored.dequantize().to(module.weight.dtype)
    quantizers = {p: m for p, m in unet.named_modules() if isinstance(m, ActivationQuantizer)}
    if set(quantizers) != set(activations):
        odd = sorted(set(quantizers) ^ set(activations))[0]
        raise SimdqError(f"{directory / METADATA}: activation quantizer {odd} does not match the model and scheme")
    for qpath, quantizer in quantizers.items():
        keys = tensor(tensors, f"{qpath}.groups", path).tolist()
        scales = tensor(tensors, f"{qpath}.scales", path)
        quantizer.scales = {None if k == GROUP_ALL else k: s for k, s in zip(keys, scales)}
        if isinstance(quantizer.fmt, BinaryFormat):
            quantizer.thresholds = tensor(tensors, f"{qpath}.thresholds", path)
    for opath, observer in unet.named_modules():  # absent from artifacts older than the output ranges
        if isinstance(observer, OutputRange) and f"{opath}.groups" in tensors:
            keys = tensors[f"{opath}.groups"].tolist()
            observer.amax = {None if k == GROUP_ALL else k: a for k, a in zip(keys, tensor(tensors, f"{opath}.amax", path))}
    restored = {k for k in unet.state_dict() if k.endswith(".weight") and "weight_format" in layers.get(k[:-7], {})}
    state = {k: v for k, v in tensors.items() if k in unet.state_dict() and k not in restored}
    absent = sorted(set(unet.state_dict()) - restored - set(state))
    if absent:
        raise SimdqError(f"{path}: tensor {absent[0]!r} is missing")
    unet.load_state_dict(state, strict=False)
    return unet, metadata
