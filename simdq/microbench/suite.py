"""The microbenchmarks `simdq hw calibrate` times: GEMMs, convolutions, attention, norms, elementwise ops and
the kernels of dynamic activation quantization, each described as the device model sees it (op class, GEMM
dimensions, non-GEMM arithmetic, DRAM traffic, kernels). The default shapes are a grid of UNet-like sizes. Some
are a preset's own (the SD-like channel counts 320, 640 and 1280 are SD-1.5's), so benchmarks/gpu_validation.py
leaves out every benchmark of a validated layer's GEMM shape before it fits: validating measures generalisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from hw_models.workload import OperandFormat

from ..model.trace import FLOPS_PER_ELEMENT, NORM_FLOPS_PER_ELEMENT, SOFTMAX_FLOPS_PER_ELEMENT


FLOAT_DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32", "tf32": "float32"}
FLOAT_BYTES = {"fp16": 2, "bf16": 2, "fp32": 4, "tf32": 4}
FP8_MAX = 448.0  # e4m3fn
INT8_MAX = 127.0
OPERANDS = {"fp8": OperandFormat("e4m3", "float", 8, True, 4, 8, -9), "int8": OperandFormat("int8", "int", 8)}


@dataclass
class Benchmark:
    op_class: str
    precision: str  # compute precision of GEMM classes; "" for vector classes
    gemm_dims: tuple
    vector_flops: float
    traffic_bytes: float
    run: Callable
    kernels: int = 1
    tf32: bool = None  # fp32 GEMMs: on TF32 tensor cores or not; None for other precisions
    parallel_rows: int = 0  # a norm's independent rows (batch x groups)
    channels_first_bytes: float = 0.0  # a convolution's operands stored channels-first (all of an NCHW one's)

    @property
    def label(self) -> str:
        dims = "x".join(str(d) for d in self.gemm_dims[0]) if self.gemm_dims else f"{self.traffic_bytes:.0f}B"
        return f"{self.op_class} {dims}"


def tf32_flag(precision: str):
    return {"fp32": False, "tf32": True}.get(precision)


def float_dtype(precision: str):
    import torch

    return getattr(torch, FLOAT_DTYPES[precision])



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
    dtype = float_dtype(precision)
    size = torch.finfo(dtype).bits // 8
    x, w, bias = (torch.randn(*s, device=device, dtype=dtype) for s in ((m, k), (n, k), (n,)))
    return Benchmark(f"linear_{precision}", precision, ((1, m, n, k),), 0, size * (m * k + k * n + m * n + n),
                     lambda: F.linear(x, w, bias), tf32=tf32_flag(precision))


def _work_benchmark(work, run) -> Benchmark:
    return Benchmark(f"{work.kind}_{work.activation_format.family.replace('float', 'fp')}8", "", (),
                     work.vector_flops, work.traffic_bytes, run, kernels=work.kernels)


def _dynamic_quantize(rows, cols, target, device):
    """Dynamic per-tensor activation quantization as eager PyTorch runs it (hw_models.workload.quantize_work
    counts the same kernels and bytes): |x|, amax, the scale, x / scale, (int8: round, clamp), the cast."""
    import torch

    from hw_models.workload import quantize_work

    x = torch.randn(rows, cols, device=device, dtype=torch.float16)
    if target == "fp8":
        def run():
            scale = x.abs().amax().float() / FP8_MAX
            return (x / scale).to(torch.float8_e4m3fn)
    else:
        def run():
            scale = x.abs().amax().float() / INT8_MAX
            return torch.round(x / scale).clamp_(-128, 127).to(torch.int8)
    return _work_benchmark(quantize_work("x", x.numel(), 2, OPERANDS[target]), run)


def _int8_epilogue(rows, cols, device):
    """What follows torch._int_mm when a user dequantizes by hand (hw_models.workload.dequantize_work)."""
    import torch

    from hw_models.workload import dequantize_work

    acc = torch.randint(-2**20, 2**20, (rows, cols), dtype=torch.int32, device=device)
    scale = torch.rand((), device=device)
    bias = torch.randn(cols, device=device, dtype=torch.float16)
    return _work_benchmark(dequantize_work("y", acc.numel(), 2), lambda: (acc * scale).to(torch.float16) + bias)


def conv_shape(batch, c_in, c_out, size, kernel=3, stride=1) -> tuple:
    """A square, zero-padded convolution as the device model sees it: its GEMM dimensions and the elements of its
    input, weights and output."""
    out_size = (size + 2 * (kernel // 2) - kernel) // stride + 1
    elements = batch * c_in * size * size + c_out * c_in * kernel * kernel + batch * c_out * out_size * out_size
    return ((1, batch * out_size * out_size, c_out, c_in * kernel * kernel),), elements


def _conv(batch, c_in, c_out, size, kernel, precision, device, stride=1):
    import torch
    import torch.nn.functional as F

    dtype = float_dtype(precision)
    x = torch.randn(batch, c_in, size, size, device=device, dtype=dtype)
    w = torch.randn(c_out, c_in, kernel, kernel, device=device, dtype=dtype)
    bias = torch.randn(c_out, device=device, dtype=dtype)
    dims, elements = conv_shape(batch, c_in, c_out, size, kernel, stride)
    # cuDNN runs a 1x1 convolution as a GEMM over the pixels, and picks other kernels for a strided one
    name = "pointwise" if kernel == 1 else "downsample" if stride > 1 else "conv"
    traffic = elements * x.element_size()
    return Benchmark(f"{name}_{precision}", precision, dims, 0, traffic,
                     lambda: F.conv2d(x, w, bias, stride=stride, padding=kernel // 2), tf32=tf32_flag(precision),
                     channels_first_bytes=traffic)


def _attention(batch_heads, queries, keys, head_dim, precision, device):
    import torch
    import torch.nn.functional as F

    dtype = float_dtype(precision)
    q = torch.randn(1, batch_heads, queries, head_dim, device=device, dtype=dtype)
    k, v = (torch.randn(1, batch_heads, keys, head_dim, device=device, dtype=dtype) for _ in range(2))
    dims = ((batch_heads, queries, keys, head_dim), (batch_heads, queries, head_dim, keys))
    traffic = (2 * q.numel() + k.numel() + v.numel()) * q.element_size()
    flops = SOFTMAX_FLOPS_PER_ELEMENT * batch_heads * queries * keys
    return Benchmark(f"attention_{precision}", precision, dims, flops, traffic,
                     lambda: F.scaled_dot_product_attention(q, k, v), tf32=tf32_flag(precision))


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


def _strided_copy(batch, channels, pixels, dtype, device):
    """What aten runs before a linear on a (B, C, HW) -> (B, HW, C) view (diffusers' UNet2DModel attention):
    a copy that reads one layout and writes the other."""
    import torch

    x = torch.randn(batch, channels, pixels, device=device, dtype=dtype)
    return Benchmark("strided_copy", "", (), 0, 2 * x.numel() * x.element_size(), lambda: x.transpose(1, 2).contiguous())


def _bias_add(rows, columns, dtype, device):
    """What aten runs after a linear's GEMM on a copied input: the bias added to every row (a broadcast, which
    aten's elementwise kernels do not vectorise)."""
    import torch

    x = torch.randn(rows, columns, device=device, dtype=dtype)
    bias = torch.randn(columns, device=device, dtype=dtype)
    return Benchmark("bias_add", "", (), x.numel(), (2 * x.numel() + columns) * x.element_size(), lambda: x + bias)


def _channels_last_view(batch, channels, size, dtype, device):
    """What diffusers' UNet2DModel attention block returns: (B, HW, C) transposed and reshaped to (B, C, H, W),
    a view with channels-last strides that the ops after it inherit."""
    import torch

    return (torch.randn(batch, size * size, channels, device=device, dtype=dtype).transpose(1, 2)
            .reshape(batch, channels, size, size))


def _strided(kind, batch, channels, size, dtype, device):
    """An op on the channels-last view beside a contiguous tensor, as the ops after such a block run: an add and
    a concatenation that read one layout and write the other (not vectorised), and nearest upsampling of the
    view (aten's NHWC kernel). Traffic as for the contiguous classes."""
    import torch
    import torch.nn.functional as F

    view = _channels_last_view(batch, channels, size, dtype, device)
    other = torch.randn(batch, channels, size, size, device=device, dtype=dtype)
    elements, element_size = view.numel(), view.element_size()
    if kind == "add":
        return Benchmark("elementwise_strided", "", (), elements, 3 * elements * element_size, lambda: view + other)
    if kind == "cat":
        return Benchmark("memory_strided", "", (), 0, 4 * elements * element_size,
                         lambda: torch.cat([view, other], 1))
    if kind == "upsample":
        return Benchmark("resample_strided", "", (), 0, 5 * elements * element_size,
                         lambda: F.interpolate(view, scale_factor=2.0, mode="nearest"))
    raise KeyError(kind)


def _norm(batch, channels, size, dtype, device):
    import torch
    import torch.nn.functional as F

    x = torch.randn(batch, channels, size, size, device=device, dtype=dtype)
    w, b = torch.ones(channels, device=device, dtype=dtype), torch.zeros(channels, device=device, dtype=dtype)
    return Benchmark("norm", "", (), NORM_FLOPS_PER_ELEMENT * x.numel(), 2 * x.numel() * x.element_size(),
                     lambda: F.group_norm(x, 32, w, b), parallel_rows=batch * 32)


# (batch, input channels, output channels, square size) of the suite's 3x3 convolutions: channel counts off the
# powers of two too (odd multiples of 32), which cuDNN tiles less evenly, and batch 1, where cuDNN's fixed costs
# (layout transforms, a bias add) are most of a convolution
CONVOLUTIONS = ((2, 128, 128, 64), (2, 256, 256, 32), (4, 320, 320, 32), (2, 320, 640, 32), (4, 640, 640, 16),
                (2, 1280, 1280, 8), (4, 512, 512, 16), (2, 640, 1280, 16), (4, 1280, 1280, 16), (2, 256, 512, 64),
                (4, 160, 160, 64), (2, 352, 352, 32), (4, 544, 544, 16), (2, 800, 800, 8), (2, 288, 576, 32),
                (1, 192, 192, 64), (1, 288, 288, 64), (1, 384, 384, 32), (1, 576, 576, 16), (1, 768, 768, 8),
                (1, 96, 192, 64), (1, 96, 96, 32), (1, 160, 160, 16), (1, 320, 320, 4), (1, 480, 160, 32),
                (1, 720, 240, 16))


def default_suite(device, quick: bool = False) -> list:
    """UNet-like shapes (not any preset's) for every op class simdq's layers map to, at every precision the
    device runs: on a GPU fp16, bf16, fp32 with TF32 off (fp32) and on (tf32), and for linears int8 and FP8
    (compute capability 8.9 and later) with the kernels of dynamic activation quantization around them."""
    import torch

    cuda = device.type == "cuda"
    rows = (64, 256, 1024, 4096, 16384) if not quick else (64, 256)
    shapes = ((320, 320), (640, 2560), (1280, 1280), (2560, 640), (5120, 1280)) if not quick else ((64, 64), (128, 256))
    floats = ("fp16", "bf16", "fp32", "tf32") if cuda else ("fp32",)
    integers = ("int8", "fp8") if cuda and torch.cuda.get_device_capability(device) >= (8, 9) else ("int8",)
    suite = [_linear(m, n, k, p, device) for p in floats + (integers if cuda else ()) for m in rows for n, k in shapes]
    convs = CONVOLUTIONS
    # the stride-2 convolutions of downsampling blocks (their own class, `downsample`)
    downsampling = ((1, 160, 160, 64), (1, 320, 320, 32), (2, 512, 512, 16), (4, 96, 96, 128), (2, 288, 288, 32),
                    (1, 640, 640, 16), (8, 96, 96, 32), (1, 352, 352, 64))
    if quick:
        convs = ((2, 8, 8, 8), (2, 8, 16, 8), (2, 16, 16, 4))
        downsampling = ((2, 8, 8, 8), (1, 8, 16, 8), (2, 16, 8, 4))
    for precision in floats:
        suite += [_conv(b, ci, co, s, 3, precision, device) for b, ci, co, s in convs]
        suite += [_conv(b, ci, co, s, 3, precision, device, stride=2) for b, ci, co, s in downsampling]
        suite += [_conv(b, ci, co, s, 1, precision, device) for b, ci, co, s in (convs if quick else convs[::2])]
    attention = ((16, 1024, 1024, 40), (16, 256, 256, 80), (16, 4096, 77, 40), (16, 1024, 77, 80),
                 (4, 4096, 4096, 64), (8, 256, 256, 160), (16, 64, 64, 160), (2, 1024, 1024, 320),
                 (24, 1024, 1024, 32), (64, 256, 256, 32), (96, 64, 64, 32))
    if quick:
        attention = ((2, 16, 16, 8), (2, 32, 8, 8), (4, 16, 16, 16))
    suite += [_attention(*a, precision, device) for precision in floats for a in attention]
    # the last norm and the two largest sizes below outgrow a 50 MB L2: their traffic streams from DRAM, which
    # the energy fit prices apart from traffic that stays in L2
    norms = ((2, 128, 64), (2, 320, 32), (4, 640, 16), (2, 1280, 8), (4, 256, 32), (2, 512, 64), (4, 1280, 16),
             (16, 256, 64))
    # small copies too: at batch 1 a copy's fixed time is most of it
    copies = ((8, 448, 1024), (8, 224, 4096), (2, 320, 4096), (4, 640, 1024), (16, 1280, 256), (64, 448, 1024),
              (1, 384, 1024), (1, 768, 256), (2, 512, 64), (1, 1024, 64), (4, 256, 256))
    # the bias adds of UNet2DModel's attention projections (8192 x 448: LDM-4's at batch 8), the last outgrowing
    # a 50 MB L2
    bias_adds = ((256, 320), (1024, 448), (2048, 1280), (4096, 320), (8192, 448), (16384, 640), (65536, 448),
                 (262144, 320))
    # channels-last views; the add's traffic on the last two (50 MB and 101 MB) fills and outgrows a 50 MB L2
    views = ((4, 96, 16), (1, 1280, 8), (1, 768, 16), (1, 384, 32), (2, 320, 64), (4, 640, 32), (2, 160, 128),
             (8, 256, 64), (16, 512, 32), (32, 512, 32))
    sizes = [2**p for p in (12, 14, 16, 18, 20, 22, 24, 25, 26)]
    if quick:
        norms, copies = ((2, 32, 8), (2, 64, 4), (1, 32, 16)), ((2, 32, 64), (2, 64, 16), (4, 16, 64))
        bias_adds = ((64, 32), (128, 16), (32, 64))
        views, sizes = ((2, 8, 8), (1, 16, 4), (2, 32, 8)), [2**p for p in (10, 12, 14)]
    # a GPU's vector classes in fp16, and apart in fp32 (`norm_fp32`, ...) on every other shape: an fp32 GroupNorm
    # takes 1.2x its fp16 time, not the 2x its bytes say, and one fit of both dtypes misses the fp16 forwards
    variants = ((torch.float16, "", 1), (torch.float32, "_fp32", 2)) if cuda else ((torch.float32, "", 1),)
    for dtype, suffix, step in variants:
        vector = [_norm(b, c, s, dtype, device) for b, c, s in norms[::step]]
        vector += [_strided_copy(b, c, hw, dtype, device) for b, c, hw in copies[::step]]
        vector += [_bias_add(rows, columns, dtype, device) for rows, columns in bias_adds[::step]]
        vector += [_strided(kind, b, c, s, dtype, device) for kind in ("add", "cat", "upsample")
                   for b, c, s in views[::step]]
        vector += [_vector(op_class, n, dtype, device, kind) for kind, op_class in (
            ("silu", "elementwise"), ("add", "elementwise"), ("softmax", "softmax"), ("cat", "memory"),
            ("upsample", "resample")) for n in sizes[::step]]
        for bench in vector:
            bench.op_class += suffix
        suite += vector
    if cuda:
        activations = [(m, k) for m in rows for k in (320, 1280)]
        suite += [_dynamic_quantize(m, k, target, device) for target in integers for m, k in activations]
        suite += [_int8_epilogue(m, n, device) for m in rows for n in (320, 1280)]
    return suite


def model_suite(layers: list, device) -> list:
    """Benchmarks at the conv, linear and attention shapes of a traced model (each distinct shape once)."""
    precision = "fp16" if device.type == "cuda" else "fp32"
    seen, suite = set(), []
    for layer in layers:
        if not layer.gemm_dims:
            continue
        if layer.kind == "conv" and len(layer.input_shape) == 4 and len(layer.kernel_size) == 2:
            batch, c_in, size, _ = layer.input_shape
            key = ("conv", batch, c_in, layer.out_channels, size, layer.kernel_size[0],
                   size // layer.output_shape[-1])
            make = lambda k=key: _conv(*k[1:6], precision, device, stride=k[6])  # noqa: E731
        elif layer.kind == "linear":
            _, m, n, k = layer.gemm_dims
            key = ("linear", m, n, k)
            make = lambda k=key: _linear(*k[1:], precision, device)  # noqa: E731
        elif layer.kind == "attention_matmul" and layer.name.endswith(".qk"):
            key = ("attention", *layer.gemm_dims)
            make = lambda k=key: _attention(*k[1:], precision, device)  # noqa: E731
        else:
            continue
        if key not in seen:
            seen.add(key)
            suite.append(make())
    return suite
