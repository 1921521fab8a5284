"""Dynamic energy per layer: operations at pJ per MAC of the compute precision plus data movement.

energy = MACs x e_MAC(precision) + non-GEMM ops x e_op(dtype) + DRAM bytes x e_DRAM + on-chip bytes x e_SRAM

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
DRAM energy is an interface cost and does not scale. A GEMM's on-chip traffic is that of an output tiling
(tile_m x tile_n): A is read once per column of tiles, B once per row of tiles, C written once. No static
power: this is the energy the work itself costs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import ceil, exp, log
from pathlib import Path

import yaml

from .workload import LayerWork

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
        known = ", ".join(sorted(p.stem for p in TABLE_DIR.glob("*.yaml")))
        raise ValueError(f"unknown energy table {name!r}; allowed: {known}")
    data = yaml.safe_load(path.read_text())
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

    @property
    def scale(self) -> float:
        return node_scale(self.table.node_nm, self.node_nm) * self.op_scale

    def onchip_bytes(self, layer: LayerWork, tile=(128, 128)) -> float:
        if not (layer.is_gemm and layer.gemm_dims):
            return layer.traffic_bytes
        batch, m, n, k = layer.gemm_dims
        a_bytes = (layer.activation_format.bits / 8) * batch * m * k
        b_format = layer.weight_format or layer.activation_format
        b_bytes = (b_format.bits / 8) * batch * k * n
        c_bytes = layer.write_bytes
        return a_bytes * ceil(n / tile[1]) + b_bytes * ceil(m / tile[0]) + c_bytes

    def layer_energy_j(self, layer: LayerWork, precision, tile=(128, 128), extra_ops: int = 0) -> float:
        compute_pj = layer.macs * self.table.mac_pj(precision or "fp32") if layer.is_gemm else 0.0
        compute_pj += (layer.vector_flops + extra_ops) * self.table.vector_op_pj(layer.vector_dtype)
        onchip_pj = self.onchip_bytes(layer, tile) * self.sram_pj_per_byte
        dram_pj = layer.traffic_bytes * self.dram_pj_per_byte
        return ((compute_pj + onchip_pj) * self.scale + dram_pj) * 1e-12

