"""An edge-NPU engine: a rows x cols systolic array with an on-chip buffer, analytically (in the spirit of
SCALE-Sim and Timeloop).

A GEMM batch x (M x K) @ (K x N) is cut into folds that fit the array:
- weight-stationary: the array holds a rows x cols tile of the weights (K along rows, N along columns);
  folds = ceil(K / rows) x ceil(N / cols), each streams the M input rows: M + rows + cols - 2 cycles
  (fill and drain included);
- output-stationary: the array holds rows x cols outputs (M along rows, N along columns); folds =
  ceil(M / rows) x ceil(N / cols), each accumulates over K: K + rows + cols - 2 cycles.
Cycles are divided by the MACs a PE does per cycle at the precision (int8 1, int16 1/2, ...).
DRAM traffic follows from the tiling and the on-chip buffer, split in three equal parts for inputs,
weights and outputs: an operand read by several folds is read once if its part of the buffer holds it
and once per fold otherwise; partial sums that do not stay on chip between K folds (weight-stationary)
are written and read back at 4 bytes. Latency = max(compute, DRAM time) + per-layer overhead; the
excess of DRAM time over compute is the stall. Energy: MACs at the precision's energy, on-chip buffer
traffic of three operands per MAC reused across the array's larger dimension, and the DRAM traffic.
Layers the array cannot run go to the device's fallback engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

from ..actions import Actions
from .base import EngineDescription, EngineModel, LayerEstimate
from ..precision import COMPUTE_TYPES, fits
from ..workload import LayerWork

DATAFLOWS = ("weight_stationary", "output_stationary")
PARTIAL_SUM_BYTES = 4


@dataclass(frozen=True)
class Tiling:
    folds: int
    cycles: float
    input_reads: int  # times the input operand crosses from DRAM
    weight_reads: int
    output_passes: int  # 1: outputs written once; more: partial sums spill between K folds
    dram_bytes: float


class SystolicEngine(EngineModel):
    def __init__(self, name: str, rows: int, cols: int, clock_hz: float, dataflow: str, macs_per_pe: dict,
                 buffer_bytes: float, kernel_overhead_s: float, dram_bandwidth: float, energy=None, kinds=None):
        self.name = name
        self.rows, self.cols, self.clock_hz, self.dataflow = rows, cols, clock_hz, dataflow
        self.macs_per_pe = macs_per_pe  # precision -> MACs per PE per cycle
        self.buffer_bytes = buffer_bytes
        self.kernel_overhead_s = kernel_overhead_s
        self.dram_bandwidth = dram_bandwidth
        self.energy = energy
        self.kinds = kinds or frozenset({"conv", "linear"})

    def choose_precision(self, layer: LayerWork):
        weight, activation = layer.weight_format or layer.activation_format, layer.activation_format
        candidates = [p for p in self.macs_per_pe if fits(weight, p) and fits(activation, p)]
        return max(candidates, key=lambda p: self.macs_per_pe[p]) if candidates else None

    def can_run(self, layer: LayerWork) -> bool:
        return (layer.kind in self.kinds and layer.is_gemm and bool(layer.gemm_dims)
                and self.choose_precision(layer) is not None)

    def tiling(self, layer: LayerWork, precision: str) -> Tiling:
        batch, m, n, k = layer.gemm_dims
        m *= batch
        # operands as stored in DRAM: a conv's input is its feature map (the im2col expansion is on chip)
        input_bytes = layer.read_bytes
        weight_bytes = layer.weight_bytes or k * n * layer.activation_format.bits / 8
        output_bytes = layer.write_bytes
        part = self.buffer_bytes / 3
        if self.dataflow == "weight_stationary":
            k_folds, n_folds = ceil(k / self.rows), ceil(n / self.cols)
            folds, per_fold = k_folds * n_folds, m + self.rows + self.cols - 2
            input_reads = 1 if input_bytes <= part else n_folds
            weight_reads = 1
            stays = m * self.cols * PARTIAL_SUM_BYTES <= part
            output_passes = 1 if stays or k_folds == 1 else 2 * k_folds - 1
        else:
            m_folds, n_folds = ceil(m / self.rows), ceil(n / self.cols)
            folds, per_fold = m_folds * n_folds, k + self.rows + self.cols - 2
            input_reads = 1 if input_bytes <= part else n_folds
            weight_reads = 1 if weight_bytes <= part else m_folds
            output_passes = 1
        cycles = folds * per_fold / self.macs_per_pe[precision]
        spill = (output_passes - 1) * m * n * PARTIAL_SUM_BYTES
        dram = input_bytes * input_reads + weight_bytes * weight_reads + output_bytes + spill
        return Tiling(folds, cycles, input_reads, weight_reads, output_passes, dram)

    def estimate_layer(self, layer: LayerWork) -> LayerEstimate:
        precision = self.choose_precision(layer)
        if not self.can_run(layer):
            raise ValueError(f"{self.name} cannot run {layer.kind} layer {layer.name}")
        tiling = self.tiling(layer, precision)
        compute_s = tiling.cycles / self.clock_hz
        memory_s = tiling.dram_bytes / self.dram_bandwidth
        overhead_s = layer.kernels * self.kernel_overhead_s
        busy = max(compute_s, memory_s)
        bottleneck = "overhead" if overhead_s > busy else ("compute" if compute_s >= memory_s else "memory")
        stall = max(memory_s - compute_s, 0.0)
        mapping = (f"{precision} on {self.rows}x{self.cols} {self.dataflow.replace('_', '-')}: {tiling.folds} folds, "
                   f"inputs read {tiling.input_reads}x, weights {tiling.weight_reads}x"
                   + (f", partial sums spill ({tiling.output_passes} passes)" if tiling.output_passes > 1 else "")
                   + (f", stall {stall * 1e6:.1f} us" if stall else ""))
        # three operands per MAC through the on-chip buffer, each reused across the array's larger dimension
        onchip = layer.macs * 3 * COMPUTE_TYPES[precision].bits / 8 / max(self.rows, self.cols)
        return LayerEstimate(
            engine=self.name, compute_precision=precision, mapping=mapping, compute_s=compute_s, memory_s=memory_s,
            overhead_s=overhead_s, latency_s=overhead_s + busy, bottleneck=bottleneck,
            actions=Actions(layer.macs, precision, 0, layer.vector_dtype, 0, onchip, tiling.dram_bytes),
        )

    def describe(self) -> EngineDescription:
        pe_ops = self.rows * self.cols * self.clock_hz * 2
        peaks = {precision: pe_ops * rate for precision, rate in self.macs_per_pe.items()}
        return EngineDescription("systolic", peaks, f"{self.rows}x{self.cols} {self.dataflow.replace('_', '-')}")
