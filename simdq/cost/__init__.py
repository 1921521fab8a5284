"""What a quantized model costs: bit-aware counts per layer (accounting) and the estimate on a device."""
