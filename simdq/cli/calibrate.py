"""`simdq calibrate MODEL.yaml -o ART_DIR`: quantize and calibrate a UNet, write the artifact, print quality."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from ..errors import SimdqError
from ..report.tables import text_table
from .arguments import DDIM_TRAIN_TIMESTEPS, batch, ddim_steps, samples, seed


def add_parser(commands) -> None:
    calibrate = commands.add_parser("calibrate", help="quantize and calibrate a UNet, write the artifact")
    calibrate.add_argument("model", metavar="MODEL.yaml", help="model and quantization scheme (see README)")
    calibrate.add_argument("-o", "--output", required=True, metavar="ART_DIR", help="artifact directory to write")
    calibrate.add_argument("--samples", type=samples, default=8, help="DDIM trajectories (default 8)")
    calibrate.add_argument("--steps", type=ddim_steps, default=10, help="DDIM steps per trajectory (default 10)")
    calibrate.add_argument("--calibrator", choices=("minmax", "percentile", "mse"), default="minmax")
    calibrate.add_argument("--timestep-groups", default="per_step", metavar="per_step|merged|N",
                           help="activation ranges per DDIM step, one merged range, or N timestep bins")
    calibrate.add_argument("--checkpoint", metavar="DIR", help="a local diffusers UNet (save_pretrained) to quantize")
    calibrate.add_argument("--calib-data", metavar="FILE", help="safetensors file with 'latents' to start from")
    calibrate.add_argument("--seed", type=seed, default=0)
    calibrate.add_argument("--batch", type=batch, default=8, help="trajectories per UNet call")
    calibrate.set_defaults(run=run_calibrate)


def _timestep_groups(text: str):
    if text in ("per_step", "merged"):
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= DDIM_TRAIN_TIMESTEPS:
        raise SimdqError(f"--timestep-groups {text!r}: expected per_step, merged or a number of bins from 1 to "
                         f"{DDIM_TRAIN_TIMESTEPS}")
    return value


def _latents(path: str):
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(path)
    except FileNotFoundError:
        raise SimdqError(f"--calib-data {path}: no such file") from None
    except (SafetensorError, OSError) as err:
        raise SimdqError(f"--calib-data {path}: not a safetensors file ({err})") from None
    where = f"--calib-data {path}"
    latents = tensors.get("latents")
    if latents is None or latents.dim() != 4:
        found = f"it holds {', '.join(sorted(tensors)[:4]) or 'no tensors'}" if latents is None else \
            f"its 'latents' has shape {list(latents.shape)}"
        raise SimdqError(f"{where}: needs a 4-D tensor named 'latents' (samples, channels, height, width); {found}")
    if not latents.is_floating_point():
        raise SimdqError(f"{where}: 'latents' is {latents.dtype}; expected floating-point latents")
    if len(latents) == 0:
        raise SimdqError(f"{where}: 'latents' holds no samples (shape {list(latents.shape)})")
    bad = ~torch.isfinite(latents)
    if bad.any():
        sample = int(bad.reshape(len(latents), -1).any(dim=1).nonzero()[0])
        raise SimdqError(f"{where}: 'latents' holds {int(bad.sum())} NaN or infinite values (the first in sample "
                         f"{sample})")
    return latents.float()


def run_calibrate(args) -> int:
    from ..calibrate.run import CalibrationSettings, calibrate_artifact
    from ..config import load_config

    config = load_config(args.model)
    settings = CalibrationSettings(samples=args.samples, steps=args.steps, calibrator=args.calibrator,
                                   timestep_groups=_timestep_groups(args.timestep_groups), seed=args.seed,
                                   batch=args.batch)
    latents = _latents(args.calib_data) if args.calib_data else None
    report = calibrate_artifact(config, args.output, settings, checkpoint=args.checkpoint, latents=latents,
                                calib_data=args.calib_data)
    print(summary(report))
    print(f"wrote {Path(args.output) / 'model.safetensors'} and quant.yaml; cost it with simdq estimate {args.output} --hw DEVICE")
    return 0


def summary(report: dict) -> str:
    outputs = report["output"]
    rows = [[t, f"{v['mse']:.3g}", f"{v['cosine']:.5f}"] for t, v in sorted(outputs.items(), reverse=True)]
    lines = [text_table(("timestep", "output MSE", "cosine vs fp"), rows)]
    weights = [v for v in report["weight_sqnr_db"].values() if math.isfinite(v)]
    if weights:
        lines.append(f"weight SQNR: median {statistics.median(weights):.1f} dB, min {min(weights):.1f} dB "
                     f"over {len(weights)} layers")
    inputs = sorted(report["input_sqnr_db"].items(), key=lambda item: item[1])[:5]
    if inputs:
        lines.append("lowest input SQNR: " + ", ".join(f"{name} {value:.1f} dB" for name, value in inputs))
    return "\n".join(lines)
