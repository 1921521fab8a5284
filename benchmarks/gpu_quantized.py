"""nn.Linear layers in FP8 and int8 on a GPU's tensor cores, written as a user writes them by hand with plain
PyTorch: the weight quantized once per tensor, the activations per tensor at run time (abs, amax, the scale, the
divide, round and clamp for int8, the cast: one eager kernel each), then torch._scaled_mm (FP8, the scales and the
bias in its epilogue) or torch._int_mm (int8, int32 out, dequantized and biased by separate kernels).

benchmarks/gpu_validation.py times a UNet with these in place of its nn.Linear layers and compares the GPU with
simdq's prediction of `runtime.activation_quantization: dynamic`.
"""

from __future__ import annotations

import torch

FP8_MAX = 448.0
INT8_MAX = 127.0


class _DynamicLinear(torch.nn.Module):
    """The weight quantized once per tensor (stored transposed: column-major, as cuBLASLt needs); activations
    per tensor at run time by the same `quantize`."""

    largest: float

    @staticmethod
    def quantize(x, scale):
        raise NotImplementedError

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        weight = linear.weight.detach()
        scale = weight.abs().amax().float() / self.largest
        self.register_buffer("weight_scale", scale)
        self.register_buffer("weight_t", self.quantize(weight, scale).t())
        self.bias = linear.bias
        self.out_features = linear.out_features

    def activation_codes(self, x):
        """(codes, scale) of x flattened to rows: |x|, amax, the scale, then quantize's kernels."""
        rows = x.reshape(-1, x.shape[-1])
        scale = rows.abs().amax().float() / self.largest
        return self.quantize(rows, scale), scale


class DynamicFP8Linear(_DynamicLinear):
    largest = FP8_MAX

    @staticmethod
    def quantize(x, scale):
        return (x / scale).to(torch.float8_e4m3fn)

    def forward(self, x):
        codes, scale = self.activation_codes(x)
        y = torch._scaled_mm(codes, self.weight_t, scale_a=scale, scale_b=self.weight_scale, bias=self.bias,
                             out_dtype=x.dtype)
        return y.reshape(*x.shape[:-1], self.out_features)


class DynamicInt8Linear(_DynamicLinear):
    largest = INT8_MAX

    @staticmethod
    def quantize(x, scale):
        return torch.round(x / scale).clamp_(-128, 127).to(torch.int8)

    def forward(self, x):
        codes, scale = self.activation_codes(x)
        accumulated = torch._int_mm(codes, self.weight_t)
        y = (accumulated * (scale * self.weight_scale)).to(x.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)


VARIANTS = {"fp8-dynamic": DynamicFP8Linear, "int8-dynamic": DynamicInt8Linear}


def quantize_linears(model: torch.nn.Module, variant: str, inputs: dict) -> list:
    """Swap every nn.Linear for the variant's module where its kernel takes the layer's shapes (torch._int_mm
    wants more than 16 rows; both want K and N multiples of 16); returns the names of the layers that stay in
    the model's own precision. `inputs`: one forward's inputs, to see each layer's rows."""
    seen = {}

    def keep(args, name):
        seen.setdefault(name, args[0])  # returns None: the inputs pass unchanged

    hooks = [module.register_forward_pre_hook(lambda m, args, name=name: keep(args, name))
             for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    with torch.no_grad():
        model(**inputs)
    for hook in hooks:
        hook.remove()
    kept = []
    for name, x in seen.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        linear = getattr(parent, child)
        try:
            quantized = VARIANTS[variant](linear)
            with torch.no_grad():
                quantized(x)
        except RuntimeError:
            kept.append(name)
            continue
        setattr(parent, child, quantized)
    return kept
