"""Layer: one reported row of a traced model, the unit that formats are chosen for and costs counted on.

Plain data (no torch), so that the scheme, the cost model and the device models can take it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Layer:
    """One reported row. Element counts are activation elements, parameters excluded: gemm_read is what
    the GEMM reads as its (quantizable) input operand(s), read and write everything else.

    weight_params: elements of a conv/linear weight (what quantization stores at b_w bits);
    other_params: everything else the module owns (bias, norm affine, embedding tables), kept at full
    precision. out_channels/in_channels/kernel_size describe conv and linear weights.
    """

    name: str
    module: str
    module_type: str
    kind: str
    macs: int = 0
    vector_flops: int = 0
    gemm_read: int = 0
    read: int = 0
    write: int = 0
    kernels: int = 0
    weight_params: int = 0
    other_params: int = 0
    in_channels: int = 0
    out_channels: int = 0
    kernel_size: tuple = ()
    input_shape: tuple = ()
    output_shape: tuple = ()
    gemm_dims: tuple = ()  # (batch, M, N, K) of the layer's (first) GEMM
    parallel_rows: int = 0  # a norm's independent rows (GroupNorm: batch x groups)
    relayout_kernels: int = 0  # of `kernels`: copies of a non-contiguous input (GroupNorm's .contiguous())
    relayout: int = 0  # the elements those copies read and write
    strided_kernels: int = 0  # of `kernels`: other ops off the contiguous layout (a channels-last view + a tensor)
    strided: int = 0  # the elements those ops read and write
    extra: bool = False  # added by a layer policy, not part of the traced model
    fused_attention: str = ""  # "qk" or "av": this matmul runs inside one fused attention kernel with its twin
    operand_layouts: tuple = ()  # a GEMM's input and weight as traced (model.trace.layout_of): what a GPU transforms

    @property
    def params(self) -> int:
        return self.weight_params + self.other_params

    @property
    def is_weight_layer(self) -> bool:
        """A conv or linear with a weight to quantize (not a functional conv with a constant kernel)."""
        return self.kind in ("conv", "linear") and self.weight_params > 0
