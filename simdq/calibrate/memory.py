"""Whether a calibration fits in this machine's memory, decided before the UNet is built on the CPU.

A UNet of 10^6 channels or a batch of 65536 LDM-4 latents would otherwise die in the allocator minutes in.
The need is a lower bound from the meta-device trace: two float32 copies of the weights (the full-precision
UNet and its quantized twin), the recorded DDIM inputs of every call, and one UNet call's largest layer (its
inputs, outputs and attention scores) at the calibration batch. Calibrators keep samples on top of this.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import SimdqError

FLOAT32 = 4
GiB = 2**30


def available_bytes() -> int:
    """Physical memory, or the container's cgroup limit where that is lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def calibration_bytes(spec, samples: int, steps: int, batch: int) -> dict:
    """The lower bound's parts in bytes: weights, trajectory, activations."""
    from ..model.grouping import layers_of
    from ..model.unets import build_unet, example_inputs

    unet = build_unet(spec)  # meta device: shapes, no memory
    weights = 2 * FLOAT32 * sum(p.numel() for p in unet.parameters())
    one_call = example_inputs(unet, spec, 1)
    per_sample = sum(value.numel() for value in one_call.values() if hasattr(value, "numel"))
    layers = layers_of(unet, spec, 1, fused_attention=False)
    largest = max((layer.read + layer.write for layer in layers), default=0)
    return {"weights": weights, "trajectory": FLOAT32 * per_sample * samples * steps,
            "activations": FLOAT32 * largest * min(batch, samples)}


def check_calibration_memory(spec, samples: int, steps: int, batch: int) -> None:
    need = calibration_bytes(spec, samples, steps, batch)
    have = available_bytes()
    if sum(need.values()) > have:
        parts = ", ".join(f"{name} {value / GiB:.1f}" for name, value in need.items())
        raise SimdqError(f"calibrating {spec.name} needs at least {sum(need.values()) / GiB:.1f} GiB ({parts}; "
                         f"--samples {samples}, --steps {steps}, --batch {batch}) and this machine has "
                         f"{have / GiB:.1f} GiB: lower --batch, --samples or --steps")
