"""Fit the calibrated GPU model's per-class parameters to measured microbenchmarks (numpy only).

For each op class, a grid search over kernel time, efficiency, memory efficiency (and, for GEMMs, the
output tile) minimises the mean squared log error of predicted against measured time; the log makes a
2 us kernel count as much as a 2 ms one. The grids are fine enough that the fitted values sit within a
few percent of the optimum and coarse enough to run in well under a second per class.
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np

from .engines.calibrated import ClassParams, gemm_compute_s

KERNEL_S_GRID = np.geomspace(0.5e-6, 40e-6, 40)
EFFICIENCY_GRID = np.linspace(0.02, 1.0, 50)
MEMORY_EFFICIENCY_GRID = np.linspace(0.1, 1.0, 19)
TILES = ((64, 64), (64, 128), (128, 64), (128, 128), (128, 256), (256, 128))
SPLIT_K_MIN = (0, 128, 256, 512, 1024, 2048)


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


@dataclass(frozen=True)
class Fit:
    params: ClassParams
    samples: int
    median_error: float  # median |predicted / measured - 1|


def _tile_work(samples, tile, split_k_min, sms) -> np.ndarray:
    """Each GEMM sample's compute time at efficiency 1 under a tiling and split-K granularity."""
    params = ClassParams(1.0, 1.0, 1.0, *tile, split_k_min)
    return np.array([sum(gemm_compute_s(dims, params, s.peak, sms) for dims in s.gemm_dims) for s in samples])


def fit_class(samples: list, bandwidth: float, sms: int) -> Fit:
    measured = np.array([s.measured_s for s in samples])
    kernels = np.array([s.kernels for s in samples], dtype=float)
    memory = np.array([s.traffic_bytes for s in samples]) / bandwidth
    is_gemm = bool(samples[0].gemm_dims)
    if is_gemm:
        candidates = [((tile, split), _tile_work(samples, tile, split, sms)) for tile in TILES for split in SPLIT_K_MIN]
    else:
        candidates = [((TILES[3], 0), np.array([s.vector_flops / s.peak for s in samples]))]
    best = None
    log_measured = np.log(measured)
    # axes: kernel time, efficiency, memory efficiency, sample
    overhead = KERNEL_S_GRID[:, None, None, None] * kernels
    memory_s = memory / MEMORY_EFFICIENCY_GRID[None, None, :, None]
    for tile, ideal in candidates:
        compute_s = ideal / EFFICIENCY_GRID[None, :, None, None]
        predicted = overhead + np.maximum(compute_s, memory_s)
        loss = np.mean((np.log(predicted) - log_measured) ** 2, axis=-1)
        index = np.unravel_index(np.argmin(loss), loss.shape)
        if best is None or loss[index] < best[0]:
            best = (loss[index], tile, index, predicted[index])
    _, (tile, split), (ki, ei, mi), predicted = best
    params = ClassParams(
        kernel_s=float(KERNEL_S_GRID[ki]), efficiency=float(EFFICIENCY_GRID[ei]),
        memory_efficiency=float(MEMORY_EFFICIENCY_GRID[mi]), tile_m=tile[0], tile_n=tile[1], split_k_min=split,
    )
    return Fit(params, len(samples), float(np.median(np.abs(predicted / measured - 1))))


def fit_classes(samples: list, bandwidth: float, sms: int) -> dict:
    """op class -> Fit, for every class with at least three samples."""
    by_class = {}
    for sample in samples:
        by_class.setdefault(sample.op_class, []).append(sample)
    return {name: fit_class(group, bandwidth, sms) for name, group in sorted(by_class.items()) if len(group) >= 3}
