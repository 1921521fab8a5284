"""`simdq parity kernels`: every property holds on the installed references, and a broken kernel is caught with
a shrunk counterexample."""

import json

import numpy as np
import pytest

import emulator
from simdq.cli import main
from simdq.emulate.parity import kernels


def test_every_property_holds_and_names_its_reference(capsys):
    assert main(["parity", "kernels", "--examples", "15", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    names = [p["name"] for p in report["properties"]]
    assert all(p["holds"] and p["checks"] > 0 for p in report["properties"])
    assert any("onnxruntime: QLinearMatMul" in n for n in names)  # the requantizing kernels are there
    assert any("ops.quantized.linear (qnnpack)" in n for n in names)
    assert any("LceBconv2d" in n for n in names)
    recorded = next(p for p in report["properties"] if "recorded on an" in p["name"])
    assert recorded["checks"] == 1752  # every GEMM of tests/data/tensor_cores, not a sample


def test_a_broken_accumulator_gives_a_shrunk_counterexample(monkeypatch):
    """Saturation forgotten (int16_saturate wrapping instead): the search finds it and shrinks it."""
    real = emulator.matmul

    def wrapping_instead(a, b, *, accumulator="exact", **options):
        acc = emulator.get_accumulator(accumulator)
        if acc.kind == "int" and acc.overflow == "saturate":
            accumulator = f"int{acc.bits}_wrap"
        return real(a, b, accumulator=accumulator, **options)

    monkeypatch.setattr(kernels.em, "matmul", wrapping_instead)
    result = kernels.run_property(kernels.narrow_integer_accumulators(), examples=200, seed=0)
    assert not result.holds and result.failures >= 1
    assert "_saturate" in result.counterexample and "plain reference" in result.counterexample
    shown = result.counterexample.split("a=")[1]
    a = np.array(json.loads(shown.split(" b=")[0]))
    assert np.count_nonzero(a) <= 4  # shrunk: a few products suffice to pass a 12- or 16-bit limit


def test_a_broken_convolution_is_caught(monkeypatch):
    real = emulator.conv2d

    def off_by_one(x, w, **options):
        out = real(x, w, **options)
        if options.get("padding_value") == -1:
            out = out + 1
        return out

    monkeypatch.setattr(kernels.em, "conv2d", off_by_one)
    result = kernels.run_property(kernels.binary_convolutions(), examples=100, seed=1)
    assert not result.holds and "padding_value=-1" in result.counterexample


def test_only_and_bad_vectors_are_one_line_errors(capsys, tmp_path):
    assert main(["parity", "kernels", "--only", "nothing*"]) == 2
    assert "matches no property" in capsys.readouterr().err
    assert main(["parity", "kernels", "--vectors", str(tmp_path)]) == 2
    assert "no tensor_cores.json" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_text_formats_list_every_property(capsys, fmt):
    assert main(["parity", "kernels", "--examples", "3", "--only", "matmul*", "--format", fmt]) == 0
    out = capsys.readouterr().out
    assert "properties hold" in out and "matmul, exact accumulator" in out


def test_a_residual_binarizer_that_rounds_its_mean_differently_is_caught(monkeypatch):
    import emulator.residual as residual

    def numpy_mean(w, fmt="binary2", *, axis=0):
        out = real(w, fmt, axis=axis)
        rows = np.moveaxis(np.asarray(w, np.float64), axis, 0).reshape(out.scales.shape[0], -1)
        scales = out.scales.copy()
        scales[:, 0] = np.abs(rows).mean(axis=1) * (1 + 2**-52)  # a last-bit slip in the first plane's scale
        return residual.ResidualBinary(out.codes, scales)

    real = residual.residual_binarize
    monkeypatch.setattr(kernels.em, "residual_binarize", numpy_mean)
    result = kernels.run_property(kernels.residual_binarization(), examples=100, seed=1)
    assert not result.holds and "codes or scales differ from the plain twin" in result.counterexample
    assert "w=[[" in result.counterexample  # the shrunk case, shown
