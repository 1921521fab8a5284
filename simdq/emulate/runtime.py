"""A calibrated artifact run on the emulator: the UNet rebuilt from the artifact, every quantized conv, linear
and (when quantized) attention matmul replaced by its emulated self, and the sampling loop around it.

EmulatedUNet.emulating(False) switches every layer back to the fake-quantized torch path (the same model,
the same codes: what `load_artifact` gives), and .accumulating("exact") runs every emulated layer with exact
accumulation; simdq parity model compares the three.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..artifact import METADATA, TENSORS, pack_codes, read_metadata
from ..calibrate.modules import QuantConv2d, QuantLinear
from ..calibrate.persist import load_artifact
from ..config import parse_config, unet_spec
from ..errors import SimdqError
from ..model.unets import build_unet, load_checkpoint
from .arithmetic import LayerArithmetic, plan_layer
from .modules import Clock, EmulatedAttention, EmulatedGemm


@dataclass
class EmulatedUNet:
    unet: nn.Module
    metadata: dict
    config: object  # the artifact's simdq.config.EstimateConfig
    plan: dict  # layer name -> LayerArithmetic (attention matmuls as MODULE.qk and MODULE.av)
    modules: dict = field(default_factory=dict)  # name -> EmulatedGemm / EmulatedAttention

    def __call__(self, **inputs):
        with torch.no_grad():
            return self.unet(**inputs).sample

    @contextmanager
    def emulating(self, on: bool):
        """Emulated layers (on) or the fake-quantized torch path (off) inside the block."""
        before = {name: m.emulating for name, m in self.modules.items()}
        for module in self.modules.values():
            module.emulating = on
        try:
            yield self
        finally:
            for name, module in self.modules.items():
                module.emulating = before[name]

    @contextmanager
    def accumulating(self, accumulator: str):
        """Every emulated GEMM summed by `accumulator` inside the block (the plan's rules restored after)."""
        gemms = [m for m in self.modules.values() if isinstance(m, EmulatedGemm)]
        attentions = [m for m in self.modules.values() if isinstance(m, EmulatedAttention)]
        before = ([m.accumulator for m in gemms], [(m.qk, m.av) for m in attentions])
        for m in gemms:
            m.accumulator = accumulator
        for m in attentions:
            m.qk, m.av = (_with_accumulator(a, accumulator) for a in (m.qk, m.av))
        try:
            yield self
        finally:
            for m, acc in zip(gemms, before[0]):
                m.accumulator = acc
            for m, (qk, av) in zip(attentions, before[1]):
                m.qk, m.av = qk, av

    def observe(self, observer) -> None:
        for module in self.modules.values():
            module.observer = observer

    def clock(self) -> Clock:
        clock = Clock()
        for module in self.modules.values():
            module.clock = clock
        return clock

    @property
    def timestep_groups(self):
        return self.metadata.get("settings", {}).get("timestep_groups")


def _with_accumulator(arithmetic: LayerArithmetic, accumulator: str) -> LayerArithmetic:
    return dataclasses.replace(arithmetic, accumulator=accumulator)


def artifact_config(directory, metadata: dict):
    return parse_config({"model": metadata["model"], "quant": metadata["quant"]}, str(Path(directory) / METADATA))


def build_artifact_unet(config, seed: int = 0):
    """The artifact's UNet (weights still those of diffusers' seeded initialisation), on the CPU."""
    torch.manual_seed(seed)
    return build_unet(unet_spec(config), device="cpu")


def load_emulated(directory, *, device=None, device_layers=None, accumulator=None, requant=None) -> EmulatedUNet:
    """The artifact's UNet with every quantized layer emulated. device: a hw_models.Device whose accumulators
    the layers take, at the precisions `device_layers` (name -> hw_models.LayerEstimate) give; accumulator:
    one rule for every layer; requant: a convention of emulator.requantize for every integer layer's output."""
    metadata = read_metadata(directory)
    config = artifact_config(directory, metadata)
    unet, metadata = load_artifact(directory, build_artifact_unet(config))
    unet.eval()
    device_layers = device_layers or {}
    plan, modules = {}, {}

    def arithmetic(name, weight_format, activation_format, requant=None):
        plan[name] = plan_layer(name, weight_format, activation_format, accumulator=accumulator, device=device,
                                device_layer=device_layers.get(name), requant=requant)
        return plan[name]

    layers = metadata["layers"]
    activations = metadata.get("activations", {})
    for name, module in list(unet.named_modules()):
        if isinstance(module, (QuantConv2d, QuantLinear)):
            entry = layers[name]
            weight_format = entry.get("weight_format", config.model.dtype)
            activation_format = activations.get(f"{name}.input_quantizer", {}).get("format", config.model.dtype)
            emulated = EmulatedGemm(name, module, arithmetic(name, weight_format, activation_format, requant))
            if emulated.arithmetic.requant and not module.output_range.amax:
                raise SimdqError(f"{directory}: --requant needs the output ranges that simdq calibrate records; this "
                                 "artifact has none (written before they were): recalibrate it")
            parent, _, child = name.rpartition(".")
            setattr(unet.get_submodule(parent) if parent else unet, child, emulated)
            modules[name] = emulated
        quantizers = getattr(module, "attention_quantizers", None)
        if quantizers is not None:
            fmt = activations[f"{name}.attention_quantizers.q"]["format"]
            attention = EmulatedAttention(name, quantizers, arithmetic(f"{name}.qk", fmt, fmt),
                                          arithmetic(f"{name}.av", fmt, fmt))
            module.processor.quantizers = attention
            modules[name] = attention
    return EmulatedUNet(unet, metadata, config, plan, modules)


def device_layers(config, device) -> dict:
    """Layer name -> the device model's LayerEstimate (engine, compute precision) for the artifact's model (a
    simdq.config.EstimateConfig) on a hw_models.Device: the mapping `simdq estimate --per-layer` shows, from
    which each layer takes its accumulator. The mapping does not depend on the batch: traced at 1."""
    from ..cost.estimate import estimate_layers, overridden_input
    from ..model.grouping import layers_of
    from ..scheme.accumulators import device_accumulators

    device_accumulators(device)  # a device naming an unknown accumulator fails before the trace
    spec = unet_spec(config)
    run_input = overridden_input(config, 1, None)
    layers = layers_of(build_unet(spec), spec, 1, run_input.sample_size, run_input.context_length,
                       config.runtime.fused_attention)
    estimate = estimate_layers(layers, config, device, spec, run_input, config.convention, {})
    return {r.layer.name: r.device for r in estimate.layers if r.device is not None}


def full_precision_unet(directory, metadata: dict, config, checkpoint: str | None = None, checked: int = 4):
    """The full-precision UNet the artifact was calibrated from, and how it was found: `checkpoint`, the
    artifact's own --checkpoint, or (presets) the seeded initialisation rebuilt. Its weights must quantize to
    the stored codes, or it is not that UNet: (None, why) then. `checked` quantized layers, spread over the
    model, are quantized again (another seed or checkpoint changes every weight; all of LDM-4's would take
    a minute under the mse calibrator)."""
    from safetensors import safe_open

    from ..calibrate.torch_quant import saturating
    from ..calibrate.weights import WeightQuantizer

    settings = metadata.get("settings", {})
    path = checkpoint or settings.get("checkpoint")
    if path:
        if not Path(path).is_dir():
            return None, f"checkpoint {path} is not here"
        unet, _ = load_checkpoint(path)
        how = f"checkpoint {path}"
    else:
        seed = settings.get("seed", 0)
        unet = build_artifact_unet(config, seed)
        how = f"diffusers' initialisation with seed {seed}, as simdq calibrate built it"
    fp_modules = dict(unet.named_modules())
    granularity = config.quant.granularity
    stored_layers = [(name, entry) for name, entry in metadata["layers"].items() if "weight_format" in entry]
    picks = stored_layers[::max(1, -(-len(stored_layers) // checked))]
    with safe_open(str(Path(directory) / TENSORS), framework="numpy") as stored:
        for name, entry in picks:
            again = WeightQuantizer(entry["weight_format"], granularity.weights, granularity.group_size,
                                    settings.get("calibrator", "minmax")).quantize(fp_modules[name].weight)
            codes = pack_codes(again.codes.numpy(), saturating(entry["weight_format"]).bits)
            if not np.array_equal(codes, stored.get_tensor(f"{name}.weight.codes")):
                return None, f"{how}: its weights do not quantize to the artifact's codes ({name})"
    return unet.eval(), how


def check_timesteps(model: EmulatedUNet, timesteps) -> None:
    """Every timestep has a calibrated activation range (per_step artifacts know only their own schedule)."""
    if model.timestep_groups != "per_step":
        return
    entry = next(iter(model.metadata.get("activations", {}).values()), {})  # every quantizer has the same groups
    calibrated = {int(k) for k in entry.get("scales", {}) if k != "all"}
    missing = [int(t) for t in timesteps if int(t) not in calibrated]
    if calibrated and missing:
        steps = model.metadata.get("settings", {}).get("steps")
        known = sorted(calibrated, reverse=True)[:4]
        raise SimdqError(f"timesteps {missing[:4]}{' ...' if len(missing) > 4 else ''} have no calibrated activation "
                         f"range: the artifact is calibrated per step at {steps} steps ({known} ...); use --steps "
                         f"{steps} or recalibrate with --timestep-groups N")
