"""Sampling a UNet: the inputs it sees along its own DDIM trajectory (diffusers' DDIMScheduler), with
seeded stand-ins for the conditioning a pipeline would pass.
"""

from __future__ import annotations

import math
import sys

import torch

from ..errors import SimdqError


def conditioning(unet, batch: int, generator: torch.Generator, context_length: int = 77) -> dict:
    """Seeded stand-ins for what a pipeline would pass beside the latents (text context, SDXL's added
    conditions, class labels), shaped by the UNet's config."""
    config, extra = unet.config, {}
    if getattr(config, "cross_attention_dim", None):
        width = config.encoder_hid_dim or config.cross_attention_dim
        width = width[0] if isinstance(width, (list, tuple)) else width
        extra["encoder_hidden_states"] = torch.randn(batch, context_length, width, generator=generator)
    if getattr(config, "addition_embed_type", None) == "text_time":
        text = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
        extra["added_cond_kwargs"] = {"text_embeds": torch.randn(batch, text, generator=generator),
                                      "time_ids": torch.randn(batch, 6, generator=generator)}
    if getattr(config, "num_class_embeds", None):
        extra["class_labels"] = torch.randint(0, config.num_class_embeds, (batch,), generator=generator)
    return extra


def latent_shape(unet) -> tuple:
    """(channels, height, width) of the UNet's latents."""
    size = unet.config.sample_size
    return (unet.config.in_channels, *(tuple(size) if isinstance(size, (list, tuple)) else (size, size)))


def ddim_trajectory(unet, samples: int, steps: int, seed: int = 0, batch: int = 8, latents=None,
                    context_length: int = 77, progress: bool = True) -> list:
    """The UNet's inputs along its own DDIM sampling (ddim_sample) from seeded noise, or from `latents`: one
    keyword-argument dict per batch and step, in sampling order."""
    generator = torch.Generator().manual_seed(seed)
    if latents is None:
        latents = torch.randn(samples, *latent_shape(unet), generator=generator)
    inputs, total = [], math.ceil(len(latents) / batch) * steps

    def record(index, timestep, step_inputs, prediction):
        if not torch.isfinite(prediction).all():
            start = float(latents.abs().max())
            raise SimdqError(f"the full-precision UNet's prediction is NaN or infinite at DDIM step {index} (timestep "
                             f"{int(timestep)}), starting from latents up to |x| = {start:.3g} (DDIM starts from "
                             "unit-variance noise)")
        inputs.append(step_inputs)
        if progress:
            print(f"\rcalibration trajectory {len(inputs)}/{total} UNet calls", end="", file=sys.stderr, flush=True)

    def model(**step_inputs):
        with torch.no_grad():
            return unet(**step_inputs).sample

    for start in range(0, len(latents), batch):
        ddim_sample(model, unet, steps=steps, latents=latents[start:start + batch], generator=generator,
                    context_length=context_length, on_step=record)
    if progress:
        print(file=sys.stderr)
    return inputs


def ddim_timesteps(steps: int, num_train_timesteps: int = 1000) -> list:
    """The timesteps diffusers' DDIMScheduler visits in `steps` steps (the calibration's own schedule)."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(num_train_timesteps=num_train_timesteps)
    scheduler.set_timesteps(steps)
    return [int(t) for t in scheduler.timesteps]


def guided(unet) -> bool:
    """Whether classifier-free guidance applies: the UNet takes a cross-attention context to drop (class-label
    UNets have no null class that a stand-in could name)."""
    return bool(getattr(unet.config, "cross_attention_dim", None))


def ddim_sample(model, unet_config_of, *, steps: int, seed: int = 0, batch: int = 1, guidance_scale: float = 1.0,
                context_length: int = 77, on_step=None, latents=None, generator=None) -> torch.Tensor:
    """Final latents of DDIM sampling (diffusers' DDIMScheduler, eta 0) from seeded noise, or from `latents`.

    model(**inputs) returns the noise prediction; unet_config_of is the UNet whose config gives shapes and
    conditioning (seeded stand-ins, as `conditioning`, drawn after the noise from `generator`, by default one
    seeded with `seed`). With guidance_scale > 1 and a conditional UNet, each step runs the unconditional (zero
    context: the stand-in of an empty prompt) and the conditional half in one batch, eps = eps_u + g (eps_c -
    eps_u). on_step(index, timestep, inputs, prediction) sees every step."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(num_train_timesteps=1000)
    scheduler.set_timesteps(steps)
    generator = generator if generator is not None else torch.Generator().manual_seed(seed)
    if latents is None:
        latents = torch.randn(batch, *latent_shape(unet_config_of), generator=generator)
    extra = conditioning(unet_config_of, len(latents), generator, context_length)
    guide = guidance_scale != 1.0 and guided(unet_config_of)
    if guide:
        extra = {key: _with_unconditional(value, key) for key, value in extra.items()}
    for index, t in enumerate(scheduler.timesteps):
        sample = torch.cat([latents, latents]) if guide else latents
        inputs = {"sample": sample, "timestep": torch.full((len(sample),), int(t)), **extra}
        prediction = model(**inputs)
        if guide:
            unconditional, conditional = prediction.chunk(2)
            prediction = unconditional + guidance_scale * (conditional - unconditional)
        if on_step is not None:
            on_step(index, int(t), inputs, prediction)
        latents = scheduler.step(prediction, t, latents).prev_sample
    return latents


def _with_unconditional(value, key):
    """The unconditional half first: a zero context; the other conditions (SDXL's, labels) as they are."""
    if isinstance(value, dict):
        return {k: _with_unconditional(v, k) for k, v in value.items()}
    if key == "encoder_hidden_states":
        return torch.cat([torch.zeros_like(value), value])
    return torch.cat([value, value])
