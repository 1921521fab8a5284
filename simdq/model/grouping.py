"""Layers: the traced ops grouped into the rows that costs are reported for.

A conv or linear module is one row (its GEMM, plus the ops aten runs around it: the copy of a strided
input, a bias add that addmm did not fuse; these are real kernels on a GPU too); an attention
module contributes a `qk` and an `av` row for its two activation x activation matmuls; every other module
contributes one row per op class (norm, softmax, elementwise, resample, concat, embedding). Each module's
own parameters sit on its first row, so the rows' parameters add up to the model's.
"""

from __future__ import annotations

from ..errors import SimdqError
from .layer import Layer
from .trace import OpRecord, is_weight_module, trace
from .unets import example_inputs

_ROW_KIND = {
    "norm": "norm", "softmax": "softmax", "resample": "resample", "concat": "concat", "embedding": "embedding",
    "elementwise": "elementwise", "creation": "elementwise", "copy": "elementwise",
}


def _weight_geometry(module) -> dict:
    weight = module.weight
    return {
        "weight_params": weight.numel(),
        "out_channels": weight.shape[0],
        "in_channels": getattr(module, "in_channels", None) or getattr(module, "in_features", 0),
        "kernel_size": tuple(getattr(module, "kernel_size", ())),
    }


def group_layers(model, records: list) -> list:
    modules = dict(model.named_modules())
    rows: dict = {}

    def row_for(record: OpRecord):
        module = modules.get(record.module, model)
        if is_weight_module(module):
            kind = "conv" if "Conv" in type(module).__name__ else "linear"
            key, name = (record.module, "weight"), record.module
        elif record.kind == "gemm":
            key, kind, name = (record.module, record.role), "attention_matmul", f"{record.module}.{record.role}"
            if record.role == "weight":  # a functional convolution with a constant kernel (no module)
                kind = "conv"
        else:
            kind = _ROW_KIND[record.kind]
            key, name = (record.module, kind), record.module or "(unet)"
        if key not in rows:
            rows[key] = Layer(name=name, module=record.module, module_type=type(module).__name__, kind=kind)
            if is_weight_module(module):
                for attr, value in _weight_geometry(module).items():
                    setattr(rows[key], attr, value)
        return rows[key]

    for record in records:
        if record.kind == "view":
            continue
        row = row_for(record)
        if record.kind == "gemm":
            row.macs += record.macs
            row.gemm_read += record.read
            if not row.gemm_dims:
                row.input_shape = record.input_shapes[1 if record.op == "addmm" else 0]
                row.output_shape, row.gemm_dims = record.output_shape, record.gemm_dims
                row.operand_layouts = record.layouts[:2]
        else:  # also inside a conv/linear: a copy of a strided input, a bias add the GEMM did not fuse
            row.vector_flops += record.flops
            row.read += record.read
            row.parallel_rows = row.parallel_rows or record.rows
            if record.strided and record.kind == "copy":
                row.relayout_kernels += 1
                row.relayout += record.read + record.write
            elif record.strided:
                row.strided_kernels += 1
                row.strided += record.read + record.write
        row.kernels += 1
        row.write += record.write
    return _attach_parameters(model, list(rows.values()))


def _attach_parameters(model, layers: list) -> list:
    first_row = {}
    for layer in layers:
        first_row.setdefault(layer.module, layer)
    for path, module in model.named_modules():
        own = dict(module.named_parameters(recurse=False))
        if not own:
            continue
        row = first_row.get(path)
        if row is None:
            row = Layer(name=path, module=path, module_type=type(module).__name__, kind="unused")
            layers.append(row)
            first_row[path] = row
        weight_elements = row.weight_params if row.is_weight_layer else 0
        row.other_params += sum(p.numel() for p in own.values()) - weight_elements
    return layers


def fuse_attention(layers: list) -> list:
    """Model fused attention (flash / memory-efficient SDPA kernels, what PyTorch runs on GPUs): the score
    matrix between QK^T, softmax and AV stays on chip, and the three run as one kernel."""
    by_module = {}
    for layer in layers:
        if layer.kind == "softmax":
            by_module.setdefault(layer.module, {})["softmax"] = layer
        elif layer.kind == "attention_matmul":
            by_module.setdefault(layer.module, {})[layer.name.rsplit(".", 1)[-1]] = layer
    for rows in by_module.values():
        if not {"qk", "av"} <= rows.keys():
            continue
        scores = rows["qk"].write
        rows["qk"].write = 0
        rows["av"].gemm_read -= scores
        rows["av"].kernels = 0
        rows["qk"].fused_attention, rows["av"].fused_attention = "qk", "av"
        if "softmax" in rows:
            rows["softmax"].read = rows["softmax"].write = rows["softmax"].kernels = 0
    return layers


def layers_of(model, spec, batch: int, sample_size=None, context_length=None, fused_attention: bool = True) -> list:
    """The layers of one forward pass of `model` (built from `spec`, a simdq.presets.UNetSpec) on the meta device."""
    inputs = example_inputs(model, spec, batch, sample_size, context_length)
    try:
        traced = trace(model, inputs)
    except (RuntimeError, ArithmeticError, IndexError) as err:
        # shapes simdq.presets.architecture does not foresee fail here, on the meta device, in one line
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise SimdqError(f"{spec.name}: diffusers cannot run {spec.unet_class} on a batch of {batch} "
                         f"({message})") from None
    layers = group_layers(model, traced)
    return fuse_attention(layers) if fused_attention else layers
