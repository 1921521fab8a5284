"""Format resolution: the attention format is decided once, and both the estimate and the quantized
modules follow it."""

import pytest

from simdq.config import parse_config
from simdq.model.layer import Layer
from simdq.scheme import attention_format, resolve

ROWS = [Layer("conv_in", "conv_in", "Conv2d", "conv", macs=10, weight_params=27, in_channels=3, out_channels=1),
        Layer("mid.attn.qk", "mid.attn", "Attention", "attention_matmul", macs=10),
        Layer("mid.attn.av", "mid.attn", "Attention", "attention_matmul", macs=10),
        Layer("mid.norm", "mid.norm", "GroupNorm", "norm")]


def quant_of(section, dtype="fp16"):
    return parse_config({"model": {"preset": "sd15", "dtype": dtype}, "quant": section}, "t").quant


@pytest.mark.parametrize("section, expected", [
    ({"activations": "int4", "attention": {"quantize": True, "activations": "e4m3fn"}}, "e4m3fn"),
    ({"activations": "int4", "attention": {"quantize": True}}, "int4"),
    ({"attention": {"quantize": True}}, "fp16"),  # neither given: the model's own dtype
    ({"activations": "int4", "attention": {"quantize": False, "activations": "e4m3fn"}}, "fp16"),
])
def test_attention_format_is_the_attention_section_then_the_activations_then_the_dtype(section, expected):
    quant = quant_of(section)
    assert attention_format(quant, "fp16").name == expected
    schemes = resolve(ROWS, quant, "fp16")
    assert [s.activation.name for s in schemes[1:3]] == [expected, expected]
    assert schemes[0].activation.name == (quant.activations or "fp16")
    assert schemes[3].activation.name == "fp16"


def test_quantized_attention_modules_take_the_attention_format_not_the_activations():
    torch = pytest.importorskip("torch")
    from diffusers import UNet2DModel
    from unet_fixtures import TINY_UNET

    from simdq.calibrate.attention import AttentionQuantizers
    from simdq.calibrate.modules import quantize_model

    torch.manual_seed(0)
    model = UNet2DModel(**TINY_UNET).eval()
    quant = quant_of({"weights": "int8", "activations": "int4", "attention": {"quantize": True, "activations": "int8"}},
                     "fp32")
    quantize_model(model, quant)
    attention = [m for m in model.modules() if isinstance(m, AttentionQuantizers)]
    assert attention and {q.fmt.name for m in attention for q in (m.q, m.k, m.p, m.v)} == {"int8"}
    inputs = {m.input_quantizer.fmt.name for m in model.modules() if getattr(m, "input_quantizer", None) is not None}
    assert inputs == {"int4"}
