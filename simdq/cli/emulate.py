"""`simdq emulate ART_DIR`: a calibrated UNet run on the emulator, with the device's own arithmetic, through the
DDIM loop (or one forward), the final latents written as safetensors."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from ..errors import SimdqError
from .arguments import timestep
from .emulated import add_arithmetic_arguments, load_model, quiet_thread_pools, schedule


def add_parser(commands) -> None:
    emulate = commands.add_parser("emulate", help="run a calibrated UNet on the emulator, as a device computes it")
    add_arithmetic_arguments(emulate)
    emulate.add_argument("-o", "--output", default="latents.safetensors", metavar="FILE",
                         help="where to write the final latents (default latents.safetensors)")
    emulate.add_argument("--forward", action="store_true", help="one UNet call at --timestep instead of sampling")
    emulate.add_argument("--timestep", type=timestep, default=500, help="the timestep of --forward (default 500)")
    emulate.add_argument("--decode", action="store_true", help="decode the latents to images (simdq has no VAE)")
    emulate.add_argument("--quiet", action="store_true", help="no progress bar")
    emulate.set_defaults(run=run)


def describe(model) -> str:
    """One line per (accumulator, source) pair of the emulated layers."""
    counts = Counter((a.accumulator, a.source, a.requant) for a in model.plan.values())
    return "\n".join(f"  {n:4d} layers: {acc:<15} {source}{f', requantized ({requant})' if requant else ''}"
                     for (acc, source, requant), n in counts.most_common())


def run(args) -> int:
    if args.decode:
        raise SimdqError("--decode: simdq has no VAE, so it writes latents only; decode them with your pipeline's "
                         "VAE (diffusers: vae.decode(latents / vae.config.scaling_factor))")
    quiet_thread_pools()
    import torch

    from .. import __version__
    from ..emulate.progress import Progress
    from ..emulate.runtime import check_timesteps
    from ..model.sampling import conditioning, ddim_sample, latent_shape
    from ..output import check_output_file, replacing

    output = Path(args.output)
    check_output_file(output, "-o")  # before the model loads (seconds), not after
    model, _ = load_model(args)
    if args.forward:
        check_timesteps(model, [args.timestep])
    else:
        steps = schedule(model, args)
    print(f"emulating {args.artifact} ({len(model.plan)} quantized GEMMs):\n{describe(model)}", file=sys.stderr)
    info = {"simdq_version": __version__, "artifact": str(args.artifact), "hw": args.hw or "",
            "accumulator": args.accumulator or "", "requant": args.requant or "", "seed": str(args.seed)}
    with Progress(model, enabled=not args.quiet) as progress:
        if args.forward:
            generator = torch.Generator().manual_seed(args.seed)
            sample = torch.randn(1, *latent_shape(model.unet), generator=generator)
            inputs = {"sample": sample, "timestep": torch.tensor([args.timestep]),
                      **conditioning(model.unet, 1, generator)}
            progress.start(1)
            tensors = {"sample": sample, "prediction": model(**inputs)}
            info["timestep"] = str(args.timestep)
        else:
            progress.start(steps)
            latents = ddim_sample(model, model.unet, steps=steps, seed=args.seed,
                                  guidance_scale=args.guidance_scale, on_step=lambda *_: progress.step())
            tensors = {"latents": latents}
            info.update(steps=str(steps), guidance_scale=str(args.guidance_scale), scheduler="DDIM, eta 0, 1000 "
                        "training timesteps")
    from safetensors.torch import save_file

    with replacing(output, "-o") as temporary:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(temporary), metadata=info)
    print(f"wrote {output} ({', '.join(f'{k} {list(v.shape)}' for k, v in tensors.items())}); simdq has no VAE: "
          "decode the latents with your pipeline's", file=sys.stderr)
    return 0
