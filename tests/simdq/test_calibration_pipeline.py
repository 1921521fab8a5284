"""Calibration on the UNet's own DDIM trajectory, and the quality report."""

import math

import pytest
import torch
from unet_fixtures import TINY_UNET

from simdq.calibrate.pipeline import calibrate_unet, ddim_trajectory, sqnr_db
from simdq.config import parse_config


def _unet():
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(**TINY_UNET).eval()


def _quant(bits):
    return parse_config({"model": {"preset": "sd15"}, "quant": {"weights": bits, "activations": bits}}, "t").quant


def test_sqnr_by_hand():
    x = torch.tensor([3.0, 4.0])
    assert sqnr_db(x, x) == math.inf
    assert sqnr_db(x, torch.tensor([3.0, 3.0])) == pytest.approx(10 * math.log10(25 / 1))


def test_trajectory_follows_ddim_from_seeded_noise():
    unet = _unet()
    first = ddim_trajectory(unet, samples=3, steps=4, seed=5, batch=2, progress=False)
    again = ddim_trajectory(unet, samples=3, steps=4, seed=5, batch=2, progress=False)
    assert len(first) == 2 * 4  # two batches (2 + 1 samples) x 4 steps
    assert [int(s["timestep"][0]) for s in first[:4]] == [750, 500, 250, 0]
    assert all(torch.equal(a["sample"], b["sample"]) for a, b in zip(first, again))
    assert not torch.equal(first[0]["sample"], first[1]["sample"])  # the latents move along the trajectory
    latents = torch.zeros(2, 3, 16, 16)
    given = ddim_trajectory(unet, samples=2, steps=2, batch=2, latents=latents, progress=False)
    assert torch.equal(given[0]["sample"], latents)


def test_calibrated_unet_reports_quality_that_orders_by_bits():
    reports = {}
    for bits in ("int8", "int4"):
        _, reports[bits] = calibrate_unet(_unet(), _quant(bits), samples=2, steps=3, batch=2, progress=False)
    eight, four = reports["int8"], reports["int4"]
    assert set(eight["output"]) == {666, 333, 0}  # one entry per DDIM timestep
    for name, value in eight["weight_sqnr_db"].items():
        assert value > four["weight_sqnr_db"][name] + 15  # ~6 dB per bit, 4 bits apart
    assert all(v["cosine"] > 0.99 for v in eight["output"].values())
    assert sum(v["mse"] for v in four["output"].values()) > sum(v["mse"] for v in eight["output"].values())
    assert set(eight["input_sqnr_db"]) == set(eight["layers"])
