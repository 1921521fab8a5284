"""Fake-quantized modules: weights code for code with the emulator, scheme-driven swapping, calibration."""

import numpy as np
import pytest
import torch
from unet_fixtures import TINY_UNET

import emulator as em
from simdq.calibrate.calibrators import format_max
from simdq.errors import SimdqError
from simdq.config import parse_config
from simdq.calibrate.activations import ActivationQuantizer
from simdq.calibrate.modules import QuantConv2d, QuantLinear, calibrate_activations, quantize_model
from simdq.calibrate.weights import WeightQuantizer


@pytest.mark.parametrize("fmt", ["int8", "int4", "e4m3fn", "e2m1"])
def test_per_channel_weights_equal_the_emulator(fmt, rng):
    weight = torch.from_numpy((rng.standard_normal((16, 8, 3, 3)) * 0.1).astype(np.float32))
    fake = WeightQuantizer(fmt).fake_quantize(weight)
    rows = weight.reshape(16, -1).numpy()
    scale = np.abs(rows).max(axis=1).astype(np.float64) / format_max(em.get_format(fmt))
    expected = em.fake_quantize(rows, fmt, scale, axis=0).reshape(weight.shape)
    np.testing.assert_array_equal(fake.numpy().view(np.uint32), expected.view(np.uint32))


def test_per_group_weights_equal_the_emulator(rng):
    weight = torch.from_numpy(rng.standard_normal((4, 64)).astype(np.float32))
    fake = WeightQuantizer("int4", "per_group", group_size=16).fake_quantize(weight)
    groups = weight.numpy().reshape(4, 4, 16)
    scale = np.abs(groups).max(axis=2).astype(np.float64) / 7
    expected = em.fake_quantize(weight.numpy(), "int4", scale, axis=1, group_size=16)
    np.testing.assert_array_equal(fake.numpy(), expected)


def test_binary_weights_are_sign_times_channel_mean():
    weight = torch.tensor([[0.5, -1.5, 0.0, 1.0], [-2.0, -2.0, 2.0, 2.0]])
    fake = WeightQuantizer("binary").fake_quantize(weight)
    assert fake.tolist() == [[0.75, -0.75, 0.75, 0.75], [-2.0, -2.0, 2.0, 2.0]]


def test_two_basis_weights_are_the_emulators_residual_binarization(rng):
    weight = torch.from_numpy(rng.standard_normal((6, 4, 3, 3)).astype(np.float32))
    stored = WeightQuantizer("binary2").quantize(weight)
    expected = em.residual_binarize(weight.numpy(), "binary2")
    assert np.array_equal(stored.codes.numpy(), expected.codes.reshape(6, -1))
    assert np.array_equal(stored.scale.numpy(), expected.scales) and stored.scale.shape == (6, 2)
    fake = WeightQuantizer("binary2").fake_quantize(weight)
    assert np.array_equal(fake.numpy(), em.residual_dequantize(expected.codes, expected.scales, "binary2"))
    one_basis = WeightQuantizer("binary").fake_quantize(weight)
    assert ((fake - weight) ** 2).sum() < ((one_basis - weight) ** 2).sum()


def test_two_basis_weights_per_tensor_share_two_scales():
    weight = torch.tensor([[1.0, -3.0], [2.0, 2.0]])
    stored = WeightQuantizer("binary2", "per_tensor").quantize(weight)
    # alpha1 = mean(1, 3, 2, 2) = 2; residuals (-1, -1, 0, 0): alpha2 = 0.5
    assert stored.scale.tolist() == [[2.0, 0.5], [2.0, 0.5]]
    assert stored.dequantize().tolist() == [[1.5, -2.5], [2.5, 2.5]]


def test_quant_linear_and_conv_compute_with_quantized_operands(rng):
    linear = torch.nn.Linear(32, 8)
    quantizer = ActivationQuantizer("int8")
    module = QuantLinear(linear, WeightQuantizer("int8"), quantizer)
    x = torch.from_numpy(rng.standard_normal((5, 32)).astype(np.float32))
    quantizer.calibrating = True
    module(x)
    quantizer.finish_calibration()
    scale = x.abs().max().double() / 127
    xq = em.fake_quantize(x.numpy(), "int8", scale.item())
    expected = torch.nn.functional.linear(torch.from_numpy(xq), module.weight, linear.bias)
    assert torch.equal(module(x), expected)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    qconv = QuantConv2d(conv, WeightQuantizer("e4m3fn"), None)
    image = torch.randn(1, 3, 8, 8)
    assert torch.equal(qconv(image), torch.nn.functional.conv2d(image, qconv.weight, conv.bias, padding=1))
    assert not torch.equal(qconv.weight, conv.weight)


def _tiny_unet():
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(**TINY_UNET).eval()


def _batches(count=2):
    generator = torch.Generator().manual_seed(1)
    return [{"sample": torch.randn(2, 3, 16, 16, generator=generator), "timestep": torch.tensor([10, 500])}
            for _ in range(count)]


def test_quantize_model_follows_the_scheme_and_calibrates():
    model = _tiny_unet()
    reference = model(**_batches(1)[0]).sample
    quant = parse_config({"model": {"preset": "sd15"}, "quant": {"weights": "int8", "activations": "int8",
                                                                 "policy": "binarydm"}}, "t").quant
    names = {n for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}
    swapped = quantize_model(model, quant)
    assert set(swapped) == names - {"conv_in", "conv_out", "time_embedding.linear_1", "time_embedding.linear_2"}
    calibrate_activations(model, _batches())
    with torch.no_grad():
        out8 = model(**_batches(1)[0]).sample
    cosine = torch.nn.functional.cosine_similarity(out8.flatten(), reference.flatten(), dim=0)
    assert cosine > 0.99 and not torch.equal(out8, reference)


def test_fewer_bits_cost_more_error():
    errors = {}
    for bits in ("int8", "int4"):
        model = _tiny_unet()
        reference = model(**_batches(1)[0]).sample
        quant = parse_config({"model": {"preset": "sd15"}, "quant": {"weights": bits, "activations": bits}}, "t").quant
        quantize_model(model, quant)
        calibrate_activations(model, _batches())
        with torch.no_grad():
            errors[bits] = (model(**_batches(1)[0]).sample - reference).pow(2).mean().item()
    assert errors["int4"] > 4 * errors["int8"] > 0


def test_uncalibrated_activation_quantizer_refuses():
    with pytest.raises(SimdqError, match="before calibration"):
        ActivationQuantizer("int8")(torch.ones(3))
    with pytest.raises(SimdqError, match="no calibration inputs reached this layer"):
        ActivationQuantizer("int8").finish_calibration()


def _quantized_tiny(timestep_groups):
    model = _tiny_unet()
    quant = parse_config({"model": {"preset": "sd15"}, "quant": {"weights": "int8", "activations": "int8"}}, "t").quant
    quantize_model(model, quant, timestep_groups=timestep_groups)
    return model


def _step(t, batch=2, seed=3):
    generator = torch.Generator().manual_seed(seed)
    return {"sample": torch.randn(batch, 3, 16, 16, generator=generator), "timestep": torch.full((batch,), t)}


def test_timestep_aware_ranges_come_from_each_steps_own_inputs():
    from simdq.calibrate.modules import activation_quantizers

    model = _quantized_tiny("per_step")
    calibrate_activations(model, [_step(10, seed=1), _step(900, seed=2) | {"sample": 50 * torch.randn(2, 3, 16, 16)}])
    first = activation_quantizers(model)[0]
    assert set(first.scales) == {10, 900} and first.scales[900] > 10 * first.scales[10]
    alone = _quantized_tiny(None)  # the same layer calibrated on the t=10 inputs only
    calibrate_activations(alone, [_step(10, seed=1)])
    assert torch.equal(activation_quantizers(alone)[0].scales[None], first.scales[10])
    with torch.no_grad():  # classifier-free guidance: a doubled batch at one timestep
        model(**_step(10, batch=4))
    with pytest.raises(SimdqError, match=r"no calibrated range for timestep group 500; calibrated: \[10, 900\]"):
        model(**_step(500))
    with pytest.raises(SimdqError, match="one timestep per UNet call"):
        model(sample=torch.randn(2, 3, 16, 16), timestep=torch.tensor([10, 900]))


def test_timestep_bins_and_merged_ranges():
    from simdq.calibrate.modules import activation_quantizers

    model = _quantized_tiny(4)  # bins of 250 timesteps
    calibrate_activations(model, [_step(10), _step(240), _step(260)], merge=True)
    quantizer = activation_quantizers(model)[0]
    assert set(quantizer.scales) == {0, 1}
    assert torch.equal(quantizer.scales[0], quantizer.scales[1])  # merged: one range for every group


def test_attention_matmuls_quantized_through_the_processor():
    from simdq.calibrate.attention import AttentionQuantizers

    quantizers = AttentionQuantizers("int8", "minmax", None, None, 1000)
    for name in "qkpv":
        getattr(quantizers, name).calibrating = True  # pass-through: the written-out attention is SDPA's
    q, k, v = (torch.randn(2, 4, 16, 8) for _ in range(3))
    torch.testing.assert_close(quantizers.attention(q, k, v), torch.nn.functional.scaled_dot_product_attention(q, k, v))
    mask = torch.rand(2, 4, 16, 16) > 0.3
    mask[..., 0] = True
    torch.testing.assert_close(quantizers.attention(q, k, v, attn_mask=mask),
                               torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    errors = {}
    for bits in ("int8", "int4"):
        model = _tiny_unet()
        reference = model(**_batches(1)[0]).sample
        quant = parse_config({"model": {"preset": "sd15"}, "quant": {
            "attention": {"quantize": True, "activations": bits}}}, "t").quant
        swapped = quantize_model(model, quant)
        assert swapped == {}  # only the attention matmuls are quantized
        attention = [m for m in model.modules() if isinstance(m, AttentionQuantizers)]
        assert len(attention) == 4  # the tiny UNet's attention modules
        calibrate_activations(model, _batches())
        assert all(q.scales for m in attention for q in (m.q, m.k, m.p, m.v))
        with torch.no_grad():
            errors[bits] = (model(**_batches(1)[0]).sample - reference).pow(2).mean().item()
    assert errors["int4"] > 4 * errors["int8"] > 0


@pytest.mark.parametrize("fmt", ["mxfp4", "mxfp8_e4m3", "nvfp4", "mxint8"])
def test_block_scaled_weights_run_along_the_input_features(fmt, rng):
    weight = torch.from_numpy(rng.standard_normal((8, 4, 4, 4)).astype(np.float32))  # K = 64 = blocks of 32/16
    stored = WeightQuantizer(fmt).quantize(weight)
    rows = weight.reshape(8, 64).numpy()
    expected = em.block_decode(em.block_encode(rows, fmt, axis=1), fmt, axis=1).reshape(weight.shape)
    np.testing.assert_array_equal(stored.dequantize().numpy(), expected)
    block = em.get_format(fmt).block_size
    assert stored.scale.shape == (8, 64 // block) and stored.granularity == "per_block"
    # a partial last block is zero-padded: it quantizes as the padded tensor's first columns
    odd = torch.from_numpy(rng.standard_normal((2, 12)).astype(np.float32))
    padded = np.pad(odd.numpy(), ((0, 0), (0, block - 12)))
    expected = em.block_decode(em.block_encode(padded, fmt, axis=1), fmt, axis=1)[:, :12]
    np.testing.assert_array_equal(WeightQuantizer(fmt).quantize(odd).dequantize().numpy(), expected)


def test_block_scaled_activations_are_dynamic_along_the_reduction():
    model = _tiny_unet()
    reference = model(**_batches(1)[0]).sample
    quant = parse_config({"model": {"preset": "sd15"}, "quant": {"weights": "mxfp8_e4m3",
                                                                 "activations": "mxfp8_e4m3"}}, "t").quant
    quantize_model(model, quant)
    calibrate_activations(model, _batches())
    conv = model.down_blocks[0].resnets[0].conv1
    x = torch.randn(1, 32, 8, 8)
    expected = em.block_decode(em.block_encode(x.numpy(), "mxfp8_e4m3", axis=1), "mxfp8_e4m3", axis=1)
    np.testing.assert_array_equal(conv.input_quantizer(x).numpy(), expected)
    with torch.no_grad():
        out = model(**_batches(1)[0]).sample
    assert torch.nn.functional.cosine_similarity(out.flatten(), reference.flatten(), dim=0) > 0.99


def test_binary_activations_threshold_each_channel_at_its_mean():
    quantizer = ActivationQuantizer("binary", block_axis=1)
    quantizer.calibrating = True
    x = torch.stack([torch.full((2, 2), 1.0), torch.full((2, 2), -3.0)]).unsqueeze(0)  # channel means 1 and -3
    quantizer(x + torch.tensor([0.5, -0.5]).repeat(2).reshape(1, 1, 2, 2))
    quantizer(x - torch.tensor([0.5, -0.5]).repeat(2).reshape(1, 1, 2, 2))
    quantizer.finish_calibration()
    assert quantizer.thresholds.tolist() == [1.0, -3.0]
    scale = quantizer.scales[None].item()
    assert scale == pytest.approx(2.0)  # mean |x| of the calibration inputs
    probe = torch.tensor([[0.9, 1.1], [-3.1, -2.9]]).reshape(1, 2, 1, 2)
    assert (quantizer(probe) / scale).reshape(-1).tolist() == [-1.0, 1.0, -1.0, 1.0]


def test_binary_weights_and_activations_model_round_trip(tmp_path):
    from simdq.calibrate.persist import load_artifact, save_artifact

    model = _tiny_unet()
    quant = parse_config({"model": {"preset": "sd15"}, "quant": {"weights": "binary", "activations": "binary",
                                                                 "policy": "bidm-as-coded"}}, "t").quant
    quantize_model(model, quant)
    calibrate_activations(model, _batches())
    save_artifact(tmp_path / "bidm", model, {"model": {"diffusers": {"class": "UNet2DModel", "config": TINY_UNET}},
                                             "quant": quant.model_dump(by_alias=True, exclude_none=True)})
    loaded, _ = load_artifact(tmp_path / "bidm", _tiny_unet())
    with torch.no_grad():
        assert torch.equal(model(**_batches(1)[0]).sample, loaded(**_batches(1)[0]).sample)


def test_binary_weight_codes_are_the_emulators(rng):
    weight = torch.from_numpy(rng.standard_normal((6, 10)).astype(np.float32))
    weight[0, :3] = torch.tensor([0.0, -0.0, 1e-30])  # zeros take +1 (code 0), as the emulator's default
    stored = WeightQuantizer("binary").quantize(weight)
    np.testing.assert_array_equal(stored.codes.numpy(), em.encode(weight.numpy(), "binary").astype(np.int64))
