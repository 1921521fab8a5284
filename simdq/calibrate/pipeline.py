"""Post-training calibration of a diffusers UNet: calibration inputs from the full-precision model's own
DDIM trajectory (simdq.model.sampling; as Q-Diffusion and ModelOpt collect them), the quantized model, and
its quality.

Quality: per layer, the SQNR (dB) of the quantized weights and of the quantized inputs on the
calibration inputs; per timestep, the MSE and cosine similarity of the quantized UNet's output against
full precision.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn

from ..model.sampling import ddim_trajectory
from .activations import ActivationQuantizer
from .modules import QuantConv2d, QuantLinear, calibrate_activations, quantize_model


def sqnr_from_sums(signal: float, noise: float) -> float:
    """10 log10(signal / noise) of summed squares; inf when there is no noise."""
    return math.inf if noise == 0 else 10 * math.log10(signal / noise) if signal else -math.inf


def sqnr_db(reference: torch.Tensor, quantized: torch.Tensor) -> float:
    """10 log10(|x|^2 / |x - q(x)|^2); inf when the quantization is exact."""
    noise = (reference.double() - quantized.double()).pow(2).sum().item()
    return sqnr_from_sums(reference.double().pow(2).sum().item(), noise)


def weight_sqnr(fp_model: nn.Module, quantized: nn.Module) -> dict:
    fp_modules = dict(fp_model.named_modules())
    return {name: sqnr_db(fp_modules[name].weight, module.weight)
            for name, module in quantized.named_modules() if isinstance(module, (QuantConv2d, QuantLinear))}


def activation_sqnr(quantized: nn.Module, inputs: list) -> dict:
    """SQNR of every quantized layer's input against its fake-quantized self, over `inputs`."""
    totals = {}

    def measure(name):
        def hook(module, args):
            x = args[0]
            q = module.input_quantizer(x)
            signal, noise = totals.get(name, (0.0, 0.0))
            totals[name] = (signal + x.double().pow(2).sum().item(), noise + (x.double() - q.double()).pow(2).sum().item())
        return hook

    handles = [m.register_forward_pre_hook(measure(name)) for name, m in quantized.named_modules()
               if isinstance(m, (QuantConv2d, QuantLinear)) and isinstance(m.input_quantizer, ActivationQuantizer)]
    with torch.no_grad():
        for step in inputs:
            quantized(**step)
    for handle in handles:
        handle.remove()
    return {name: sqnr_from_sums(signal, noise) for name, (signal, noise) in totals.items()}


def output_quality(fp_model: nn.Module, quantized: nn.Module, inputs: list) -> dict:
    """timestep -> {"mse", "cosine"} of the quantized UNet's output against full precision."""
    per_step = {}
    with torch.no_grad():
        for step in inputs:
            reference, output = fp_model(**step).sample, quantized(**step).sample
            t = int(step["timestep"].reshape(-1)[0])
            mse = (output.double() - reference.double()).pow(2).mean().item()
            cosine = torch.nn.functional.cosine_similarity(
                output.double().flatten(), reference.double().flatten(), dim=0).item()
            previous = per_step.get(t)
            per_step[t] = {"mse": mse, "cosine": cosine} if previous is None else {
                "mse": (previous["mse"] + mse) / 2, "cosine": (previous["cosine"] + cosine) / 2}
    return per_step


def calibrate_unet(unet: nn.Module, quant, model_dtype: str = "fp32", *, samples: int = 8, steps: int = 10,
                   calibrator: str = "minmax", timestep_groups="per_step", merge: bool = False, seed: int = 0,
                   batch: int = 8, latents=None, progress: bool = True):
    """Quantize `unet` by the scheme and calibrate it on its own DDIM trajectory.

    Returns (quantized UNet, report) where report holds per-layer weight and input SQNR and per-timestep
    output MSE and cosine similarity against the full-precision UNet (left unchanged)."""
    unet = unet.eval()
    inputs = ddim_trajectory(unet, samples, steps, seed, batch, latents, progress=progress)
    quantized = copy.deepcopy(unet)
    swapped = quantize_model(quantized, quant, model_dtype, calibrator, timestep_groups)
    calibrate_activations(quantized, inputs, merge)
    report = {
        "layers": swapped,
        "weight_sqnr_db": weight_sqnr(unet, quantized),
        "input_sqnr_db": activation_sqnr(quantized, inputs),
        "output": output_quality(unet, quantized, inputs),
    }
    return quantized, report
