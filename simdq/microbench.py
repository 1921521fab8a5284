"""GPU microbenchmarks for fitting a device model (`simdq hw calibrate`): time GEMMs, convolutions,
attention, norms and elementwise ops on a real device and fit the calibrated GPU model's per-class parameters.

Timing: every op is warmed up, captured `REPS` times into a CUDA graph, and the graph replayed; the
result is the median over replays of replay time / REPS, so launch gaps are those of a graph (what
a deployed UNet sees) and clock jitter is averaged out. On a CPU device (for tests) a plain loop is
timed instead. The default shapes are a grid of UNet-like sizes, deliberately not those of any preset,
so that validating on a preset measures generalisation.
"""

from __future__ import annotations

import datetime
import statistics
import time
from dataclasses import dataclass
from typing import Callable

from hw_models.fit import Sample, fit_classes

from .errors import SimdqError
from .model.trace import FLOPS_PER_ELEMENT, NORM_FLOPS_PER_ELEMENT, SOFTMAX_FLOPS_PER_ELEMENT

REPS = 20
REPLAYS = 7


@dataclass
class Benchmark:
    op_class: str
    precision: str  # compute precision of GEMM classes; "" for vector classes
    gemm_dims: tuple
    vector_flops: float
    traffic_bytes: float
    run: Callable


def time_op(run: Callable, device) -> float:
    """Median seconds per call of `run` (see the module docstring)."""
    import torch

    if device.type != "cuda":
        for _ in range(2):
            run()
        times = []
        for _ in range(REPLAYS):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        return statistics.median(times)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            run()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(REPS):
            run()
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(REPLAYS):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3 / REPS)
    return statistics.median(times)


def _linear(m, n, k, precision, device):
    import torch
    import torch.nn.functional as F

    if precision == "int8":
        a = torch.randint(-64, 64, (m, k), dtype=torch.int8, device=device)
        b = torch.randint(-64, 64, (n, k), dtype=torch.int8, device=device).t()
        return Benchmark("linear_int8", "int8", ((1, m, n, k),), 0, m * k + k * n + 4 * m * n,
                         lambda: torch._int_mm(a, b))
    if precision == "fp8":
        a = torch.randn(m, k, device=device).to(torch.float8_e4m3fn)
        b = torch.randn(n, k, device=device).to(torch.float8_e4m3fn).t()
        one = torch.ones((), device=device)
        return Benchmark("linear_fp8", "fp8", ((1, m, n, k),), 0, m * k + k * n + 2 * m * n,
                         lambda: torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16))
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[precision]
    size = torch.finfo(dtype).bits // 8
    x, w, bias = (torch.randn(*s, device=device, dtype=dtype) for s in ((m, k), (n, k), (n,)))
    return Benchmark(f"linear_{precision}", precision, ((1, m, n, k),), 0, size * (m * k + k * n + m * n + n),
                     lambda: F.linear(x, w, bias))


def _conv(batch, c_in, c_out, size, kernel, dtype, precision, device, stride=1):
    import torch
    import torch.nn.functional as F

    x = torch.randn(batch, c_in, size, size, device=device, dtype=dtype)
    w = torch.randn(c_out, c_in, kernel, kernel, device=device, dtype=dtype)
    bias = torch.randn(c_out, device=device, dtype=dtype)
    out_size = (size + 2 * (kernel // 2) - kernel) // stride + 1
    elements = batch * c_in * size * size + w.numel() + batch * c_out * out_size * out_size
    dims = ((1, batch * out_size * out_size, c_out, c_in * kernel * kernel),)
    return Benchmark(f"conv_{precision}", precision, dims, 0, elements * x.element_size(),
                     lambda: F.conv2d(x, w, bias, stride=stride, padding=kernel // 2))


def _attention(batch_heads, queries, keys, head_dim, dtype, precision, device):
    import torch
    import torch.nn.functional as F

    q = torch.randn(1, batch_heads, queries, head_dim, device=device, dtype=dtype)
    k, v = (torch.randn(1, batch_heads, keys, head_dim, device=device, dtype=dtype) for _ in range(2))
    dims = ((batch_heads, queries, keys, head_dim), (batch_heads, queries, head_dim, keys))
    traffic = (2 * q.numel() + k.numel() + v.numel()) * q.element_size()
    flops = SOFTMAX_FLOPS_PER_ELEMENT * batch_heads * queries * keys
    return Benchmark(f"attention_{precision}", precision, dims, flops, traffic,
                     lambda: F.scaled_dot_product_attention(q, k, v))


def _vector(op_class, elements, dtype, device, kind):
    import torch
    import torch.nn.functional as F

    x = torch.randn(elements, device=device, dtype=dtype)
    size = x.element_size()
    if kind == "silu":
        return Benchmark(op_class, "", (), FLOPS_PER_ELEMENT["silu"] * elements, 2 * elements * size, lambda: F.silu(x))
    if kind == "add":
        y = torch.randn_like(x)
        return Benchmark(op_class, "", (), elements, 3 * elements * size, lambda: x + y)
    if kind == "softmax":
        rows = x.view(-1, 1024) if elements % 1024 == 0 else x.view(1, -1)
        return Benchmark(op_class, "", (), SOFTMAX_FLOPS_PER_ELEMENT * elements, 2 * elements * size,
                         lambda: torch.softmax(rows, -1))
    if kind == "cat":
        y = torch.randn_like(x)
        return Benchmark(op_class, "", (), 0, 4 * elements * size, lambda: torch.cat([x, y]))
    if kind == "upsample":
        image = x.view(1, -1, 32, 32) if elements % 1024 == 0 else x.view(1, 1, 1, -1)
        return Benchmark(op_class, "", (), 0, 5 * elements * size,
                         lambda: F.interpolate(image, scale_factor=2.0, mode="nearest"))
    raise KeyError(kind)


def _norm(batch, channels, size, dtype, device):
    import torch
    import torch.nn.functional as F

    x = torch.randn(batch, channels, size, size, device=device, dtype=dtype)
    w, b = torch.ones(channels, device=device, dtype=dtype), torch.zeros(channels, device=device, dtype=dtype)
    return Benchmark("norm", "", (), NORM_FLOPS_PER_ELEMENT * x.numel(), 2 * x.numel() * x.element_size(),
                     lambda: F.group_norm(x, 32, w, b))


def default_suite(device, quick: bool = False) -> list:
    """UNet-like shapes (not any preset's) for every op class simdq's layers map to."""
    import torch

    cuda = device.type == "cuda"
    float_precision = "fp16" if cuda else "fp32"
    dtype = torch.float16 if cuda else torch.float32
    rows = (64, 256, 1024, 4096, 16384) if not quick else (64, 256)
    shapes = ((320, 320), (640, 2560), (1280, 1280), (2560, 640), (5120, 1280)) if not quick else ((64, 64), (128, 256))
    precisions = ("fp16", "bf16", "int8", "fp8") if cuda else ("fp32",)
    if cuda and torch.cuda.get_device_capability(device) < (8, 9):
        precisions = ("fp16", "bf16", "int8")
    suite = [_linear(m, n, k, p, device) for p in precisions for m in rows for n, k in shapes]
    convs = ((2, 128, 128, 64), (2, 256, 256, 32), (4, 320, 320, 32), (2, 320, 640, 32), (4, 640, 640, 16),
             (2, 1280, 1280, 8), (4, 512, 512, 16), (2, 640, 1280, 16), (4, 1280, 1280, 16), (2, 256, 512, 64))
    if quick:
        convs = ((2, 8, 8, 8), (2, 8, 16, 8), (2, 16, 16, 4))
    suite += [_conv(b, ci, co, s, 3, dtype, float_precision, device) for b, ci, co, s in convs]
    suite += [_conv(b, ci, co, s, 1, dtype, float_precision, device) for b, ci, co, s in convs[::2]]
    attention = ((16, 1024, 1024, 40), (16, 256, 256, 80), (16, 4096, 77, 40), (16, 1024, 77, 80),
                 (4, 4096, 4096, 64), (8, 256, 256, 160), (16, 64, 64, 160), (2, 1024, 1024, 320))
    if quick:
        attention = ((2, 16, 16, 8), (2, 32, 8, 8), (4, 16, 16, 16))
    suite += [_attention(*a, dtype, float_precision, device) for a in attention]
    norms = ((2, 128, 64), (2, 320, 32), (4, 640, 16), (2, 1280, 8), (4, 256, 32), (2, 512, 64), (4, 1280, 16))
    if quick:
        norms = ((2, 32, 8), (2, 64, 4), (1, 32, 16))
    suite += [_norm(b, c, s, dtype, device) for b, c, s in norms]
    sizes = [2**p for p in ((12, 14, 16, 18, 20, 22, 24) if not quick else (10, 12, 14))]
    for kind, op_class in (("silu", "elementwise"), ("add", "elementwise"), ("softmax", "softmax"),
                           ("cat", "memory"), ("upsample", "memory")):
        suite += [_vector(op_class, n, dtype, device, kind) for n in sizes]
    return suite


def model_suite(layers: list, device) -> list:
    """Benchmarks at the conv, linear and attention shapes of a traced model (each distinct shape once)."""
    import torch

    cuda = device.type == "cuda"
    precision, dtype = ("fp16", torch.float16) if cuda else ("fp32", torch.float32)
    seen, suite = set(), []
    for layer in layers:
        if not layer.gemm_dims:
            continue
        if layer.kind == "conv" and len(layer.input_shape) == 4 and len(layer.kernel_size) == 2:
            batch, c_in, size, _ = layer.input_shape
            key = ("conv", batch, c_in, layer.out_channels, size, layer.kernel_size[0],
                   size // layer.output_shape[-1])
            make = lambda k=key: _conv(*k[1:6], dtype, precision, device, stride=k[6])  # noqa: E731
        elif layer.kind == "linear":
            _, m, n, k = layer.gemm_dims
            key = ("linear", m, n, k)
            make = lambda k=key: _linear(*k[1:], precision, device)  # noqa: E731
        elif layer.kind == "attention_matmul" and layer.name.endswith(".qk"):
            key = ("attention", *layer.gemm_dims)
            make = lambda k=key: _attention(*k[1:], dtype, precision, device)  # noqa: E731
        else:
            continue
        if key not in seen:
            seen.add(key)
            suite.append(make())
    return suite


def measure(suite: list, device, base, progress=None) -> list:
    samples = []
    for index, bench in enumerate(suite):
        rates = base.primary.rates
        peak = rates.peaks.get(bench.precision, rates.vector_peak) if bench.precision else rates.vector_peak
        samples.append(Sample(bench.op_class, 1, bench.gemm_dims, bench.vector_flops, bench.traffic_bytes, peak,
                              time_op(bench.run, device)))
        if progress:
            progress(index + 1, len(suite))
    return samples


def calibrated_spec(base, samples: list, sms: int, device_name: str, name: str) -> dict:
    """The base device's file contents with a fitted `calibration:` block in its default engine."""
    import copy

    import torch

    fits = fit_classes(samples, base.primary.dram_bandwidth, sms)
    spec = copy.deepcopy(base.spec)
    spec["name"] = name
    spec["aliases"] = [f"{alias}-calibrated" for alias in base.aliases if name == f"{base.name}-calibrated"]
    spec["description"] = f"{base.description}; calibrated on {device_name}"
    engine = spec["engines"][spec["default_engine"]]
    engine["calibration"] = {
        "source": (f"fitted by simdq hw calibrate on {device_name}, {datetime.date.today().isoformat()}, "
                   f"torch {torch.__version__}, {len(samples)} microbenchmarks under CUDA graphs"),
        "sms": sms,
        "classes": {
            op_class: {
                "kernel_s": float(f"{fit.params.kernel_s:.4g}"), "efficiency": round(fit.params.efficiency, 4),
                "memory_efficiency": round(fit.params.memory_efficiency, 4), "tile_m": fit.params.tile_m,
                "tile_n": fit.params.tile_n, "split_k_min": fit.params.split_k_min,
                "median_error": round(fit.median_error, 4), "samples": fit.samples,
            }
            for op_class, fit in fits.items()
        },
    }
    return spec


def fit_device(torch_device: str, base_name: str, name: str, quick: bool = False, progress=None,
              model_layers=None) -> dict:
    """model_layers: the traced layers of a model, to time its GEMM shapes instead of the default grid."""
    import torch

    from hw_models import load_device

    try:
        device = torch.device(torch_device)
    except RuntimeError as err:
        raise SimdqError(f"--device {torch_device!r}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SimdqError("--device cuda: no CUDA device is visible to torch")
    base = load_device(base_name)
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        sms, device_name = properties.multi_processor_count, properties.name
    else:
        sms, device_name = 1, f"{device.type} (pipeline test, not a GPU)"
    with torch.no_grad():
        suite = default_suite(device, quick)
        if model_layers is not None:
            suite = [b for b in suite if not b.gemm_dims] + model_suite(model_layers, device)
        samples = measure(suite, device, base, progress)
    return calibrated_spec(base, samples, sms, device_name, name)
