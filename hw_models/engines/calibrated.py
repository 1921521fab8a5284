"""A GPU model calibrated on the real device: per-class efficiency, per-kernel time and tile waves.

Per layer: latency = kernels x kernel_s + max(compute_s, memory_s), with
- compute_s for a GEMM (conv, linear, attention): the tiles of a tile_m x tile_n output tiling spread over
  the SMs in waves; each wave costs tile_m x tile_n x K MACs per SM at efficiency x the SM's share of
  the dense peak (this is what makes small and odd GEMM shapes slower than their MACs suggest); where the
  class's fit has a wide tiling too (cuDNN's full-fp32 convolutions: 32x32 tiles on small outputs, 128x32 on large
  ones), the faster of the two, each at its own efficiency; a fused
  attention kernel, where its class's fit says so, by its own tiling: blocks of queries over the SMs, each
  looping over the keys with the head dimension rounded up to the kernel's compiled size;
- compute_s otherwise: non-GEMM arithmetic at efficiency x the vector peak;
- memory_s: DRAM traffic at memory_efficiency x peak bandwidth;
- plus, for a convolution class whose fit has a transform_efficiency, cuDNN's layout transforms: its NHWC
  kernels run between an NCHW -> NHWC transform of each operand stored channels-first (the input, the weights
  on every call) and one of the output back, serialised with the GEMM: those bytes at transform_efficiency x
  peak bandwidth (reports/gpu-kernel-census-h100.md: 1.4 of LDM-4's 2.7 ms of convolution at batch 1); its
  full-fp32 kernels read NCHW, and transform a channels-last input and its output instead
  (LayerWork.layout_transform_bytes).
A norm's time is divided by the share of SMs its rows occupy (GroupNorm runs one thread block per batch x group).
A 3x3 fp32 convolution of a shape the file records as one cuDNN runs as an FFT (`fft_convolutions`) is priced by
the `conv_fft_fp32` class instead (or the class of its FFT's side, `conv_fft64_fp32`, where the file has it): its
kernels x kernel_s plus its frequency-domain weights at memory_efficiency x peak bandwidth (FftShape, fft_times);
where its workspace exceeds the memory free (LayerWork.free_memory_bytes), cuDNN runs it as an implicit GEMM, priced
by the conv class.
The parameters of each op class (`conv_fp16`, `pointwise_fp16` (1x1 convolutions), `downsample_fp16` (strided
convolutions; a file without either prices those as `conv`), `linear_int8`, `attention_bf16`, `norm`, `softmax`,
`elementwise`, `memory` (concatenation), `resample` (nearest upsampling; a file without it prices it as `memory`),
`strided_copy` (copies out of a transposed or channels-last layout, before a linear or a norm), the vector classes'
twins off the contiguous layout (`elementwise_strided`, `memory_strided`, `resample_strided`: an add or a
concatenation of a channels-last view and a contiguous tensor, an upsampling of the view; a file without them
prices such ops as contiguous), and the kernels of dynamic activation quantization `quantize_fp8`, `quantize_int8`,
`dequantize_int8`) are fitted by `simdq hw calibrate` from microbenchmarks; the vector classes also apart in fp32
(`norm_fp32`, ...; a file without them prices fp32 work by the fp16 fit and fp32's bytes). A class without
parameters falls back to the plain roofline.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from math import ceil, log2

from .base import EngineDescription, LayerEstimate
from .roofline import RooflineEngine, conversion_ops
from ..workload import FP32, FULL_PRECISION, LayerWork

GEMM_CLASS_PREFIX = {"conv": "conv", "linear": "linear", "attention_matmul": "attention"}
VECTOR_CLASS = {"norm": "norm", "softmax": "softmax", "elementwise": "elementwise", "resample": "resample",
                "concat": "memory", "embedding": "memory"}
# a file fitted before a class was split from another prices it as the class it came from
FORMER_CLASS = {"resample": "memory"}
# dynamic activation quantization (hw_models.workload.quantize_work) and int32 dequantization, by target family
CONVERSION_CLASSES = ("quantize_fp8", "quantize_int8", "dequantize_int8")
# a copy out of a transposed or channels-last layout (before a linear's GEMM, in a norm)
SIDE_CLASSES = ("strided_copy",)
# a linear's bias add that the GEMM did not fuse (after the copy of a strided input): aten's add of a broadcast row,
# which is not vectorised: on an H100 8.8 us for 8192 x 448 fp16 rows (reports/gpu-bias-add-h100.json; 9.3 in a
# forward, reports/gpu-kernel-census-h100.md), 1.5x what `elementwise` prices for its bytes; a file without the
# class prices it as `elementwise`
BIAS_ADD_CLASS = "bias_add"
# a vector class's ops that read an operand in another memory order than they write, or upsample a channels-last
# input (LayerWork.strided_kernels): slower than the class's contiguous benchmarks (reports/gpu-kernel-census-h100.md)
STRIDED_SUFFIX = "_strided"
STRIDED_CLASSES = tuple(f"{name}{STRIDED_SUFFIX}" for name in ("elementwise", "memory", "resample"))
# the vector classes fitted apart in fp32 (`norm_fp32`, ...), which a file may lack (fp16's then price fp32 by its
# bytes): an fp32 GroupNorm takes 1.2x its fp16 time on an H100, not the 2x its bytes say
FP32_SUFFIX = "_fp32"
# a 3x3 fp32 convolution (TF32 off) that cuDNN's heuristics run as an FFT (reports/gpu-conv-algorithms-h100.md):
# which shapes do is recorded on the GPU (FftShape), not predicted; their time is this class's
FFT_CLASS = "conv_fft_fp32"
# and, by the side of the FFT (the padded input rounded up to a power of two: cuDNN's fft2d_r2c_32x32, _64x64 and
# _128x128 kernels), a class of its own where the survey ran enough shapes of that side: each side's per-bin GEMVs
# stream the frequency-domain weights at their own rate (on the H200 a 64x64 FFT's at 0.84 TB/s, a 128x128 one's at
# 0.39: reports/gpu-conv-algorithms-h200.md), which one class fitted on both misses by 30%
FFT_SIDES = (32, 64, 128)
COMPLEX64_BYTES = 8
# DRAM passes over the frequency-domain weights, by the kernels cuDNN runs (reports/gpu-kernel-census-h100-misses.md):
# the weight FFT writes them, a transpose reads and writes them, the GEMVs read them
FFT_WEIGHT_PASSES = 4


def fft_side_class(side: int) -> str:
    """The FFT class of the convolutions whose FFT has this side."""
    return f"conv_fft{side}_fp32"


def strided_class(name: str) -> bool:
    """A class whose ops read or write off the contiguous layout (`strided_copy`, `elementwise_strided`, and
    their fp32 twins): whole DRAM sectors move for the few bytes used of each, which costs energy as well as time."""
    return name.removesuffix(FP32_SUFFIX) in SIDE_CLASSES + STRIDED_CLASSES
FP32_VECTOR_CLASSES = tuple(f"{name}{FP32_SUFFIX}" for name in
                            sorted(set(VECTOR_CLASS.values())) + list(SIDE_CLASSES) + list(STRIDED_CLASSES)
                            + [BIAS_ADD_CLASS])


@dataclass(frozen=True)
class ClassParams:
    kernel_s: float
    efficiency: float
    memory_efficiency: float
    tile_m: int = 128
    tile_n: int = 128
    split_k_min: int = 0  # split K across SMs in chunks of at least this many (0: no split-K)
    # attention classes: > 0 prices a fused attention kernel by its own tiling (fused_attention_compute_s), its
    # head dimension rounded up to this; 0 prices its two matmuls as GEMMs
    head_dim_granule: int = 0
    # convolution classes: > 0 adds layout transforms of the operands stored in the other layout than the class's
    # kernels read at this share of the DRAM bandwidth (transform_s); 0: none
    transform_efficiency: float = 0.0
    # a second, wider output tiling the library picks where it is faster, at its own efficiency (0: none)
    wide_tile_m: int = 0
    wide_tile_n: int = 0
    wide_efficiency: float = 0.0
    # the least time per unit of K (per split) a GEMM takes when its weights stream from DRAM, as each layer's do in
    # a forward: an SM with one or two tiles of a CUDA-core kernel waits on every load (0: none)
    dram_latency_per_k_s: float = 0.0


@dataclass(frozen=True)
class FftShape:
    """A convolution cuDNN ran as an FFT on the calibration GPU: its batch, square size, channels and how many
    kernels it launched (a per-frequency GEMV each at 32x32 and above: 2,120 at 32x32; 6 at 16x16)."""

    batch: int
    size: int
    in_channels: int
    out_channels: int
    kernels: int

    @property
    def gemm_dims(self) -> tuple:
        """The layer's GEMM shape as simdq's trace gives a 3x3 convolution: (1, batch x pixels, Cout, Cin x 9)."""
        return 1, self.batch * self.size ** 2, self.out_channels, self.in_channels * 9

    @property
    def key(self) -> tuple:
        """(batch, gemm_dims): what tells this shape from another of the same GEMM (LayerWork.batch, .gemm_dims)."""
        return self.batch, self.gemm_dims

    @property
    def side(self) -> int:
        """The FFT's side: the padded input (size + 2) rounded up to a power of two (64 for a 32x32 input)."""
        return 1 << ceil(log2(self.size + 2))

    @property
    def frequency_bins(self) -> int:
        """Bins of the real 2-D FFT: its side times half of that plus one (cuDNN's fft2d_r2c_64x64 for a 32x32
        input: 64 x 33 = 2,112, one GEMV each)."""
        return self.side * (self.side // 2 + 1)

    @property
    def traffic_bytes(self) -> float:
        """The weights in the frequency domain, once (complex64, one Cout x Cin matrix per bin): what the weight
        FFT writes and each bin's GEMV reads; the class's memory efficiency absorbs the passes over them."""
        return float(self.frequency_bins * self.in_channels * self.out_channels * COMPLEX64_BYTES)

    @property
    def workspace_bytes(self) -> float:
        """The memory cuDNN's FFT needs beside its operands: the frequency-domain weights twice (transformed, then
        transposed) and the input's and output's bins. Within 0.6% of the peak memory one call added, over the ten
        FFT shapes of reports/gpu-fft-shapes-h100.json (0.44 to 54.6 GB)."""
        activations = self.batch * self.frequency_bins * (self.in_channels + self.out_channels) * COMPLEX64_BYTES
        return 2 * self.traffic_bytes + activations


def fft_times(shape: FftShape, params: ClassParams, bandwidth: float) -> tuple:
    """(kernel seconds, memory seconds) of an FFT convolution; its latency is their sum (the GEMVs run one
    after another, each too short to hide its launch)."""
    return shape.kernels * params.kernel_s, shape.traffic_bytes / bandwidth / params.memory_efficiency


def op_class(kind: str, precision, family: str = "float", window: int = 0, stride: int = 1) -> str:
    """The calibration class of a layer kind at a compute precision (a conversion: by its target's family;
    a 1x1 convolution: `pointwise`, which cuDNN runs as a plain GEMM over the pixels; a strided one:
    `downsample`, whose kernels cuDNN picks apart and whose times a 3x3 fit misses by 19-34% on an H100)."""
    if kind == "conv" and window == 1:
        return f"pointwise_{precision}"
    if kind == "conv" and stride > 1:
        return f"downsample_{precision}"
    if kind in GEMM_CLASS_PREFIX:
        return f"{GEMM_CLASS_PREFIX[kind]}_{precision}"
    if kind in ("quantize", "dequantize"):
        return f"{kind}_{'int' if family == 'int' else 'fp'}8"
    return VECTOR_CLASS[kind]


def _split_waves(tiles: int, k: int, params: ClassParams, sms: int) -> tuple:
    """(splits of K, waves over the SMs) for `tiles` output tiles: K splits into chunks of at least split_k_min
    when there are fewer tiles than SMs."""
    splits = 1
    if params.split_k_min and tiles < sms:
        splits = max(1, min(ceil(sms / tiles), k // params.split_k_min))
    return splits, ceil(tiles * splits / sms)


def gemm_compute_s(dims: tuple, params: ClassParams, peak: float, sms: int) -> float:
    """Time of the waves of output tiles: each SM computes tile_m x tile_n x K MACs per tile. When there
    are fewer tiles than SMs, libraries split K (cuBLAS split-K, cuDNN's equivalents) into chunks of at
    least split_k_min to occupy more SMs. Where the class has a wide tiling too, the faster of the two; and no less
    than its K per split x dram_latency_per_k_s (a layer of a forward reads its weights from DRAM)."""
    batch, m, n, k = dims
    splits, waves = _split_waves(batch * ceil(m / params.tile_m) * ceil(n / params.tile_n), k, params, sms)
    compute_s = waves * 2 * params.tile_m * params.tile_n * ceil(k / splits) / (peak / sms * params.efficiency)
    if params.wide_efficiency:
        wide_waves = ceil(batch * ceil(m / params.wide_tile_m) * ceil(n / params.wide_tile_n) / sms)
        compute_s = min(compute_s, wide_waves * 2 * params.wide_tile_m * params.wide_tile_n * k
                        / (peak / sms * params.wide_efficiency))
    return max(compute_s, ceil(k / splits) * params.dram_latency_per_k_s)


def k_per_split(dims: tuple, params: ClassParams, sms: int) -> int:
    """The K each tile of a GEMM loops over: all of it, or a chunk where split-K spreads it over idle SMs."""
    batch, m, n, k = dims
    splits, _ = _split_waves(batch * ceil(m / params.tile_m) * ceil(n / params.tile_n), k, params, sms)
    return ceil(k / splits)


def fused_attention_compute_s(shape: tuple, params: ClassParams, peak: float, sms: int) -> float:
    """Time of one fused (flash) attention kernel of shape (batch x heads, queries, keys, head dim): each SM takes
    tile_m queries of one head and loops over the keys in blocks of tile_n, computing QK^T and AV with the whole
    head dimension rounded up to head_dim_granule (the kernel's compiled head size). The keys split across SMs,
    in chunks of at least split_k_min, when there are fewer query blocks than SMs."""
    batch, queries, keys, head_dim = shape
    splits, waves = _split_waves(batch * ceil(queries / params.tile_m), keys, params, sms)
    key_blocks = ceil(ceil(keys / splits) / params.tile_n)
    padded_head_dim = ceil(head_dim / params.head_dim_granule) * params.head_dim_granule
    macs_per_tile = 2 * params.tile_m * key_blocks * params.tile_n * padded_head_dim  # QK^T and AV
    return waves * 2 * macs_per_tile / (peak / sms * params.efficiency)


def attention_shape(dims: tuple, half: str) -> tuple:
    """(batch x heads, queries, keys, head dim) of an attention from the GEMM dims of its QK^T or AV half."""
    batch, m, n, k = dims
    return (batch, m, n, k) if half == "qk" else (batch, m, k, n)


def occupancy(rows: int, sms: int) -> float:
    """The share of SMs a reduction of `rows` independent rows keeps busy (1 where the rows are unknown)."""
    return min(1.0, rows / sms) if rows > 0 else 1.0


def transform_s(params: ClassParams, transformed_bytes: float, bandwidth: float) -> float:
    """The time of a convolution's layout transforms: what they read of `transformed_bytes` (and write back,
    which transform_efficiency absorbs) at transform_efficiency x the DRAM bandwidth; 0 where the class has none."""
    if not params.transform_efficiency:
        return 0.0
    return transformed_bytes / bandwidth / params.transform_efficiency


def calibrated_time(params: ClassParams, kernels: int, compute_s: float, memory_s: float,
                    transforms_s: float = 0.0) -> float:
    return kernels * params.kernel_s + max(compute_s, memory_s) + transforms_s


class CalibratedEngine(RooflineEngine):
    def __init__(self, *args, classes: dict, sms: int, calibration_source: str, fft_shapes=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.classes = classes
        self.sms = sms
        self.calibration_source = calibration_source
        # keyed by batch too: 1x32x32 and 4x16x16 pixels make the same GEMM, not the same FFT (2,112 bins, 544)
        self.fft_shapes = {shape.key: shape for shape in fft_shapes}

    def estimate_layer(self, layer: LayerWork) -> LayerEstimate:
        roofline = super().estimate_layer(layer)
        if layer.kernels == 0 and not layer.is_gemm and any(c.startswith("attention_") for c in self.classes):
            # the softmax of fused attention runs inside the attention kernel, whose calibration timed it
            return LayerEstimate(roofline.engine, None, "fused into the attention kernel (timed with it)",
                                 0.0, 0.0, 0.0, 0.0, "overhead", actions=roofline.actions)
        fft = self._fft_shape(layer, roofline.compute_precision)
        if fft is not None and fft.workspace_bytes <= layer.free_memory_bytes:
            return self._fft_estimate(layer, roofline, fft)
        if fft is not None:  # cuDNN falls back to the next algorithm it proposes: an implicit GEMM
            roofline = replace(roofline, mapping=f"{roofline.mapping} (its FFT's {fft.workspace_bytes / 1e9:.1f} GB "
                                                 "workspace not free)")
        family = layer.activation_format.family
        name = op_class(layer.kind, roofline.compute_precision, family, layer.window, layer.stride)
        params = (self._vector_params(name, layer.vector_dtype)
                  or self.classes.get(op_class(layer.kind, roofline.compute_precision, family))
                  or self.classes.get(FORMER_CLASS.get(name)))
        if params is None:
            return roofline
        engine = self.rates
        extra, side_kernels, side_bytes, side_s = 0, 0, 0.0, 0.0
        if layer.is_gemm and roofline.compute_precision and layer.gemm_dims:
            peak = engine.peaks[roofline.compute_precision]
            if layer.fused_attention and params.head_dim_granule:  # each half carries half the fused kernel
                shape = attention_shape(layer.gemm_dims, layer.fused_attention)
                compute_s = fused_attention_compute_s(shape, params, peak, self.sms) / 2
            else:
                compute_s = gemm_compute_s(layer.gemm_dims, params, peak, self.sms)
            weight = layer.weight_format or layer.activation_format
            extra, _ = conversion_ops(layer, weight, layer.activation_format, roofline.compute_precision)
            compute_s += (layer.vector_flops + extra) / engine.vector_peak
            side_kernels, side_bytes, side_s = self._side_ops(layer)
            side_s += transform_s(params, layer.layout_transform_bytes(roofline.compute_precision), self.dram_bandwidth)
        else:
            compute_s = roofline.compute_s / params.efficiency
            side_kernels, side_bytes, side_s = self._relayouts(layer)
            strided_kernels, strided_bytes, strided_s = self._strided_ops(layer, name)
            side_kernels, side_bytes, side_s = (side_kernels + strided_kernels, side_bytes + strided_bytes,
                                                side_s + strided_s)
        memory_s = (layer.traffic_bytes - side_bytes) / self.dram_bandwidth / params.memory_efficiency
        if layer.kind == "norm":  # one thread block per row: fewer rows than SMs leave SMs idle
            busy_share = occupancy(layer.parallel_rows, self.sms)
            compute_s, memory_s = compute_s / busy_share, memory_s / busy_share
        overhead_s = (layer.kernels - side_kernels) * params.kernel_s
        busy = max(compute_s, memory_s)
        bottleneck = "overhead" if overhead_s > busy else ("compute" if compute_s >= memory_s else "memory")
        return LayerEstimate(
            engine=roofline.engine, compute_precision=roofline.compute_precision,
            mapping=roofline.mapping + " [calibrated]", compute_s=compute_s, memory_s=memory_s,
            overhead_s=overhead_s + side_s, latency_s=overhead_s + busy + side_s, bottleneck=bottleneck,
            actions=self.actions(layer, roofline.compute_precision, extra, (params.tile_m, params.tile_n)),
        )

    def workspace_bytes(self, layer: LayerWork) -> float:
        """The workspace the layer's kernel asks for beside its operands: an FFT convolution's, else 0."""
        if not layer.is_gemm:
            return 0.0
        precision = self.choose_precision(layer.weight_format or layer.activation_format, layer.activation_format,
                                          layer.tf32)
        fft = self._fft_shape(layer, precision)
        return fft.workspace_bytes if fft is not None else 0.0

    def _fft_shape(self, layer: LayerWork, precision):
        """The recorded FFT shape this layer is (a 3x3, stride-1 convolution in full fp32), or None."""
        if (layer.kind != "conv" or precision != "fp32" or layer.window != 9 or layer.stride != 1
                or FFT_CLASS not in self.classes):
            return None
        return self.fft_shapes.get((layer.batch, tuple(layer.gemm_dims)))

    def _fft_estimate(self, layer: LayerWork, roofline: LayerEstimate, shape: FftShape) -> LayerEstimate:
        params = self.classes.get(fft_side_class(shape.side)) or self.classes[FFT_CLASS]
        overhead_s, memory_s = fft_times(shape, params, self.dram_bandwidth)
        return LayerEstimate(
            engine=roofline.engine, compute_precision=roofline.compute_precision,
            mapping=roofline.mapping + " [calibrated: cuDNN FFT]", compute_s=0.0, memory_s=memory_s,
            overhead_s=overhead_s, latency_s=overhead_s + memory_s,
            bottleneck="overhead" if overhead_s > memory_s else "memory",
            # its energy: the frequency-domain weights' DRAM passes, its own kernels, and no NHWC transforms
            actions=self.actions(replace(layer, read_bytes=layer.read_bytes + FFT_WEIGHT_PASSES * shape.traffic_bytes,
                                         kernels=shape.kernels, channels_first_bytes=0.0,
                                         channels_last_bytes=0.0),
                                 roofline.compute_precision, 0, (params.tile_m, params.tile_n)),
        )

    def _vector_params(self, name: str, dtype: str):
        """A class's parameters for work in `dtype`: a vector class's `_fp32` fit for fp32 where the file has one,
        else the class's own (None where it has neither)."""
        fp32 = self.classes.get(name + FP32_SUFFIX) if dtype == "fp32" else None
        return fp32 or self.classes.get(name)

    def _relayouts(self, layer: LayerWork) -> tuple:
        """(kernels, DRAM bytes, seconds) of the copies of a non-contiguous input among a layer's kernels
        (GroupNorm's .contiguous() of the transposed view an attention block hands it), priced by the
        `strided_copy` class: they run at a strided copy's speed, not the class's; (0, 0, 0) where the file has no
        such class (the layer's own class then prices them)."""
        params = self._vector_params("strided_copy", layer.vector_dtype)
        if not layer.relayout_kernels or params is None:
            return 0, 0.0, 0.0
        seconds = (layer.relayout_kernels * params.kernel_s
                   + layer.relayout_bytes / self.dram_bandwidth / params.memory_efficiency)
        return layer.relayout_kernels, layer.relayout_bytes, seconds

    def _strided_ops(self, layer: LayerWork, name: str) -> tuple:
        """(kernels, DRAM bytes, seconds) of a vector layer's ops off the contiguous layout, priced by the class's
        `_strided` twin where the file has it (else (0, 0, 0): the class prices them as contiguous)."""
        params = self._vector_params(name + STRIDED_SUFFIX, layer.vector_dtype)
        if not layer.strided_kernels or params is None:
            return 0, 0.0, 0.0
        seconds = (layer.strided_kernels * params.kernel_s
                   + layer.strided_bytes / self.dram_bandwidth / params.memory_efficiency)
        return layer.strided_kernels, layer.strided_bytes, seconds

    def _side_ops(self, layer: LayerWork) -> tuple:
        """(kernels, DRAM bytes, seconds) of a GEMM layer's other kernels: copies out of a strided layout (aten's
        reshape of a transposed input before a linear) at a strided copy's speed, and a linear's bias add that
        addmm did not fuse at the `bias_add` class's (the `elementwise` class's where the file lacks it); (0, 0, 0)
        for what the file has no class for (the GEMM's class then prices it). The GEMM's own traffic is its A
        (M x K), its weights and its output (M x N)."""
        kernels, traffic, seconds = self._relayouts(layer)
        others = layer.kernels - 1 - layer.relayout_kernels
        params = (self._vector_params(BIAS_ADD_CLASS, layer.vector_dtype)
                  or self._vector_params("elementwise", layer.vector_dtype))
        if layer.kind != "linear" or others < 1 or params is None:
            return kernels, traffic, seconds
        batch, m, n, k = layer.gemm_dims
        out_bytes = FULL_PRECISION.get(layer.vector_dtype, FP32).bits / 8
        gemm_bytes = layer.weight_bytes + batch * m * (k * layer.activation_format.bits / 8 + n * out_bytes)
        rest = max(0.0, layer.traffic_bytes - gemm_bytes - traffic)
        return (kernels + others, traffic + rest,
                seconds + others * params.kernel_s + rest / self.dram_bandwidth / params.memory_efficiency)

    def describe(self) -> EngineDescription:
        return EngineDescription("calibrated", dict(self.rates.peaks))
