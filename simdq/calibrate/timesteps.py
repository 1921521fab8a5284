"""Which timestep the UNet is running: the key of timestep-aware activation ranges."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..errors import SimdqError


class TimestepContext:
    """The timestep of the forward pass in progress, read from the UNet's own `timestep` argument (never a
    call counter, which classifier-free guidance and batching would break)."""

    def __init__(self):
        self.timestep = None

    def attach(self, model: nn.Module):
        def remember(module, args, kwargs):
            value = kwargs.get("timestep", args[1] if len(args) > 1 else None)
            values = torch.as_tensor(value).reshape(-1)
            if values.numel() == 0 or not torch.all(values == values[0]):
                raise SimdqError("timestep-aware quantization needs one timestep per UNet call "
                                 f"(got {values.tolist()})")
            self.timestep = int(values[0])

        return model.register_forward_pre_hook(remember, with_kwargs=True)
