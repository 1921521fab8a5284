"""What `simdq emulate` and `simdq parity model` share: the artifact, the device whose arithmetic the layers take,
and the threads they run on."""

from __future__ import annotations

from ..errors import SimdqError
from .arguments import ddim_steps, finite, seed, threads


def quiet_thread_pools() -> None:
    """Idle OpenMP threads sleep instead of spinning. An emulated UNet alternates torch's OpenMP ops with
    OpenBLAS and Numba calls; spinning torch threads took the two cores from BLAS and made an LDM-4 W4A4 forward
    1.8x slower (reports/benchmarks.md). libgomp reads this when torch loads, so it is set before torch is."""
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def add_arithmetic_arguments(parser) -> None:
    parser.add_argument("artifact", metavar="ART_DIR", help="an artifact written by simdq calibrate")
    parser.add_argument("--hw", metavar="DEVICE", help="take each layer's accumulator from this device (simdq hw "
                                                       "list; default: exact accumulation everywhere)")
    parser.add_argument("--accumulator", metavar="NAME", help="one accumulator for every layer (exact, int32, "
                                                              "int32_saturate, fp32, sm90_fp8, ...), over --hw")
    parser.add_argument("--steps", type=ddim_steps, help="DDIM steps (default: the artifact's calibration steps)")
    parser.add_argument("--seed", type=seed, default=0, help="seed of the starting noise and conditioning")
    parser.add_argument("--guidance-scale", type=finite, default=7.5,
                        help="classifier-free guidance for cross-attention UNets (default 7.5; 1: off)")
    parser.add_argument("--requant", metavar="CONVENTION",
                        help="integer layers write int8 codes at their calibrated output range, requantized by this "
                             "convention (onnxruntime, qnnpack, onnx_reference, tflite_reference, gemmlowp, "
                             "tflite_single_rounding), as an integer pipeline does; default: the float epilogue")
    parser.add_argument("--threads", type=threads, help="CPU threads for torch and the emulator's kernels")


def load_model(args):
    """The EmulatedUNet of args.artifact with the arithmetic args ask for, and the device (or None)."""
    quiet_thread_pools()
    from emulator import get_accumulator
    from hw_models import load_device

    from ..artifact import read_metadata
    from ..emulate.runtime import artifact_config, device_layers, load_emulated

    if args.threads:
        import numba
        import torch

        torch.set_num_threads(args.threads)
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    if args.accumulator:
        try:
            get_accumulator(args.accumulator)
        except ValueError as err:
            raise SimdqError(f"--accumulator: {err}") from None
    if args.requant:
        from emulator import REQUANT_CONVENTIONS

        if args.requant not in REQUANT_CONVENTIONS:
            from diagnostics import did_you_mean

            raise SimdqError(f"--requant {args.requant}: unknown convention{did_you_mean(args.requant, REQUANT_CONVENTIONS)}"
                             f"; allowed: {', '.join(REQUANT_CONVENTIONS)}")
    device, mapping = None, None
    if args.hw:
        device = load_device(args.hw)
        mapping = device_layers(artifact_config(args.artifact, read_metadata(args.artifact)), device)
    return load_emulated(args.artifact, device=device, device_layers=mapping, accumulator=args.accumulator,
                         requant=args.requant), device


def schedule(model, args) -> int:
    """The number of DDIM steps, checked against the artifact's calibrated timesteps."""
    from ..emulate.runtime import check_timesteps
    from ..model.sampling import ddim_timesteps

    steps = args.steps or model.metadata.get("settings", {}).get("steps") or 10
    check_timesteps(model, ddim_timesteps(steps))
    return steps
