"""What an engine counts for one layer: the actions the energy model prices (count, then price).

Engines know how much work a layer makes them do; only hw_models.energy knows what each action costs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Actions:
    """macs: multiply-accumulates at compute precision `precision`; vector_ops: non-GEMM arithmetic in
    `vector_dtype`; binary_ops: operations of an XNOR array (XNOR, popcount-adder step), priced at the
    engine's own energy per op; onchip_bytes and dram_bytes: on-chip buffer and DRAM traffic (weight_bytes
    of it the weights'); convolution:
    the MACs are a convolution's, which a measured GPU energy model prices above a linear's."""

    macs: int = 0
    precision: Optional[str] = None
    vector_ops: int = 0
    vector_dtype: str = "fp32"
    binary_ops: int = 0
    onchip_bytes: float = 0.0
    dram_bytes: float = 0.0
    convolution: bool = False  # the MACs are a convolution's (implicit GEMM: its operands staged per window)
    weight_bytes: float = 0.0  # the part of dram_bytes that is the layer's weights
    kernels: int = 0  # kernels launched (a measured GPU model idles the SMs for a launch gap before each)
    strided_bytes: float = 0.0  # the part of dram_bytes read or written off the contiguous layout
    transform_bytes: float = 0.0  # what cuDNN's layout transforms read and write (2x the channels-first bytes)
    write_bytes: float = 0.0  # the part of dram_bytes the layer writes (its activations')
