"""Workload extraction: every aten op of one forward pass, with shapes, MACs and the owning module.

The model runs on the meta device (shapes only) under a TorchDispatchMode, which sees every aten op
after decomposition, so attention is seen however it is computed: scaled_dot_product_attention (its
math decomposition on meta, or a fused kernel elsewhere), bmm or baddbmm. Module hooks keep a stack
of module paths, so each op is attributed to the innermost module that ran it.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

WEIGHT_GEMMS = {"convolution", "mm", "addmm", "_int_mm", "_scaled_mm"}
MATMULS = {"mm", "addmm", "bmm", "baddbmm"}
FUSED_ATTENTION = {
    "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_fused_attention_overrideable",
}
VIEWS = {
    "view", "_unsafe_view", "_reshape_alias", "reshape", "t", "transpose", "permute", "expand", "unsqueeze",
    "squeeze", "split", "split_with_sizes", "unbind", "slice", "select", "alias", "detach", "as_strided",
    "lift_fresh", "chunk", "narrow", "view_as", "unflatten", "flatten", "empty", "empty_like", "empty_strided",
}
NORMS = {"native_group_norm", "native_layer_norm", "native_batch_norm", "_native_batch_norm_legit_no_training",
         "_native_batch_norm_legit", "_fused_rms_norm", "rms_norm"}
SOFTMAX = {"_softmax", "_safe_softmax", "_log_softmax"}
AVERAGING_PREFIXES = ("avg_pool", "_adaptive_avg_pool", "adaptive_avg_pool")
RESAMPLE_PREFIXES = ("upsample_", "_upsample_", "max_pool") + AVERAGING_PREFIXES
CONCAT = {"cat", "stack"}
EMBEDDING = {"embedding"}
CREATION = {"ones", "zeros", "full", "arange", "ones_like", "zeros_like", "full_like", "scalar_tensor", "randn"}
COPIES = {"clone", "_to_copy", "copy", "copy_", "contiguous"}

# Arithmetic per output element where one op is more than one operation (our convention for `full`):
# silu = x / (1 + exp(-x)): negate, exp, add, divide; gelu (erf form) ~ 8; norms per element: mean (1),
# variance (3), normalise (2), affine (2); softmax: max, subtract, exp, sum, divide.
FLOPS_PER_ELEMENT = {"silu": 4, "gelu": 8, "sigmoid": 3, "tanh": 3, "mish": 6}
NORM_FLOPS_PER_ELEMENT = 8
SOFTMAX_FLOPS_PER_ELEMENT = 5


@dataclass(frozen=True)
class OpRecord:
    """One aten op. kind: gemm, view, norm, softmax, resample, concat, embedding, creation, copy or
    elementwise; read/write: activation elements read and written (parameters excluded); role of a
    GEMM: 'weight' (inside a conv/linear module) or 'qk'/'av' (activation x activation); dtype: of the
    (first) output."""

    module: str
    op: str
    kind: str
    macs: int
    flops: int
    read: int
    write: int
    role: str = ""
    input_shapes: tuple = ()
    output_shape: tuple = ()
    dtype: str = ""
    gemm_dims: tuple = ()  # (batch, M, N, K) of a GEMM: batch x (M x K) @ (K x N)
    rows: int = 0  # a norm's independent rows (GroupNorm: batch x groups): the parallelism of its reduction
    strided: bool = False  # runs on a layout other than the contiguous one its class is timed on (`relayout`)
    layouts: tuple = ()  # layout_of each input tensor, then of the (first) output


def layout_of(tensor) -> str:
    """`contiguous`, `channels_last` (a 4-D tensor dense in N, H, W, C order: UNet2DModel's attention output)
    or `strided` (a transposed or broadcast view). A tensor that is both (one channel, one pixel) is contiguous."""
    import torch

    if tensor.is_contiguous():
        return "contiguous"
    if tensor.dim() == 4 and tensor.is_contiguous(memory_format=torch.channels_last):
        return "channels_last"
    return "strided"


def memory_order(tensor) -> tuple:
    """The dimensions of size above one from the slowest-varying in memory to the fastest: what decides whether
    two tensors are walked in the same order (a sliced chunk keeps its tensor's order; a transpose does not)."""
    dims = [d for d in range(tensor.dim()) if tensor.shape[d] > 1]
    return tuple(sorted(dims, key=lambda d: -tensor.stride(d)))


def relayout(kind: str, inputs: list, output) -> bool:
    """Whether an op runs off the layout its class is timed on, and slower for it (measured in
    reports/gpu-kernel-census-h100.md): a copy, elementwise op or concatenation that reads an operand in
    another memory order than it writes (a transpose made contiguous; a channels-last view added to a contiguous
    tensor: neither is vectorised), and nearest upsampling of a channels-last input (aten's NHWC kernel).
    Broadcast operands (a bias, a time embedding) do not count: the contiguous class is timed with them too."""
    if output is None or not inputs:
        return False
    if kind == "resample":
        return layout_of(inputs[0]) == "channels_last"
    if kind not in ("copy", "elementwise", "concat"):
        return False
    written = memory_order(output)
    full = [t for t in inputs if kind == "concat" or t.shape == output.shape]
    return any(memory_order(t) != written for t in full)


def cudnn_output_format(args, output):
    """What a convolution on a GPU returns: cuDNN computes in the channels-last layout when its input (or
    weight) is channels-last and returns it so; the meta kernel returns contiguous memory (recorded by
    benchmarks/gpu_kernel_census.py, reports/gpu-kernel-census-h100.json `op_layouts`). Without this the
    layouts after a channels-last view, and so the copies GroupNorm makes, would part ways with the GPU's."""
    import torch

    x, weight = args[0], args[1]
    if output.device.type != "meta" or output.dim() != 4 or weight.dim() != 4:
        return output
    if "channels_last" in (layout_of(x), layout_of(weight)):
        return output.contiguous(memory_format=torch.channels_last)
    return output


def _norm_rows(name: str, args, elements: int) -> int:
    """The rows a norm reduces independently: GroupNorm's batch x groups, LayerNorm's leading elements; 0 where
    not known (a batch norm reduces over the batch)."""
    if name == "native_group_norm" and len(args) > 6:
        return int(args[3]) * int(args[6])
    if name == "native_layer_norm" and len(args) > 1:
        normalized = _numel(tuple(args[1]))
        return elements // normalized if normalized else 0
    return 0


def _shape(value):
    return tuple(value.shape) if hasattr(value, "shape") else None


def _tensors(values):
    import torch

    for value in values:
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, (list, tuple)):
            yield from _tensors(value)


def _numel(shape) -> int:
    return prod(shape) if shape is not None else 0


def gemm_dims(op: str, args, out_shape) -> tuple:
    """(batch, M, N, K) of a GEMM-like aten op: batch x (M x K) @ (K x N); MACs = their product.
    A convolution is the implicit GEMM of its output positions x Cout x (Cin/groups x kernel)."""
    if op == "convolution":
        x, w = _shape(args[0]), _shape(args[1])
        transposed = bool(args[6]) if len(args) > 6 else False
        if transposed:  # each input position scatters into Cout/groups x kernel outputs
            return 1, _numel(x) // x[1], _numel(w[1:]), w[0]
        return 1, _numel(out_shape) // out_shape[1], out_shape[1], _numel(w[1:])
    if op in ("mm", "_int_mm", "_scaled_mm"):
        (m, k), (_, n) = _shape(args[0]), _shape(args[1])
        return 1, m, n, k
    if op == "addmm":
        (m, k), (_, n) = _shape(args[1]), _shape(args[2])
        return 1, m, n, k
    if op == "bmm":
        (b, m, k), (_, _, n) = _shape(args[0]), _shape(args[1])
        return b, m, n, k
    if op == "baddbmm":
        (b, m, k), (_, _, n) = _shape(args[1]), _shape(args[2])
        return b, m, n, k
    raise KeyError(op)


class _Tracer:
    def __init__(self, weight_modules: set):
        self.weight_modules = weight_modules
        self.stack = [""]
        self.records: list = []
        self.muted = False  # while an attention call recorded whole runs its decomposition
        self._softmax_seen = {}

    def push(self, path):
        self.stack.append(path)
        self._softmax_seen[path] = False

    def pop(self):
        self.stack.pop()

    def attention(self, name, q, k, v, out):
        """One attention computation as its QK^T matmul, softmax and AV matmul (the scale is folded)."""
        module = self.stack[-1]
        q, k, v, out_shape = _shape(q), _shape(k), _shape(v), _shape(out)
        in_shapes, dtype = (q, k, v), str(out.dtype).removeprefix("torch.")
        scores = _numel(q[:-2]) * q[-2] * k[-2]
        batch, queries, keys = _numel(q[:-2]), q[-2], k[-2]
        for kind, macs, flops, read, write, role, dims in (
            ("gemm", scores * q[-1], 0, _numel(q) + _numel(k), scores, "qk", (batch, queries, keys, q[-1])),
            ("softmax", 0, SOFTMAX_FLOPS_PER_ELEMENT * scores, scores, scores, "", ()),
            ("gemm", scores * v[-1], 0, scores + _numel(v), _numel(out_shape), "av", (batch, queries, v[-1], keys)),
        ):
            self.records.append(
                OpRecord(module, name, kind, macs, flops, read, write, role, in_shapes, out_shape, dtype, dims))

    def record(self, func, args, kwargs, out):
        if self.muted:
            return
        name = func.overloadpacket.__name__
        module = self.stack[-1]
        outputs = list(_tensors(out if isinstance(out, (list, tuple)) else [out]))
        inputs = list(_tensors(args))
        out_shape = tuple(outputs[0].shape) if outputs else ()
        dtype = str(outputs[0].dtype).removeprefix("torch.") if outputs else ""
        in_shapes = tuple(tuple(t.shape) for t in inputs)
        read = sum(t.numel() for t in inputs)
        write = sum(t.numel() for t in outputs)

        layouts = tuple(layout_of(t) for t in inputs + outputs[:1])

        def add(kind, macs=0, flops=0, read=0, write=0, role="", dims=(), rows=0):
            strided = relayout(kind, inputs, outputs[0] if outputs else None)
            self.records.append(OpRecord(module, name, kind, macs, flops, read, write, role, in_shapes, out_shape,
                                         dtype, dims, rows, strided, layouts))

        in_weight_module = module in self.weight_modules
        if name in VIEWS:
            add("view")
        elif name in FUSED_ATTENTION:
            self.attention(name, *args[:3], outputs[0])
        elif name == "convolution" or name in MATMULS or name in WEIGHT_GEMMS and in_weight_module:
            dims = gemm_dims(name, args, out_shape)
            macs = _numel(dims)
            # F.linear computes input @ W^T; a convolution's weight may be a constant kernel (FIR)
            if name == "convolution" or in_weight_module and name not in ("bmm", "baddbmm"):
                activation = args[1] if name == "addmm" else args[0]
                add("gemm", macs, 0, _numel(_shape(activation)), write, "weight", dims)
            else:
                add("gemm", macs, 0, read, write, "av" if self._softmax_seen.get(module) else "qk", dims)
                self._softmax_seen[module] = False
        elif name in NORMS:
            elements = _numel(in_shapes[0])
            add("norm", 0, NORM_FLOPS_PER_ELEMENT * elements, elements, elements, rows=_norm_rows(name, args, elements))
        elif name in SOFTMAX:
            self._softmax_seen[module] = True
            add("softmax", 0, SOFTMAX_FLOPS_PER_ELEMENT * write, read, write)
        elif name.startswith(RESAMPLE_PREFIXES):
            add("resample", 0, read if name.startswith(AVERAGING_PREFIXES) else 0, read, write)
        elif name in CONCAT:
            add("concat", 0, 0, read, write)
        elif name in EMBEDDING:
            add("embedding", 0, 0, write, write)
        elif name in CREATION:
            add("creation", 0, 0, 0, write)
        elif name in COPIES:
            add("copy", 0, 0, read, write)
        else:
            add("elementwise", 0, FLOPS_PER_ELEMENT.get(name, 1) * write, read, write)


def is_weight_module(module) -> bool:
    import torch.nn as nn

    return isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear))


def trace(model, inputs: dict) -> list:
    """Run `model(**inputs)` on the meta device and return its OpRecords in execution order."""
    import torch
    import torch.nn.functional as F
    from torch.overrides import TorchFunctionMode
    from torch.utils._python_dispatch import TorchDispatchMode

    names = {module: name for name, module in model.named_modules()}
    tracer = _Tracer({name for module, name in names.items() if is_weight_module(module)})

    class Mode(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func.overloadpacket.__name__ == "convolution":
                out = cudnn_output_format(args, out)
            tracer.record(func, args, kwargs or {}, out)
            return out

    class AttentionCalls(TorchFunctionMode):
        """Sees scaled_dot_product_attention before it decomposes (it does on meta), so that it is
        recorded as the one fused kernel a GPU runs, without the decomposition's scaling ops."""

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func is not F.scaled_dot_product_attention:
                return func(*args, **kwargs)
            query, key, value = (list(args) + [kwargs.get(n) for n in ("query", "key", "value")])[:3]
            tracer.muted = True
            try:
                out = func(*args, **kwargs)
                if out.device.type == "meta" and out.shape == query.shape:
                    # the fused kernels allocate their output like the query (FlashAttention, cuDNN): a head
                    # split view of (B, L, heads, d) gives an output that merging the heads back needs no copy of
                    out = torch.empty_like(query)
            finally:
                tracer.muted = False
            tracer.attention("scaled_dot_product_attention", query, key, value, out)
            return out

    handles = []
    for module, name in names.items():
        handles.append(module.register_forward_pre_hook(lambda m, a, name=name: tracer.push(name)))
        handles.append(module.register_forward_hook(lambda m, a, o: tracer.pop()))
    try:
        with torch.no_grad(), Mode(), AttentionCalls():
            model(**inputs)
    finally:
        for handle in handles:
            handle.remove()
    return tracer.records
