"""Fit the calibrated GPU model's per-class parameters to measured microbenchmarks (numpy only).

For each op class, a grid search over kernel time, efficiency, memory efficiency (and, for GEMMs, the
output tile) minimises the mean squared log error of predicted against measured time; the log makes a
2 us kernel count as much as a 2 ms one (a convolution class, whose samples carry channels-first bytes, also
searches the efficiency of cuDNN's layout transforms, or none). The grids are coarse, so that each class's
search over its tilings stays within seconds: a memory efficiency of 0.1 or 0.15 is a step of half, and an H200's
strided copies, 0.87 of an H100's time where the DRAM bandwidths say 0.70, fell between them. So a second search,
with the tiling fixed, refines those four values: a pattern search from a coarse step either side of each down to
steps of 1%.

A full-fp32 convolution class (cuDNN's CUDA-core kernels) also searches a narrow tiling beside a wide one, the
faster of the two per shape, and, where some of its samples read their weights from DRAM on every call (they
outgrew half the L2), the least time per unit of K such weights take to stream, which every layer of a forward
pays (its weights are read once): one coordinate step with the rest fixed, then the rest again with it.

A GEMM class searches five parameters; one with fewer than MIN_SAMPLES_FOR_TILING samples would fit its tile
and split-K to the noise of a few shapes (an H100's four stride-2 TF32 convolutions came out at efficiency 0.98
with split-K 2048), so it takes the tiling of the class it was split from and fits the other three.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
import numpy as np

from .energy import busy_seconds
from .engines.calibrated import (ClassParams, fused_attention_compute_s, gemm_compute_s, k_per_split, occupancy,
                                 strided_class, transform_s)
from .workload import layout_transform_bytes

KERNEL_S_GRID = np.geomspace(0.5e-6, 40e-6, 40)
EFFICIENCY_GRID = np.linspace(0.02, 1.0, 50)
MEMORY_EFFICIENCY_GRID = np.linspace(0.1, 1.0, 19)
# 0: no layout transforms (the class's kernels read their operands as stored)
TRANSFORM_EFFICIENCY_GRID = np.array([0.0, 0.03, 0.05, 0.08, 0.12, 0.18, 0.27, 0.4, 0.6, 1.0])
TILES = ((64, 64), (64, 128), (128, 64), (128, 128), (128, 256), (256, 128))
# cuDNN runs full-fp32 convolutions on the CUDA cores, with narrower tiles than tensor-core kernels
# (tilesize32x32x8 and 128x32x8 in the kernel names of reports/gpu-conv-algorithms-h100.md); these classes
# also search them (fitted on 64x64 tiles with split-K, the H100's conv_fp32 missed its 222 samples by a
# median 11.6%, on 64x32 without split-K by 5.9%)
NARROW_TILES = ((32, 32), (32, 64), (64, 32))
# (1x1 ones too: 32x32, 128x32 and 256x64 in reports/gpu-pointwise-h100.md; held out of the fit, pointwise_fp32's
# 266 samples were missed by a median 13.3% with one 64x64 tiling, 10.1% with a narrow and a wide one)
NARROW_TILE_CLASSES = ("conv_fp32", "downsample_fp32", "pointwise_fp32")
# and a second, wide tiling beside a narrow one, the faster of the two per shape (cuDNN picks 128x32 for large
# outputs, where its survey times reach 0.45 of the fp32 peak against the 32x32 kernel's 0.40), whose efficiency
# is searched relative to the narrow one's
WIDE_TILES = ((128, 32), (256, 64))
WIDE_EFFICIENCY_RATIO_GRID = np.linspace(0.8, 1.6, 17)
# and the least time per unit of K where the weights come from DRAM (0: none)
DRAM_LATENCY_PER_K_GRID = np.concatenate(([0.0], np.geomspace(5e-9, 100e-9, 41)))
# points of the fine search, a step either side of each value, and the step at which it stops (1%)
REFINE_POINTS = 9
REFINE_TOLERANCE = 1.01
SPLIT_K_MIN = (0, 128, 256, 512, 1024, 2048)
# an attention class is also tried as one fused kernel whose head dimension is rounded up to each of these
# (flash kernels are compiled per head size; on an H100, fp16 SDPA at head dim 32 takes as long per head as at 40)
HEAD_DIM_GRANULES = (32, 64)
MIN_SAMPLES_FOR_TILING = 8
# a class split off another (same precision suffix) whose kernels tile their output alike
TILING_FROM = {"downsample_": "conv_"}


@dataclass(frozen=True)
class Sample:
    """One microbenchmark: op class, what the device model sees of it, and the measured time."""

    op_class: str
    kernels: int
    gemm_dims: tuple  # one (batch, M, N, K) per GEMM the kernel runs (attention: QK^T and AV); () otherwise
    vector_flops: float
    traffic_bytes: float
    peak: float  # the compute peak its class runs at (the precision's, or the vector unit's)
    measured_s: float
    precision: str = ""  # compute precision of a GEMM class; "" otherwise
    energy_j: float = None  # the board's energy per call (the GPU's own counter, static power included)
    parallel_rows: int = 0  # a norm's independent rows (its occupancy of the SMs); 0 where unknown
    channels_first_bytes: float = 0.0  # a convolution's operands stored channels-first (LayerWork's)
    channels_last_bytes: float = 0.0  # and those stored channels-last
    weights_from_dram: bool = False  # its weights outgrew the L2 between calls (weights_from_dram)

    @property
    def layout_transform_bytes(self) -> float:
        """What the class's kernels transform of its operands (LayerWork.layout_transform_bytes)."""
        return layout_transform_bytes(self.precision, self.channels_first_bytes, self.channels_last_bytes)


@dataclass(frozen=True)
class Fit:
    params: ClassParams
    samples: int
    median_error: float  # median |predicted / measured - 1|


def _tile_work(samples, sms, tile, split_k_min, head_dim_granule=0, wide=None) -> np.ndarray:
    """Each GEMM sample's compute time at efficiency 1 under a tiling and split-K granularity (an attention
    sample's, with a head-dimension granule, as one fused kernel of its QK^T's shape); with `wide` (wide tile,
    its efficiency relative to the narrow one's), the faster of the two tilings."""
    wide_tile, ratio = wide or ((0, 0), 0.0)
    params = ClassParams(1.0, 1.0, 1.0, *tile, split_k_min, head_dim_granule, 0.0, *wide_tile, ratio)
    if head_dim_granule:
        return np.array([fused_attention_compute_s(s.gemm_dims[0], params, s.peak, sms) for s in samples])
    return np.array([sum(gemm_compute_s(dims, params, s.peak, sms) for dims in s.gemm_dims) for s in samples])


def _tilings(op_class: str) -> list:
    """The tilings a GEMM class's fit searches: (tile, split_k_min, head_dim_granule, wide or None)."""
    granules = (0, *HEAD_DIM_GRANULES) if op_class.startswith("attention_") else (0,)
    narrow = op_class in NARROW_TILE_CLASSES
    tilings = [(t, s, g, None) for t in TILES + (NARROW_TILES if narrow else ()) for s in SPLIT_K_MIN for g in granules]
    if narrow:
        tilings += [(t, 0, 0, (w, r)) for t in NARROW_TILES for w in WIDE_TILES for r in WIDE_EFFICIENCY_RATIO_GRID]
    return tilings


def _wide(params: ClassParams):
    """A fit's wide tiling as _tile_work takes it, or None."""
    if not params.wide_efficiency:
        return None
    return (params.wide_tile_m, params.wide_tile_n), params.wide_efficiency / params.efficiency


def _dram_floor(samples: list, sms: int, tiling: tuple, latency: float):
    """Each sample's least time under a tiling at `latency` per K of weights from DRAM (0 where there is none)."""
    return _dram_k(samples, sms, tiling) * latency if latency else 0.0


def _dram_k(samples: list, sms: int, tiling: tuple) -> np.ndarray:
    """Each sample's K per split under a tiling where its weights came from DRAM on every call, else 0: what
    dram_latency_per_k_s multiplies."""
    tile, split_k_min = tiling[:2]
    params = ClassParams(1.0, 1.0, 1.0, *tile, split_k_min)
    return np.array([k_per_split(s.gemm_dims[0], params, sms) if s.weights_from_dram else 0 for s in samples])


def fit_class(samples: list, bandwidth: float, sms: int, tiling: tuple = None) -> Fit:
    """Fit one class; `tiling` ((tile_m, tile_n), split_k_min, head_dim_granule, wide) fixes a GEMM class's
    tiling instead of searching it. A narrow-tile class whose samples include some with weights from DRAM then
    searches its dram_latency_per_k_s, and its other parameters again with it."""
    measured = np.array([s.measured_s for s in samples])
    kernels = np.array([s.kernels for s in samples], dtype=float)
    busy = np.array([occupancy(s.parallel_rows, sms) for s in samples])
    memory = np.array([s.traffic_bytes for s in samples]) / bandwidth / busy
    is_gemm = bool(samples[0].gemm_dims)
    if is_gemm:
        tilings = [tiling] if tiling else _tilings(samples[0].op_class)
        candidates = [(candidate, _tile_work(samples, sms, *candidate)) for candidate in tilings]
    else:
        candidates = [((TILES[3], 0, 0, None), np.array([s.vector_flops / s.peak for s in samples]) / busy)]
    transforms = np.array([s.layout_transform_bytes for s in samples]) / bandwidth  # at transform efficiency 1
    transform_grid = TRANSFORM_EFFICIENCY_GRID if transforms.any() else TRANSFORM_EFFICIENCY_GRID[:1]
    log_measured = np.log(measured)
    # axes: kernel time, efficiency, memory efficiency, sample
    overhead = KERNEL_S_GRID[:, None, None, None] * kernels
    memory_s = memory / MEMORY_EFFICIENCY_GRID[None, None, :, None]

    def search(candidates, latency):
        best = None
        for candidate, ideal in candidates:
            floor_s = _dram_floor(samples, sms, candidate, latency)
            body_s = np.maximum(np.maximum(ideal / EFFICIENCY_GRID[None, :, None, None], floor_s), memory_s)
            for transform_efficiency in transform_grid:
                fixed_s = overhead + (transforms / transform_efficiency if transform_efficiency else 0.0)
                loss = np.mean((np.log(fixed_s + body_s) - log_measured) ** 2, axis=-1)
                index = np.unravel_index(np.argmin(loss), loss.shape)
                if best is None or loss[index] < best[0]:
                    best = (loss[index], candidate, ideal, transform_efficiency, index)
        return best

    loss, candidate, ideal, transform_efficiency, index = search(candidates, 0.0)
    latency = 0.0
    if is_gemm and samples[0].op_class in NARROW_TILE_CLASSES and any(s.weights_from_dram for s in samples):
        for _ in range(2):  # the latency with the rest fixed, then the rest (the tiling too) with the latency fixed
            dram_k = _dram_k(samples, sms, candidate)
            ki, ei, mi = index
            fixed_s = overhead[ki, 0, 0] + (transforms / transform_efficiency if transform_efficiency else 0.0)
            body_s = np.maximum(ideal / EFFICIENCY_GRID[ei], memory_s[0, 0, mi])
            losses = [np.mean((np.log(fixed_s + np.maximum(body_s, dram_k * grid_value)) - log_measured) ** 2)
                      for grid_value in DRAM_LATENCY_PER_K_GRID]
            latency = float(DRAM_LATENCY_PER_K_GRID[int(np.argmin(losses))])
            loss, candidate, ideal, transform_efficiency, index = search(candidates, latency)
    (tile, split, granule, wide), (ki, ei, mi) = candidate, index
    kernel_s, efficiency, memory_efficiency, transform_efficiency = _refined(
        log_measured, kernels, ideal, memory, transforms, _dram_floor(samples, sms, candidate, latency),
        (float(KERNEL_S_GRID[ki]), float(EFFICIENCY_GRID[ei]), float(MEMORY_EFFICIENCY_GRID[mi]),
         float(transform_efficiency)))
    (wide_tile_m, wide_tile_n), ratio = wide or ((0, 0), 0.0)
    params = ClassParams(
        kernel_s=kernel_s, efficiency=efficiency, memory_efficiency=memory_efficiency, tile_m=tile[0],
        tile_n=tile[1], split_k_min=split, head_dim_granule=granule, transform_efficiency=transform_efficiency,
        wide_tile_m=wide_tile_m, wide_tile_n=wide_tile_n, wide_efficiency=min(1.0, float(ratio * efficiency)),
        dram_latency_per_k_s=latency,
    )
    predicted = predicted_seconds(params, samples, bandwidth, sms)
    return Fit(params, len(samples), float(np.median(np.abs(predicted / measured - 1))))


def _coarse_step(grid: np.ndarray, value: float) -> float:
    """The ratio between the coarse grid's points where `value` lies."""
    positive = grid[grid > 0]
    at = min(max(int(np.searchsorted(positive, value)), 1), len(positive) - 1)
    return float(positive[at] / positive[at - 1])


def _neighbourhood(value: float, step: float, grid: np.ndarray) -> np.ndarray:
    """REFINE_POINTS in geometric steps from value / step to value x step, `value` in the middle, within one of
    the coarse grid's steps below its first value and no higher than its last (efficiencies stay within 1); `value`
    alone where it does not move (0, or a step of 1)."""
    if not value or step == 1.0:
        return np.array([value])
    positive = grid[grid > 0]
    half = REFINE_POINTS // 2 + 1
    return np.concatenate((np.geomspace(max(value / step, positive[0] ** 2 / positive[1]), value, half),
                           np.geomspace(value, min(value * step, positive[-1]), half)[1:]))


def _refined(log_measured, kernels, ideal, memory, transforms, floor_s, values) -> tuple:
    """The kernel time, efficiency, memory efficiency and transform efficiency of least loss, the tiling fixed: a
    pattern search that starts a coarse step either side of `values`, moves to the best point, and narrows its
    steps where none is better, until they are finer than REFINE_TOLERANCE."""
    grids = (KERNEL_S_GRID, EFFICIENCY_GRID, MEMORY_EFFICIENCY_GRID, TRANSFORM_EFFICIENCY_GRID)
    steps = [_coarse_step(grid, value) for grid, value in zip(grids, values)]
    if not np.any(ideal):
        steps[1] = 1.0  # an efficiency that prices no work stays where the coarse search left it
    while max(steps) > REFINE_TOLERANCE:
        kernel_grid, efficiency_grid, memory_grid, transform_grid = (
            _neighbourhood(value, step, grid) for grid, value, step in zip(grids, values, steps))
        # axes: kernel time, efficiency, memory efficiency, transform efficiency, sample
        overhead = kernel_grid[:, None, None, None, None] * kernels
        body_s = np.maximum(np.maximum(ideal / efficiency_grid[None, :, None, None, None], floor_s),
                            memory / memory_grid[None, None, :, None, None])
        transform_s = transforms / transform_grid[:, None] if transform_grid[0] else np.zeros((1, len(transforms)))
        loss = np.mean((np.log(overhead + body_s + transform_s) - log_measured) ** 2, axis=-1)
        best = np.unravel_index(np.argmin(loss), loss.shape)
        current = tuple(len(grid) // 2 for grid in (kernel_grid, efficiency_grid, memory_grid, transform_grid))
        if loss[best] < loss[current]:
            values = tuple(float(grid[i]) for grid, i in zip((kernel_grid, efficiency_grid, memory_grid,
                                                               transform_grid), best))
        else:
            steps = [step ** 0.5 for step in steps]
    return values


def predicted_seconds(params: ClassParams, samples: list, bandwidth: float, sms: int) -> np.ndarray:
    """What the calibrated model with `params` predicts for each sample (each sample's weights from DRAM or L2
    as they were when it was timed)."""
    busy = np.array([occupancy(s.parallel_rows, sms) for s in samples])
    memory_s = np.array([s.traffic_bytes for s in samples]) / bandwidth / busy / params.memory_efficiency
    if samples[0].gemm_dims:
        tiling = ((params.tile_m, params.tile_n), params.split_k_min, params.head_dim_granule, _wide(params))
        compute_s = np.maximum(_tile_work(samples, sms, *tiling) / params.efficiency,
                               _dram_k(samples, sms, tiling) * params.dram_latency_per_k_s)
    else:
        compute_s = np.array([s.vector_flops / s.peak for s in samples]) / busy / params.efficiency
    transforms = np.array([transform_s(params, s.layout_transform_bytes, bandwidth) for s in samples])
    kernels = np.array([s.kernels for s in samples])
    return kernels * params.kernel_s + np.maximum(compute_s, memory_s) + transforms


def _tiling_source(op_class: str) -> str:
    for prefix, source_prefix in TILING_FROM.items():
        if op_class.startswith(prefix):
            return source_prefix + op_class[len(prefix):]
    return ""


def _by_class(samples: list) -> dict:
    by_class = {}
    for sample in samples:
        by_class.setdefault(sample.op_class, []).append(sample)
    return by_class


def fit_classes(samples: list, bandwidth: float, sms: int) -> dict:
    """op class -> Fit, for every class with at least three samples."""
    by_class = _by_class(samples)
    fits = {}
    # classes that lend their tiling first, so a thin class split off one can take it
    for name in sorted(by_class, key=lambda name: (bool(_tiling_source(name)), name)):
        group = by_class[name]
        if len(group) < 3:
            continue
        source = fits.get(_tiling_source(name))
        tiling = None
        if group[0].gemm_dims and len(group) < MIN_SAMPLES_FOR_TILING and source:
            tiling = ((source.params.tile_m, source.params.tile_n), source.params.split_k_min, 0, _wide(source.params))
        fit = fit_class(group, bandwidth, sms, tiling)
        if source and source.params.dram_latency_per_k_s and not any(s.weights_from_dram for s in group):
            # none of its own timed weights from DRAM: it streams them as the class it was split from does
            fit = replace(fit, params=replace(fit.params, dram_latency_per_k_s=source.params.dram_latency_per_k_s))
        fits[name] = fit
    return dict(sorted(fits.items()))


def relative_errors(fits: dict, samples: list, bandwidth: float, sms: int) -> dict:
    """op class -> predicted / measured - 1 of each sample whose class `fits` has."""
    errors = {}
    for op_class, group in _by_class(samples).items():
        if op_class in fits:
            measured = np.array([s.measured_s for s in group])
            errors[op_class] = predicted_seconds(fits[op_class].params, group, bandwidth, sms) / measured - 1
    return errors


def cross_validated_errors(samples: list, bandwidth: float, sms: int, folds: int = 5) -> dict:
    """op class -> the relative error of each of its samples predicted by a fit without it: each class's samples
    dealt into `folds` folds in turn, every class refitted on the other folds (fit_classes, so a thin class
    takes its tiling from a refitted source class)."""
    errors = {}
    for fold in range(folds):
        train, test = [], []
        for group in _by_class(samples).values():
            for index, sample in enumerate(group):
                (test if index % folds == fold else train).append(sample)
        for op_class, values in relative_errors(fit_classes(train, bandwidth, sms), test, bandwidth, sms).items():
            errors.setdefault(op_class, []).extend(values)
    return {op_class: np.array(values) for op_class, values in sorted(errors.items())}


@dataclass(frozen=True)
class EnergyFit:
    """A GPU's energy as its own counter measures it: static power over the time, busy power over the time its
    kernels run, plus energy per action."""

    static_w: float
    busy_w: float  # drawn on top while kernels run, i.e. outside the gaps between them
    launch_gap_s: float  # the idle time between two kernels of a graph
    mac_pj: dict  # compute precision -> pJ per MAC
    conv_mac_pj: float  # added per MAC of a convolution
    vector_op_pj: float
    dram_pj_per_byte: float
    l2_pj_per_byte: float  # traffic whose working set stays in the L2 cache
    l2_bytes: float  # the L2 capacity that decided which samples' traffic stayed there
    strided_pj_per_byte: float  # added per byte read or written off the contiguous layout
    samples: int
    median_error: float  # median |predicted / measured - 1| over the samples


def nonnegative_least_squares(a: np.ndarray, b: np.ndarray, iterations: int = 500) -> np.ndarray:
    """argmin |a x - b| over x >= 0 (Lawson and Hanson's active-set method)."""
    n = a.shape[1]
    x, passive = np.zeros(n), np.zeros(n, dtype=bool)
    for _ in range(iterations):
        gradient = a.T @ (b - a @ x)
        if passive.all() or gradient[~passive].max(initial=0) <= 1e-12 * np.abs(a.T @ b).max():
            break
        passive[np.argmax(np.where(passive, -np.inf, gradient))] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
            if (z[passive] > 0).all():
                x = z
                break
            shrinking = passive & (z <= 0)
            step = np.min(x[shrinking] / (x[shrinking] - z[shrinking]))
            x = x + step * (z - x)
            passive &= x > 1e-15
    return x


SYMMETRIC_PASSES = 50


def symmetric_relative_fit(a: np.ndarray, measured: np.ndarray, passes: int = SYMMETRIC_PASSES) -> np.ndarray:
    """x >= 0 fitting a x to `measured` by least squares with each row divided by sqrt(p m), p its prediction by
    the pass before (its error (p - m) / sqrt(p m) is log(p / m) to second order: a factor over costs what the
    same factor under does), from the fit whose rows are divided by m alone, until the passes settle. At that
    fixed point the relative errors p / m - 1 average exactly 0 (its normal equations, summed with the
    coefficients as weights); dividing by m alone (passes=0) leaves them averaging -mean((p / m - 1)^2): -2.5% on
    both GPUs' records (`simdq hw crossval --energy-relative-to-measurement`)."""
    x = nonnegative_least_squares(a / measured[:, None], np.ones(len(measured)))
    for _ in range(passes):
        scale = np.sqrt(np.maximum(a @ x, 1e-3 * measured) * measured)
        previous, x = x, nonnegative_least_squares(a / scale[:, None], measured / scale)
        if np.allclose(x, previous, rtol=1e-9, atol=0.0):
            break
    return x


def launch_gap(samples: list) -> float:
    """The idle time between two kernels of a CUDA graph, bounded from above by the shortest time per kernel
    measured (a near-empty elementwise kernel: the gap plus a body that does almost nothing). Such kernels
    run at the board's idle power, so the SMs are taken to be idle for this long per kernel."""
    return min(s.measured_s / s.kernels for s in samples if s.kernels)


def _energy_features(sample: Sample, precisions: list, gap_s: float, l2_bytes: float, strided_energy: bool) -> list:
    macs = sum(b * m * n * k for b, m, n, k in sample.gemm_dims) * 1e-12
    busy = busy_seconds(sample.measured_s, sample.kernels, gap_s)
    row = [sample.measured_s, busy] + [macs if sample.precision == p else 0.0 for p in precisions]
    convolution = sample.op_class.startswith(("conv_", "pointwise_", "downsample_"))
    # replayed back to back, a benchmark whose operands fit in L2 never leaves it; one that does not
    # streams all of them from DRAM on every call (a cyclic sweep evicts each line before its reuse); cuDNN's
    # layout transforms read and write each byte they transform once more
    moved = sample.traffic_bytes + 2 * sample.layout_transform_bytes
    resident = moved <= l2_bytes
    traffic = moved * 1e-12
    strided = sample.traffic_bytes * 1e-12 if strided_energy and strided_class(sample.op_class) else 0.0
    return row + [macs if convolution else 0.0, sample.vector_flops * 1e-12, 0.0 if resident else traffic,
                  traffic if resident else 0.0, strided]


def fit_energy(samples: list, l2_bytes: float = 0.0, strided_energy: bool = True, symmetric: bool = True) -> EnergyFit:
    """Static power; power while kernels run (the time less a launch gap per kernel); pJ per MAC (per precision,
    plus an extra per convolution MAC: implicit GEMM stages its operands through shared memory once per kernel
    window, which a linear does not), per vector op, per DRAM byte, per byte that stays in an L2 of `l2_bytes`
    (a convolution's traffic includes its layout transforms', which read and write each channels-first byte),
    and an extra per byte of a strided class (it moves whole DRAM sectors for a few bytes of each, which the
    fit otherwise misses by a median of about a third: `simdq hw crossval`); from the samples that carry energy, by
    symmetric_relative_fit (symmetric=False: each error relative to its measurement alone). strided_energy=False
    leaves the strided classes' extra out (the models before them)."""
    metered = [s for s in samples if s.energy_j]
    precisions = sorted({s.precision for s in metered if s.precision and s.gemm_dims})
    gap_s = launch_gap(samples)
    a = np.array([_energy_features(s, precisions, gap_s, l2_bytes, strided_energy) for s in metered])
    measured = np.array([s.energy_j for s in metered])
    x = symmetric_relative_fit(a, measured, SYMMETRIC_PASSES if symmetric else 0)
    predicted = a @ x
    return EnergyFit(static_w=float(x[0]), busy_w=float(x[1]), launch_gap_s=gap_s,
                     mac_pj=dict(zip(precisions, map(float, x[2:-5]))),
                     conv_mac_pj=float(x[-5]), vector_op_pj=float(x[-4]), dram_pj_per_byte=float(x[-3]),
                     l2_pj_per_byte=float(x[-2]), l2_bytes=l2_bytes, strided_pj_per_byte=float(x[-1]),
                     samples=len(metered),
                     median_error=float(np.median(np.abs(predicted / measured - 1))))


def energy_errors(fit: EnergyFit, samples: list, l2_bytes: float = None) -> np.ndarray:
    """predicted / measured - 1 of the energy of each sample that carries one, by `fit`, on a GPU whose L2 holds
    `l2_bytes` (default: the fitted GPU's)."""
    metered = [s for s in samples if s.energy_j]
    if not metered:
        return np.array([])
    precisions = sorted(fit.mac_pj)
    coefficients = ([fit.static_w, fit.busy_w] + [fit.mac_pj[p] for p in precisions]
                    + [fit.conv_mac_pj, fit.vector_op_pj, fit.dram_pj_per_byte, fit.l2_pj_per_byte,
                       fit.strided_pj_per_byte])
    l2_bytes = fit.l2_bytes if l2_bytes is None else l2_bytes
    features = [_energy_features(s, precisions, fit.launch_gap_s, l2_bytes, True) for s in metered]
    return np.array(features).reshape(len(metered), -1) @ coefficients / [s.energy_j for s in metered] - 1


def cross_validated_energy_errors(samples: list, l2_bytes: float, folds: int = 5, strided_energy: bool = True,
                                  symmetric: bool = True) -> np.ndarray:
    """The energy error of each metered sample (in their order) predicted by a fit without it: each class's
    metered samples dealt into `folds` folds in turn, the energy refitted on everything else (NaN where nothing
    metered is left to fit on)."""
    metered = [s for s in samples if s.energy_j]
    fold_of = {id(s): index % folds for group in _by_class(metered).values() for index, s in enumerate(group)}
    errors = np.full(len(metered), np.nan)
    for fold in range(folds):
        test = [i for i, s in enumerate(metered) if fold_of[id(s)] == fold]
        train = [s for s in samples if not s.energy_j or fold_of[id(s)] != fold]
        if test and any(s.energy_j for s in train):
            errors[test] = energy_errors(fit_energy(train, l2_bytes, strided_energy, symmetric),
                                         [metered[i] for i in test])
    return errors
