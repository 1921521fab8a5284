"""simdq: what a quantized diffusion model costs on real hardware, and how it computes bit for bit."""

__version__ = "0.1.0"
