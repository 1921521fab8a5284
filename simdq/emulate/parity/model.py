"""`simdq parity model`: a calibrated UNet on the emulator, layer by layer and over the whole DDIM trajectory.

Per emulated GEMM, at every step, on the codes that layer actually sees:
  (a) the emulator against a reference it did not compute: with an exact accumulator, torch's float64 conv /
      matmul of the same values (bit for bit, where float64 holds every partial sum exactly, which the check
      proves first); with a device rule, the plain reference of that rule (emulator/reference/gemm.py, one
      dot product at a time in Fractions) on `samples` outputs drawn per layer and step;
  (b) the device's arithmetic against exact accumulation of the same codes, after the epilogue: max |diff|,
      the distance in float32 ULPs (a histogram), SQNR;
  (c) exact emulation against the fake-quantized torch module on the same input (requantized layers: against
      the fake output rounded to the same int8 grid, which may differ by one code: the bias is an int32 there
      and the rounding integer; more than one code apart counts as past the bound). Both compute the same
      quantized values; the fake path rounds each dequantized operand to float32 and sums in float32, so
          |fake - emulated| <= (K + 8) u (sum_k |x_k w_k| + |b|),  u = 2^-24
      (two operand roundings and K - 1 float32 additions, each at most u relative, bound the fake side; the
      epilogue's two scale products and the bias add the emulated side): the report gives the largest ratio
      of the difference to this bound and how many outputs pass it (none should).
Per step: the emulated UNet's output against the full-precision UNet (d), and against the fake-quantized one,
on the same input; and at the end, the final latents of the four trajectories (device, exact accumulation,
fake-quantized, full precision), each sampled on its own from the same noise.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from emulator import get_accumulator
from emulator.gemm import float64_sums_exact, split_bounds
from emulator.reference.gemm import exponents, reference_dot

from ...calibrate import torch_quant
from ...calibrate.pipeline import sqnr_from_sums
from ..modules import Product, conv_product, gemm_product
from ..operands import dequantized, operand_values

U32 = 2.0**-24
ULP_BINS = ("0", "1", "2-3", "4-15", "16-255", ">=256")
ULP_EDGES = (0, 1, 2, 4, 16, 256, np.inf)


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How many float32 values lie between a and b (0: the same float32), on the ordered integer line."""
    def ordered(x):
        bits = np.ascontiguousarray(x, dtype=np.float32).view(np.int32).astype(np.int64)
        return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)
    return np.abs(ordered(a) - ordered(b))


@dataclass
class LayerParity:
    name: str
    kernel: str
    accumulator: str
    source: str
    calls: int = 0
    outputs: int = 0
    reference: str = ""
    checked: int = 0
    mismatched: int = 0
    first_mismatch: str = ""
    max_abs_diff: float = 0.0
    ulps: Counter = field(default_factory=Counter)
    signal: float = 0.0
    noise: float = 0.0
    fake_max_diff: float = 0.0
    fake_max_ratio: float = 0.0
    fake_outside: int = 0
    step_sqnr: dict = field(default_factory=dict)  # timestep -> SQNR of device vs exact (dB)

    @property
    def sqnr_db(self) -> float:
        return sqnr_from_sums(self.signal, self.noise)

    def as_dict(self) -> dict:
        data = {k: v for k, v in self.__dict__.items() if k not in ("ulps", "signal", "noise", "step_sqnr")}
        return {**data, "ulp_histogram": {b: self.ulps.get(b, 0) for b in ULP_BINS}, "sqnr_db": self.sqnr_db,
                "step_sqnr_db": self.step_sqnr}


def _patches(x: np.ndarray, w_shape, conv, rows) -> list:
    """The (c, kh, kw)-ordered input taps of the outputs `rows` (n, o, y, x) of a zero-padded convolution."""
    ph, pw = conv.padding
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out_channels, _, kh, kw = w_shape
    (sh, sw), (dh, dw) = conv.stride, conv.dilation
    per_group = x.shape[1] // conv.groups
    out = []
    for n, o, y, xx in rows:
        g = o // (out_channels // conv.groups)
        window = padded[n, g * per_group:(g + 1) * per_group, y * sh:y * sh + (kh - 1) * dh + 1:dh,
                        xx * sw:xx * sw + (kw - 1) * dw + 1:dw]
        out.append(window.reshape(-1))
    return out


class ModelParity:
    """The observer of an EmulatedUNet's products (see the module docstring), collecting LayerParity rows."""

    def __init__(self, samples: int = 4, seed: int = 0):
        self.samples, self.random = samples, random.Random(seed)
        self.layers: dict = {}
        self.timestep = None

    def __call__(self, product: Product) -> None:
        arithmetic = product.arithmetic
        row = self.layers.get(product.name)
        if row is None:
            row = self.layers[product.name] = LayerParity(product.name, arithmetic.kernel, arithmetic.accumulator,
                                                          arithmetic.source)
        device_exact = get_accumulator(arithmetic.accumulator).kind == "exact"
        conv = product.conv
        if device_exact:
            exact_raw = product.accumulator
        elif conv is not None:
            exact_raw = conv_product(product.activation, product.weight, "exact", conv)
        else:
            exact_raw = gemm_product(product.activation, product.weight, "exact")
        row.calls += 1
        row.outputs += exact_raw.size
        self._check(row, product, exact_raw, device_exact)
        exact_out = product.finish(exact_raw)
        device = product.output.numpy().astype(np.float32)
        exact = exact_out.numpy().astype(np.float32)
        diff = np.abs(device.astype(np.float64) - exact)
        row.max_abs_diff = max(row.max_abs_diff, float(diff.max(initial=0)))
        row.ulps.update(_ulp_counts(device, exact))
        signal, noise = float((exact.astype(np.float64) ** 2).sum()), float((diff ** 2).sum())
        row.signal += signal
        row.noise += noise
        if self.timestep is not None:
            previous = row.step_sqnr.get(self.timestep, (0.0, 0.0))
            row.step_sqnr[self.timestep] = (previous[0] + signal, previous[1] + noise)
        self._against_fake(row, product, exact_out)

    def _check(self, row, product, exact_raw, device_exact) -> None:
        a, b = operand_values(product.activation), operand_values(product.weight)
        conv = product.conv
        k = b.shape[1] * b.shape[2] * b.shape[3] if conv is not None else a.shape[1]
        if device_exact:
            if not float64_sums_exact(a, b, k):
                row.reference = row.reference or "float64 torch: not exact for these values (unchecked)"
                return
            if conv is not None:
                reference = F.conv2d(torch.from_numpy(a), torch.from_numpy(b), None, conv.stride, conv.padding,
                                     conv.dilation, conv.groups).numpy()
            else:
                reference = (torch.from_numpy(a) @ torch.from_numpy(b)).numpy()
            if exact_raw.dtype.kind == "f":
                reference = reference.astype(np.float32)
            row.reference = "float64 torch (exact here)"
            wrong = np.flatnonzero(exact_raw.reshape(-1) != reference.reshape(-1))
            row.checked += exact_raw.size
        else:
            acc = get_accumulator(row.accumulator)
            shape = exact_raw.shape
            picks = [tuple(int(self.random.randrange(s)) for s in shape) for _ in range(self.samples)]
            if conv is not None:
                lhs = _patches(a, b.shape, conv, picks)
                rhs = [b[o].reshape(-1) for _, o, _, _ in picks]
            else:
                lhs = [a[i] for i, _ in picks]
                rhs = [b[:, j] for _, j in picks]
            device_raw = product.accumulator
            integer = device_raw.dtype.kind in "iu"
            core = acc.kind == "tensor_core"
            bounds = split_bounds(k, acc.split_k, acc.split_tile) if core else None
            wrong = []
            for index, (pick, left, right) in enumerate(zip(picks, lhs, rhs)):
                left_v = [int(v) for v in left] if integer else list(left)
                right_v = [int(v) for v in right] if integer else list(right)
                expected = reference_dot(left_v, right_v, acc,
                                         exponents(left, product.activation.fmt.emin) if core else None,
                                         exponents(right, product.weight.fmt.emin) if core else None, bounds)
                same = device_raw[pick] == expected if integer else \
                    np.float32(device_raw[pick]).tobytes() == np.float32(expected).tobytes()
                if not same:
                    wrong.append(index)
            row.reference = f"plain reference of {acc.name} (emulator/reference/gemm.py), {self.samples} sampled outputs a call"
            row.checked += len(picks)
        row.mismatched += len(wrong)
        if len(wrong) and not row.first_mismatch:
            row.first_mismatch = f"call {row.calls}, output {int(wrong[0])}"

    def _against_fake(self, row, product, exact_out) -> None:
        fake = product.fake_output().detach()
        if product.output_scale is not None:  # requantized: the fake path's output rounded to the same int8 grid
            fake = torch_quant.fake_quantize(fake.reshape(exact_out.shape), "int8", product.output_scale)
            diff = np.abs(fake.double().numpy() - exact_out.double().numpy())
            codes = diff / product.output_scale
            row.fake_max_diff = max(row.fake_max_diff, float(diff.max(initial=0)))
            row.fake_max_ratio = max(row.fake_max_ratio, float(codes.max(initial=0)))
            # more than one output code apart; both sides' dequantized values may be a float32 ulp off code * sy
            # (|y| <= 128 sy: 2^-16 sy each), hence the margin
            row.fake_outside += int((codes > 1 + 2.0**-14).sum())
            return
        fake = fake.numpy().astype(np.float64)
        x = np.abs(dequantized(product.activation))
        w = np.abs(dequantized(product.weight))
        conv = product.conv
        if conv is not None:
            magnitude = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), None, conv.stride, conv.padding,
                                 conv.dilation, conv.groups).numpy()
            k = w.shape[1] * w.shape[2] * w.shape[3]
        else:
            magnitude = x @ w
            k = x.shape[1]
        if product.bias is not None:
            magnitude = magnitude + np.abs(product.bias.detach().double().numpy()).reshape(
                (1, -1, 1, 1) if conv is not None else (1, -1))
        bound = 1.01 * (k + 8) * U32 * magnitude
        fake = fake.reshape(exact_out.shape)
        diff = np.abs(fake - exact_out.numpy().astype(np.float64))
        ratio = np.divide(diff, bound, out=np.where(diff > 0, np.inf, 0.0), where=bound > 0)
        row.fake_max_diff = max(row.fake_max_diff, float(diff.max(initial=0)))
        row.fake_max_ratio = max(row.fake_max_ratio, float(ratio.max(initial=0)))
        row.fake_outside += int((ratio > 1).sum())


def _ulp_counts(device: np.ndarray, exact: np.ndarray) -> Counter:
    counts, _ = np.histogram(ulp_distance(device, exact), bins=ULP_EDGES)
    return Counter(dict(zip(ULP_BINS, counts.tolist())))


def _compare(reference: torch.Tensor, other: torch.Tensor) -> dict:
    ref, out = reference.double().flatten(), other.double().flatten()
    noise = float((out - ref).pow(2).sum())
    return {"mse": noise / max(ref.numel(), 1), "cosine": float(F.cosine_similarity(ref, out, dim=0)),
            "sqnr_db": sqnr_from_sums(float(ref.pow(2).sum()), noise),
            "max_abs_diff": float((out - ref).abs().max()) if ref.numel() else 0.0}


@dataclass
class ParityReport:
    artifact: str
    device: str
    steps: int
    seed: int
    reference: str  # how the full-precision UNet was found, or why it was not
    layers: list  # LayerParity rows, in model order
    per_step: list  # {timestep, vs_full_precision, vs_fake_quant}
    trajectories: dict  # name -> comparison of final latents
    exact_everywhere: bool  # every layer's accumulator is exact (then (b) is empty by definition)

    def as_dict(self) -> dict:
        return {"artifact": self.artifact, "device": self.device, "steps": self.steps, "seed": self.seed,
                "full_precision_reference": self.reference, "exact_everywhere": self.exact_everywhere,
                "layers": [row.as_dict() for row in self.layers], "per_step": self.per_step,
                "trajectories": self.trajectories}

    @property
    def passed(self) -> bool:
        """(a) found no mismatch and (c) stayed within its bound everywhere."""
        return all(row.mismatched == 0 and row.fake_outside == 0 for row in self.layers)


def model_parity(model, fp_unet, *, artifact: str, device: str, steps: int, seed: int = 0,
                 guidance_scale: float = 1.0, samples: int = 4, fp_reference: str = "", on_step=None) -> ParityReport:
    """Run the checks of the module docstring over a DDIM trajectory of `steps` steps (see ModelParity)."""
    from ...model.sampling import ddim_sample

    parity = ModelParity(samples, seed)
    per_step, last = [], {}

    def emulated(**inputs):
        last["output"] = model(**inputs)  # before guidance combines the halves: comparable with the others
        return last["output"]

    def step(index, timestep, inputs, prediction):
        with model.emulating(False):
            fake = model(**inputs)
        entry = {"timestep": timestep, "vs_fake_quant": _compare(fake, last["output"])}
        if fp_unet is not None:
            with torch.no_grad():
                entry["vs_full_precision"] = _compare(fp_unet(**inputs).sample, last["output"])
        per_step.append(entry)
        parity.timestep = None
        if on_step is not None:
            on_step()

    def before(module, args, kwargs):
        value = kwargs.get("timestep", args[1] if len(args) > 1 else None)
        parity.timestep = int(torch.as_tensor(value).reshape(-1)[0])

    sampling = dict(steps=steps, seed=seed, guidance_scale=guidance_scale)
    handle = model.unet.register_forward_pre_hook(before, with_kwargs=True)
    model.observe(parity)
    try:
        device_latents = ddim_sample(emulated, model.unet, on_step=step, **sampling)
    finally:
        model.observe(None)
        handle.remove()
    for row in parity.layers.values():  # (signal, noise) sums per step -> dB
        row.step_sqnr = {t: sqnr_from_sums(*sums) for t, sums in row.step_sqnr.items()}
    with model.emulating(False):
        fake_latents = ddim_sample(model, model.unet, **sampling)
    exact_everywhere = all(get_accumulator(a.accumulator).kind == "exact" for a in model.plan.values()
                           if a.emulated)
    trajectories = {"device vs fake-quant": _compare(fake_latents, device_latents)}
    if not exact_everywhere:
        with model.accumulating("exact"):
            exact_latents = ddim_sample(model, model.unet, **sampling)
        trajectories["device vs exact accumulation"] = _compare(exact_latents, device_latents)
    if fp_unet is not None:
        def fp(**inputs):
            with torch.no_grad():
                return fp_unet(**inputs).sample
        fp_latents = ddim_sample(fp, fp_unet, **sampling)
        trajectories["device vs full precision"] = _compare(fp_latents, device_latents)
        trajectories["fake-quant vs full precision"] = _compare(fp_latents, fake_latents)
    order = list(model.plan)
    rows = sorted(parity.layers.values(), key=lambda r: order.index(r.name) if r.name in order else len(order))
    return ParityReport(artifact, device, steps, seed, fp_reference, rows, per_step, trajectories, exact_everywhere)

