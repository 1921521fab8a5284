"""Dynamic energy per layer: operations at pJ per MAC of the compute precision plus data movement.

energy = MACs x e_MAC(precision) + non-GEMM ops x e_op(dtype) + DRAM bytes x e_DRAM + on-chip bytes x e_SRAM
         + XNOR-array ops x e_binary (the XNOR engine's own figure, from its design's paper)

Engines count (hw_models.actions.Actions); EnergyModel.price is the one place that prices the counts.

Tables (hw_models/energy/*.yaml) give per-operation and per-byte energies at one process node. Entries a
table lacks are derived, each by one rule:
- a multiplier costs in proportion to the square of its significand bits (array multiplier): int4 = int8
  x 1/4, fp8 (e4m3, 4 bits) = fp16 x (4/11)^2, bf16 = fp16 x (8/11)^2, tf32 = fp16 (11 bits);
- an adder costs in proportion to its width: int32 add = int8 add x 4, fp16 add = fp32 add / 2;
- floating-point MACs accumulate in fp32, integer MACs in int32 (tensor-core and NPU practice);
- a binary MAC (XNOR and one bit of a popcount adder) costs int8 add / 8.
Node scaling: logic and SRAM energies scale from node a to node b by r^(log(a/b) / log(45/7)), r the
geometric mean of the 7 nm / 45 nm ratios of the entries both tables share (fp32 and int8 add and
multiply: r = 0.33), i.e. log-linear in the node size through the two tables;
DRAM energy is an interface cost and does not scale. On-chip traffic is what each engine counts (a GPU's
output tiling, a systolic array's operand reuse). No static power: this is the energy the work itself costs
("dynamic only, from a process-node table"), far under what a power meter reads on a GPU.

A GPU measured by `simdq hw calibrate` instead has a MeasuredEnergy: static power x the layer's time, plus a busy
power over the part of it its kernels run (the time less a launch gap per kernel), plus pJ per MAC of each
compute precision (and an extra per convolution MAC), per vector op, per DRAM byte and per byte that stays in
L2, all fitted to the GPU's own energy counter (NVML) over its microbenchmarks (hw_models.fit.fit_energy).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import exp, log
from pathlib import Path

from diagnostics import read_yaml, unknown

from .actions import Actions

TABLE_DIR = Path(__file__).with_name("energy")
SIGNIFICAND_BITS = {"fp32": 24, "tf32": 11, "fp16": 11, "bf16": 8, "fp8": 4}
INTEGER_BITS = {"int16": 16, "int8": 8, "int4": 4}


@dataclass(frozen=True)
class EnergyTable:
    name: str
    source: str
    node_nm: float
    operations_pj: dict
    memory_pj_per_byte: dict

    def _op(self, name: str) -> float:
        ops = self.operations_pj
        if name in ops:
            return ops[name]
        if name == "int32_add":
            return 4 * ops["int8_add"]
        if name == "fp16_add":
            return ops["fp32_add"] / 2
        if name == "fp16_mult" and "bf16_mult" in ops:
            return ops["bf16_mult"] * (11 / 8) ** 2
        if name == "fp16_mult":
            return ops["fp32_mult"] * (11 / 24) ** 2
        raise KeyError(name)

    def mac_pj(self, precision: str) -> float:
        """Energy of one multiply-accumulate at a compute precision (rules in the module docstring)."""
        if precision == "b1":
            return self._op("int8_add") / 8
        if precision in INTEGER_BITS:
            return self._op("int8_mult") * (INTEGER_BITS[precision] / 8) ** 2 + self._op("int32_add")
        if precision == "fp32":
            return self._op("fp32_mult") + self._op("fp32_add")
        multiply = self._op("fp16_mult") * (SIGNIFICAND_BITS[precision] / 11) ** 2
        if precision == "bf16" and "bf16_mult" in self.operations_pj:
            multiply = self.operations_pj["bf16_mult"]
        return multiply + self._op("fp32_add")

    def vector_op_pj(self, dtype: str) -> float:
        return self._op("fp16_add") if dtype in ("fp16", "bf16") else self._op("fp32_add")


@lru_cache(maxsize=None)
def load_table(name: str) -> EnergyTable:
    path = TABLE_DIR / f"{name}.yaml"
    if not path.exists():
        raise ValueError(unknown("energy table", name, sorted(p.stem for p in TABLE_DIR.glob("*.yaml"))))
    data = read_yaml(path, "energy table")
    return EnergyTable(data["name"], data["source"], data["node_nm"], data["operations_pj"],
                       data["memory_pj_per_byte"])


def node_ratio() -> float:
    """Geometric mean of the 7 nm / 45 nm ratios of the entries both tables give."""
    old, new = load_table("horowitz-45nm").operations_pj, load_table("jouppi-7nm").operations_pj
    shared = sorted(set(old) & set(new))
    return exp(sum(log(new[k] / old[k]) for k in shared) / len(shared))


def node_scale(from_nm: float, to_nm: float) -> float:
    """Factor on logic and SRAM energy from one node to another, log-linear in the node size."""
    return node_ratio() ** (log(from_nm / to_nm) / log(45 / 7))


@dataclass(frozen=True)
class EnergyModel:
    table: EnergyTable
    node_nm: float
    dram_pj_per_byte: float
    sram_pj_per_byte: float  # unscaled (at the table's node)
    op_scale: float = 1.0  # an engine's own efficiency against the table (e.g. a DLA against its GPU)
    binary_op_fj: float = 0.0  # an XNOR array's energy per binary op (its design's figure, not the table's)

    @property
    def scale(self) -> float:
        return node_scale(self.table.node_nm, self.node_nm) * self.op_scale

    kind = "dynamic only, from a process-node table"

    def price(self, actions: Actions, latency_s: float = 0.0) -> float:
        """Joules of the counted actions: logic and SRAM at the table's energies scaled to the node, the
        binary ops at binary_op_fj and DRAM at its interface cost (neither scaled); no static power, so the
        latency does not enter."""
        scaled_pj = actions.macs * self.table.mac_pj(actions.precision or "fp32")
        scaled_pj += actions.vector_ops * self.table.vector_op_pj(actions.vector_dtype)
        scaled_pj += actions.onchip_bytes * self.sram_pj_per_byte
        binary_pj = actions.binary_ops * self.binary_op_fj * 1e-3
        return (scaled_pj * self.scale + binary_pj + actions.dram_bytes * self.dram_pj_per_byte) * 1e-12


def busy_seconds(seconds: float, kernels: int, gap_s: float) -> float:
    """The part of a time its kernels run: the time less one launch gap per kernel (never below zero)."""
    return max(0.0, seconds - kernels * gap_s)


@dataclass(frozen=True)
class MeasuredEnergy:
    """Energy fitted to a GPU's own energy counter: static_w x time + busy_w x the time kernels run + per-action
    energies (no node scaling)."""

    static_w: float
    mac_pj: dict  # compute precision -> pJ per MAC
    vector_op_pj: float
    dram_pj_per_byte: float
    source: str
    conv_mac_pj: float = 0.0  # added per MAC of a convolution (implicit GEMM stages its operands per window)
    busy_w: float = 0.0  # drawn on top of static_w while kernels run (outside the launch gaps)
    launch_gap_s: float = 0.0  # idle time before each kernel
    l2_pj_per_byte: float = None  # activation traffic that fits in an L2 of l2_bytes; None: all priced as DRAM
    l2_bytes: float = 0.0
    strided_pj_per_byte: float = 0.0  # added per byte moved off the contiguous layout (whole sectors move)
    kind = "measured: static power x time + fitted energy per operation"

    def traffic_pj(self, actions: Actions) -> float:
        """Weights come from DRAM (a forward's weights outgrow L2, so each is read from DRAM once per forward);
        a layer's activations, and what cuDNN's layout transforms read and write, stay in L2 where they fit
        there together (the producer just wrote them), else they stream through DRAM. What a layer writes
        into L2 is written back to DRAM as well: the weights streaming through L2 evict it before the forward
        ends (a microbenchmark rewrites the same buffer, whose lines stay in L2, so the fit's L2 energy
        leaves the write-back out)."""
        activations = actions.dram_bytes - actions.weight_bytes + actions.transform_bytes
        if self.l2_pj_per_byte is None or activations > self.l2_bytes:
            return (actions.weight_bytes + activations) * self.dram_pj_per_byte
        return ((actions.weight_bytes + actions.write_bytes) * self.dram_pj_per_byte
                + activations * self.l2_pj_per_byte)

    def price(self, actions: Actions, latency_s: float = 0.0) -> float:
        """Joules: static_w over the layer's time, busy_w over the part of it its kernels run (the time less a
        launch gap per kernel), plus the fitted energy of its MACs, vector ops and traffic (more per byte off the
        contiguous layout)."""
        mac_pj = self.mac_pj.get(actions.precision or "fp32", max(self.mac_pj.values(), default=0.0))
        mac_pj += self.conv_mac_pj if actions.convolution else 0.0
        dynamic_pj = (actions.macs * mac_pj + actions.vector_ops * self.vector_op_pj + self.traffic_pj(actions)
                      + actions.strided_bytes * self.strided_pj_per_byte)
        busy_s = busy_seconds(latency_s, actions.kernels, self.launch_gap_s)
        return self.static_w * latency_s + self.busy_w * busy_s + dynamic_pj * 1e-12
