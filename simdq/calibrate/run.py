"""One calibration from a model.yaml to an artifact directory: what `simdq calibrate` does, and what a sweep's
quality task runs on a worker."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import SimdqError


@dataclass(frozen=True)
class CalibrationSettings:
    """How the UNet is calibrated: DDIM trajectories, their steps, the range fitting and the seed (which also
    seeds a preset's random weights)."""

    samples: int = 8
    steps: int = 10
    calibrator: str = "minmax"
    timestep_groups: object = "per_step"  # per_step, merged, or a number of timestep bins
    seed: int = 0
    batch: int = 8

    def as_dict(self) -> dict:
        return asdict(self)


def _model_section(config, spec, checkpoint) -> dict:
    """The artifact's model section: rebuildable without the files the YAML pointed at."""
    if checkpoint is None and config.model.preset:
        return {"preset": config.model.preset, "dtype": config.model.dtype}
    return {"diffusers": {"class": spec.unet_class, "config": dict(spec.config)}, "dtype": config.model.dtype}


def calibrate_artifact(config, output, settings: CalibrationSettings, *, checkpoint=None, latents=None,
                       calib_data=None, progress: bool = True) -> dict:
    """Calibrate the UNet of `config` (a simdq.config.EstimateConfig), write the artifact to `output`, return
    calibrate_unet's report. `checkpoint`: a local diffusers UNet folder; `latents`: the trajectories' start
    (read from the file `calib_data`, recorded in the settings)."""
    import torch

    from ..config import unet_spec
    from ..model.unets import build_unet, load_checkpoint
    from ..artifact import ARTIFACT_FILES
    from ..output import check_output_directory
    from .memory import check_calibration_memory
    from .persist import save_artifact
    from .pipeline import calibrate_unet

    if config.model.layer is not None:
        raise SimdqError("model.layer describes one layer for simdq estimate; calibration runs a whole UNet "
                         "(give model.preset, model.diffusers or model.config_file)")
    check_output_directory(output, "-o", ARTIFACT_FILES)
    samples = len(latents) if latents is not None else settings.samples
    if checkpoint:
        unet, spec = load_checkpoint(checkpoint)
        check_calibration_memory(spec, samples, settings.steps, settings.batch)
    else:
        spec = unet_spec(config)
        check_calibration_memory(spec, samples, settings.steps, settings.batch)
        torch.manual_seed(settings.seed)  # presets have no weights of their own: seeded random ones
        unet = build_unet(spec, device="cpu")
    if latents is not None and tuple(latents.shape[1:]) != (unet.config.in_channels, *[unet.config.sample_size] * 2):
        raise SimdqError(f"--calib-data {calib_data}: latents of shape {list(latents.shape[1:])} do not fit "
                         f"the UNet ({unet.config.in_channels} channels, {unet.config.sample_size} pixels)")
    groups = None if settings.timestep_groups == "merged" else settings.timestep_groups
    quantized, report = calibrate_unet(
        unet, config.quant, config.model.dtype, samples=settings.samples, steps=settings.steps,
        calibrator=settings.calibrator, timestep_groups=groups, merge=False, seed=settings.seed,
        batch=settings.batch, latents=latents, progress=progress,
    )
    recorded = {"samples": samples, "steps": settings.steps,
                "calibrator": settings.calibrator, "timestep_groups": groups, "seed": settings.seed,
                "checkpoint": checkpoint, "calib_data": calib_data}
    quality = {
        "weight_sqnr_db": report["weight_sqnr_db"], "input_sqnr_db": report["input_sqnr_db"],
        "output": {int(t): v for t, v in report["output"].items()},
    }
    metadata = {"model": _model_section(config, spec, checkpoint),
                "quant": config.quant.model_dump(by_alias=True, exclude_none=True), "settings": recorded,
                "quality": quality}
    save_artifact(output, quantized, metadata)
    return report
