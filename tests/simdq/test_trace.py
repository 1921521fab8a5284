"""Workload extraction: parameters, MACs per op family, attribution of ops to modules."""

import json
import sys
from collections import defaultdict
from math import prod
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from unet_fixtures import layers_of, traced

from simdq.model.grouping import fuse_attention
from simdq.model.trace import trace
from simdq.presets import preset_names

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

PRESETS = sorted(set(preset_names().values()))


@pytest.mark.parametrize("preset", PRESETS)
def test_layer_parameters_add_up_to_the_model(preset):
    _, model, _, _ = traced(preset)
    assert sum(layer.params for layer in layers_of(preset)) == sum(p.numel() for p in model.parameters())


def test_ldm4_bedrooms_has_the_published_parameter_count():
    _, model, _, _ = traced("ldm4-lsun-bedrooms")
    assert sum(p.numel() for p in model.parameters()) == 274_056_163


@pytest.mark.parametrize("preset", PRESETS)
def test_macs_match_flop_counter_per_op_family(preset):
    _, model, inputs, records = traced(preset)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(**inputs)
    theirs = {str(op).removeprefix("aten."): flops for op, flops in counter.get_flop_counts()["Global"].items()}
    ours = defaultdict(int)
    for record in records:
        # simdq records attention as one scaled_dot_product_attention call; on meta it decomposes into
        # the two bmm that FlopCounterMode sees
        family = "bmm" if record.op == "scaled_dot_product_attention" else record.op
        ours[family] += 2 * record.macs
    assert theirs, "FlopCounterMode counted nothing"
    for family, flops in theirs.items():
        assert ours[family] == flops, family
    assert {f for f, v in ours.items() if v} == set(theirs)


@pytest.mark.parametrize("preset", ["ldm4-lsun-bedrooms", "sd15"])
def test_every_conv_and_linear_is_one_layer_with_its_macs(preset):
    _, model, _, _ = traced(preset)
    layers = {layer.name: layer for layer in layers_of(preset) if layer.is_weight_layer}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            layer = layers.pop(name)
            per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            batch, positions, out_channels, reduction = layer.gemm_dims
            assert (batch, out_channels, reduction) == (1, module.out_channels, per_output), name
            assert positions * out_channels == prod(layer.output_shape)  # one GEMM row per output position
            assert layer.kind == "conv" and layer.macs == prod(layer.gemm_dims), name
            assert layer.weight_params == module.weight.numel()
        elif isinstance(module, torch.nn.Linear):
            layer = layers.pop(name)
            batch, tokens, out_features, in_features = layer.gemm_dims
            assert (batch, out_features, in_features) == (1, module.out_features, module.in_features), name
            assert tokens * out_features == prod(layer.output_shape)
            assert layer.kind == "linear" and layer.macs == prod(layer.gemm_dims), name
    assert not layers  # nothing else was taken for a weight layer


def _attention_modules(model):
    from diffusers.models.attention_processor import Attention

    return {name: m for name, m in model.named_modules() if isinstance(m, Attention)}


def test_attention_matmuls_are_found_with_their_shapes():
    _, model, inputs, _ = traced("sd15")
    layers = {layer.name: layer for layer in layers_of("sd15")}
    context_tokens = inputs["encoder_hidden_states"].shape[1]
    attention = _attention_modules(model)
    assert attention
    for name, module in attention.items():
        qk, av = layers[f"{name}.qk"], layers[f"{name}.av"]
        batch, heads, queries, head_dim = qk.input_shape  # the query of scaled_dot_product_attention
        keys = context_tokens if module.is_cross_attention else queries
        assert (batch, heads, head_dim) == (1, module.heads, module.inner_dim // module.heads), name
        assert qk.write == module.heads * queries * keys  # the score matrix
        assert qk.macs == av.macs == queries * keys * module.inner_dim, name
        assert qk.kind == av.kind == "attention_matmul"


def test_fused_attention_drops_exactly_the_score_traffic():
    unfused = layers_of("ldm4-lsun-bedrooms")
    fused = fuse_attention(layers_of("ldm4-lsun-bedrooms"))
    _, model, _, _ = traced("ldm4-lsun-bedrooms")
    scores = 0
    for name, module in _attention_modules(model).items():
        tokens = next(l for l in unfused if l.name == f"{name}.qk").input_shape[-2]
        scores += module.heads * tokens * tokens
    traffic = lambda layers: sum(l.gemm_read + l.read + l.write for l in layers)  # noqa: E731
    # QK^T writes the scores, softmax reads and writes them, AV reads them
    assert traffic(unfused) - traffic(fused) == 4 * scores
    assert sum(l.macs for l in unfused) == sum(l.macs for l in fused)


def test_fused_attention_is_one_kernel_per_attention_module():
    unfused = layers_of("ldm4-lsun-bedrooms")
    fused = fuse_attention(layers_of("ldm4-lsun-bedrooms"))
    _, model, _, _ = traced("ldm4-lsun-bedrooms")
    attention = set(_attention_modules(model))
    assert attention
    kernels = lambda layers, module: sum(  # noqa: E731
        l.kernels for l in layers if l.module == module and l.kind in ("attention_matmul", "softmax"))
    for module in attention:
        # unfused: QK^T, softmax and AV are three kernels; fused (flash / memory-efficient SDPA): one
        assert (kernels(unfused, module), kernels(fused, module)) == (3, 1), module
    halves = lambda layers: sorted(  # noqa: E731
        (l.name.rsplit(".", 1)[-1], l.fused_attention) for l in layers if l.kind == "attention_matmul")
    assert set(halves(fused)) == {("av", "av"), ("qk", "qk")} and set(halves(unfused)) == {("av", ""), ("qk", "")}
    others = lambda layers: [(l.name, l.kernels) for l in layers if l.module not in attention]  # noqa: E731
    assert others(fused) == others(unfused)


def test_batch_scales_activations_not_parameters():
    one, four = layers_of("ddpm-cifar10", 1), layers_of("ddpm-cifar10", 4)
    assert sum(l.params for l in one) == sum(l.params for l in four)
    assert sum(l.macs for l in four) == 4 * sum(l.macs for l in one)
    convs = lambda layers: [(l.gemm_read, l.write) for l in layers if l.kind == "conv"]  # noqa: E731
    assert convs(four) == [(4 * read, 4 * write) for read, write in convs(one)]


class _Attention(torch.nn.Module):
    def __init__(self, fused: bool):
        super().__init__()
        self.fused = fused

    def forward(self, q, k, v):
        if self.fused:
            return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default(q, k, v)[0]
        return torch.nn.functional.scaled_dot_product_attention(q, k, v)


def test_fused_attention_kernel_counts_as_its_decomposition():
    q, k, v = torch.randn(2, 3, 16, 8), torch.randn(2, 3, 24, 8), torch.randn(2, 3, 24, 8)
    inputs = {"q": q, "k": k, "v": v}
    fused = [r for r in trace(_Attention(True), inputs) if r.kind in ("gemm", "softmax")]
    decomposed = [r for r in trace(_Attention(False), inputs) if r.kind in ("gemm", "softmax")]
    assert [(r.kind, r.role, r.macs) for r in fused] == [(r.kind, r.role, r.macs) for r in decomposed]
    assert [r.macs for r in fused] == [2 * 3 * 16 * 24 * 8, 0, 2 * 3 * 16 * 24 * 8]
    assert fused[0].write == fused[1].read == 2 * 3 * 16 * 24  # the score matrix


def test_a_group_norm_records_batch_times_groups_rows():
    from simdq.cli.estimate import traced_layers
    from simdq.config import parse_config

    from unet_fixtures import TINY_UNET

    config = {"model": {"diffusers": {"class": "UNet2DModel", "config": TINY_UNET}}, "input": {"batch": 3}}
    norms = [l for l in traced_layers(parse_config(config, "t")) if l.kind == "norm"]
    groups = TINY_UNET.get("norm_num_groups", 32)
    assert norms and all(l.parallel_rows == 3 * groups for l in norms)


class _Relayouts(torch.nn.Module):
    """A head split into SDPA and back (no copy on a GPU: the fused kernel writes its output like the query),
    then a GroupNorm of the transposed sequence (a copy of a strided input into contiguous memory)."""

    def __init__(self):
        super().__init__()
        self.norm = torch.nn.GroupNorm(2, 8)

    def forward(self, x):  # x: (batch, length, 8)
        batch, length, _ = x.shape
        heads = x.view(batch, length, 2, 4).transpose(1, 2)
        out = torch.nn.functional.scaled_dot_product_attention(heads, heads, heads)
        merged = out.transpose(1, 2).reshape(batch, length, 8)
        return self.norm(merged.transpose(1, 2))


def test_only_copies_out_of_a_strided_layout_count_as_relayouts():
    from simdq.model.grouping import group_layers

    model = _Relayouts().to("meta")
    records = trace(model, {"x": torch.empty(2, 6, 8, device="meta")})
    copies = [r for r in records if r.kind == "copy"]
    # the SDPA output merges back as a view; the one copy is GroupNorm's .contiguous() of its transposed input
    assert [(r.module, r.strided) for r in copies] == [("norm", True)]
    assert copies[0].read == copies[0].write == 2 * 6 * 8
    rows = {(layer.name, layer.kind): layer for layer in group_layers(model, records)}
    relayouts = {key: (row.relayout_kernels, row.relayout) for key, row in rows.items() if row.relayout_kernels}
    assert relayouts == {("norm", "elementwise"): (1, 2 * 2 * 6 * 8)}


class _ChannelsLastView(torch.nn.Module):
    """What follows diffusers' UNet2DModel attention block: a (B, HW, C) sequence handed back as a channels-last
    (B, C, H, W) view, added to the contiguous residual, concatenated, upsampled; a conv of it; a GEGLU chunk."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, sequence, residual):  # sequence: (B, 16, 8), residual: (B, 8, 4, 4)
        view = sequence.transpose(1, 2).reshape(residual.shape)
        added = view + residual  # mixed layouts: not vectorised on a GPU
        both = view + view  # one layout: vectorised
        torch.nn.functional.silu(view)
        torch.cat([view, residual], 1)
        torch.cat([residual, residual], 1)
        torch.nn.functional.interpolate(view, scale_factor=2.0, mode="nearest")
        torch.nn.functional.interpolate(residual, scale_factor=2.0, mode="nearest")
        value, gate = sequence.chunk(2, dim=-1)  # gapped slices in the same order
        return added, both, self.conv(view), self.conv(residual), value * torch.nn.functional.gelu(gate)


def test_ops_reading_another_memory_order_than_they_write_run_off_the_contiguous_layout():
    records = [r for r in trace(_ChannelsLastView().to("meta"), {
        "sequence": torch.empty(2, 16, 8, device="meta"), "residual": torch.empty(2, 8, 4, 4, device="meta")})
        if r.kind != "view"]
    strided = [(r.op, r.layouts) for r in records if r.strided]
    cl, contiguous = "channels_last", "contiguous"
    assert strided == [("add", (cl, contiguous, cl)), ("cat", (cl, contiguous, contiguous)),
                       ("upsample_nearest2d", (cl, cl))]
    plain = {(r.op, r.layouts) for r in records if not r.strided}
    assert {("add", (cl, cl, cl)), ("silu", (cl, cl)), ("cat", (contiguous, contiguous, contiguous)),
            ("upsample_nearest2d", (contiguous, contiguous)), ("gelu", ("strided", contiguous))} <= plain
    # cuDNN returns a convolution of a channels-last input channels-last; the meta kernel alone would not
    convolutions = [r.layouts for r in records if r.op == "convolution"]
    assert [layouts[0] for layouts in convolutions] == [cl, contiguous]
    assert [layouts[-1] for layouts in convolutions] == [cl, contiguous]


def test_strided_ops_are_counted_apart_from_relayout_copies():
    from simdq.model.grouping import group_layers

    model = _ChannelsLastView().to("meta")
    records = trace(model, {"sequence": torch.empty(2, 16, 8, device="meta"),
                            "residual": torch.empty(2, 8, 4, 4, device="meta")})
    rows = {layer.kind: layer for layer in group_layers(model, records) if layer.module == ""}
    elements = 2 * 8 * 4 * 4
    assert (rows["elementwise"].strided_kernels, rows["elementwise"].strided) == (1, 3 * elements)
    assert (rows["concat"].strided_kernels, rows["concat"].strided) == (1, 4 * elements)
    assert (rows["resample"].strided_kernels, rows["resample"].strided) == (1, 5 * elements)
    assert all(row.relayout_kernels == 0 for row in rows.values())


CENSUS = Path(__file__).parents[2] / "reports" / "gpu-kernel-census-h100.json"


def _census_runs():
    return json.loads(CENSUS.read_text())["runs"]


@pytest.mark.parametrize("run", _census_runs(), ids=lambda r: f"{r['preset']}-b{r['batch']}")
def test_the_meta_trace_follows_the_layouts_recorded_on_a_gpu(run):
    """The layouts that decide which ops run off the contiguous layout (and which norms copy their input), as
    simdq's trace recorded them on an H100 (benchmarks/gpu_kernel_census.py). At batch 1 a size-one batch
    dimension's stride decides cat's and upsampling's output format (c10's suggest_memory_format), and the meta
    kernels of view and div leave it otherwise than CUDA's: LDM-4 parts ways in one up block, 8 of 533 ops."""
    import gpu_kernel_census

    matched, differ, total = gpu_kernel_census.layout_agreement(run)
    assert matched >= total - 3  # the GPU's timestep cast to fp16
    assert len(differ) <= (8 if run["batch"] == 1 and run["preset"].startswith("ldm4") else 0), differ[:3]


class _TwoConvolutions(torch.nn.Module):
    """A convolution of diffusers' channels-last attention output and one of a contiguous tensor."""

    def __init__(self):
        super().__init__()
        self.of_view = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.of_residual = torch.nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, sequence, residual):
        return self.of_view(sequence.transpose(1, 2).reshape(residual.shape)), self.of_residual(residual)


def test_a_convolution_transforms_the_operands_stored_in_the_other_layout_than_its_kernels_read():
    from types import SimpleNamespace

    from simdq.cost.estimate import _layout_bytes
    from simdq.model.grouping import group_layers

    model = _TwoConvolutions().to("meta")
    records = trace(model, {"sequence": torch.empty(2, 16, 8, device="meta"),
                            "residual": torch.empty(2, 8, 4, 4, device="meta")})
    rows = {layer.module: layer for layer in group_layers(model, records) if layer.kind == "conv"}
    assert rows["of_view"].operand_layouts == ("channels_last", "contiguous")
    assert rows["of_residual"].operand_layouts == ("contiguous", "contiguous")
    cost = SimpleNamespace(weight_bytes=1000.0, read_bytes=30.0, write_bytes=20.0)
    # cuDNN computes a channels-last input in place and returns it so: NHWC kernels transform only the weights,
    # NCHW (full-fp32) kernels the input and the output
    assert _layout_bytes(rows["of_view"], cost) == (1000.0, 50.0)
    assert _layout_bytes(rows["of_residual"], cost) == (1050.0, 0.0)
    linear = SimpleNamespace(kind="linear", operand_layouts=("contiguous", "contiguous"))
    assert _layout_bytes(linear, cost) == (0.0, 0.0)
