"""An XNOR accelerator engine: an array of XNOR-and-popcount units for binary-weight layers.

A layer with binary weights runs on the array when its activations are binary (one pass) or integers of
up to max_activation_bits (bit-serially: one pass per activation bit-plane, the partial popcounts
shifted and added); a residual binary weight (binary2) adds one pass per weight plane, counted in the
LayerWork's MACs. Per layer: compute = MACs x planes / binary MAC rate; memory = DRAM traffic /
bandwidth; the latency is the largest of those and the per-layer overhead. Energy = MACs x planes x the
energy of one binary MAC (XNOR plus one popcount-adder step, i.e. two binary ops), plus, per output and
plane, one int8 MAC of the device's energy table (the shift-and-add of the planes, then the per-channel
scale), plus data movement. Everything else (full-precision layers, norms, attention) goes to the
device's fallback engine.

An engine with `packing_bytes_per_s` binarizes and bit-packs the layer's full-precision input itself before
the GEMM (Larq Compute Engine's LceQuantize ahead of LceBconv2d): one pass per activation plane that reads
the input at the model's width and writes one bit per element, memory-bound (LCE's bitpack_aarch64.h: "bit-
packing is memory, not compute bound") at that rate, one operator invocation each, one comparison per element.
It runs before the GEMM, so its time adds to the GEMM's.
"""

from __future__ import annotations

from ..actions import Actions
from .base import EngineDescription, EngineModel, LayerEstimate
from ..workload import FULL_PRECISION, LayerWork

FULL_PRECISION_BYTES = {name: operand.bits // 8 for name, operand in FULL_PRECISION.items()}


class XnorEngine(EngineModel):
    def __init__(self, name: str, binary_macs_per_s: float, max_activation_bits: int, kernel_overhead_s: float,
                 dram_bandwidth: float, energy=None, packing_bytes_per_s: float | None = None):
        """energy: the device's EnergyModel with binary_op_fj set to the array's energy per binary op;
        packing_bytes_per_s: the engine packs a full-precision input itself at this rate (None: inputs arrive
        packed)."""
        self.name = name
        self.binary_macs_per_s = binary_macs_per_s
        self.max_activation_bits = max_activation_bits
        self.kernel_overhead_s = kernel_overhead_s
        self.dram_bandwidth = dram_bandwidth
        self.energy = energy
        self.packing_bytes_per_s = packing_bytes_per_s

    def planes(self, layer: LayerWork) -> int:
        """Activation bit-planes the array needs, 0 if it cannot run the layer."""
        weight, activation = layer.weight_format or layer.activation_format, layer.activation_format
        if not layer.is_gemm or weight.family != "binary":
            return 0
        if activation.family == "binary":
            return 1
        if activation.family == "int" and activation.bits <= self.max_activation_bits:
            return activation.bits
        return 0

    def can_run(self, layer: LayerWork) -> bool:
        return self.planes(layer) > 0

    def estimate_layer(self, layer: LayerWork) -> LayerEstimate:
        planes = self.planes(layer)
        if planes == 0:
            raise ValueError(f"{self.name} cannot run {layer.name}: it needs binary weights and binary or "
                             f"integer activations of at most {self.max_activation_bits} bits")
        compute_s = layer.macs * planes / self.binary_macs_per_s
        memory_s = layer.traffic_bytes / self.dram_bandwidth
        overhead_s = layer.kernels * self.kernel_overhead_s
        times = {"compute": compute_s, "memory": memory_s, "overhead": overhead_s}
        bottleneck = max(times, key=times.get)
        activation = layer.activation_format.name
        how = "1 pass" if planes == 1 else f"{planes} bit-planes"
        weight_planes = layer.weight_format.planes if layer.weight_format else 1
        if weight_planes > 1:  # LayerWork.macs already counts every weight plane's pass
            how = f"{weight_planes} weight planes x {how}"
        packing_bytes = self.packing_bytes(layer, planes)
        packing_s = packing_bytes / self.packing_bytes_per_s if packing_bytes else 0.0
        if packing_bytes:
            how += f"; input packed first ({planes} pass{'es' if planes > 1 else ''}, {packing_s * 1e6:.1f} us)"
        packing_overhead_s = planes * self.kernel_overhead_s if packing_bytes else 0.0
        return LayerEstimate(
            engine=self.name, compute_precision="b1", mapping=f"binary x {activation} -> XNOR array, {how}",
            compute_s=compute_s, memory_s=memory_s + packing_s, overhead_s=overhead_s + packing_overhead_s,
            latency_s=times[bottleneck] + packing_s + packing_overhead_s, bottleneck=bottleneck,
            actions=self.actions(layer, planes, packing_bytes),
        )

    def packing_bytes(self, layer: LayerWork, planes: int) -> float:
        """Bytes the input packing moves: per plane the full-precision input read and one bit per element
        written (0 where the engine takes packed inputs or the input size is unknown)."""
        if not (self.packing_bytes_per_s and layer.input_elements):
            return 0.0
        return planes * layer.input_elements * (FULL_PRECISION_BYTES.get(layer.vector_dtype, 4) + 1 / 8)

    def outputs(self, layer: LayerWork) -> int:
        batch, m, n, _ = layer.gemm_dims if layer.gemm_dims else (1, 1, 0, 0)
        return batch * m * n

    def actions(self, layer: LayerWork, planes: int, packing_bytes: float = 0.0) -> Actions:
        """Two binary ops (XNOR, one popcount-adder step) per MAC and plane; per output and plane one int8
        MAC (the shift-and-add of the planes' partial popcounts, then the scale); one vector op per packed
        element and plane; the traffic through the on-chip buffer and DRAM, the packing's included."""
        packed = planes * layer.input_elements if packing_bytes else 0
        traffic = layer.traffic_bytes + packing_bytes
        return Actions(self.outputs(layer) * planes, "int8", packed, layer.vector_dtype, layer.macs * planes * 2,
                       traffic, traffic)

    def describe(self) -> EngineDescription:
        return EngineDescription("xnor", {"b1": 2 * self.binary_macs_per_s}, "XNOR array")
