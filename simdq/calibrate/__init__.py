"""Post-training quantization of a UNet in torch: quantizers, calibrators, module swapping, the artifact."""
