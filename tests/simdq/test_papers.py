"""simdq tables: every published number recounted, the data files' schema, and the outputs a user writes."""

import csv
import io

import pytest
import torch
import yaml
from unet_fixtures import traced

from simdq.cli import main
from simdq.cli.tables import OUTPUTS, CaseEstimates
from simdq.errors import SimdqError
from simdq.papers import load_paper, paper_names, recount_papers
from simdq.papers.catalog import DATA, Paper
from simdq.papers.recount import EXPLAINED, MOVED, NOT_RECOUNTED, REPRODUCED, Recount
from diagnostics import validate


@pytest.fixture(scope="module")
def estimates():
    return CaseEstimates()  # one trace per UNet for the whole module


@pytest.fixture(scope="module")
def results(estimates):
    return recount_papers(paper_names(), estimates)


def test_every_paper_has_its_data_file():
    assert paper_names() == ["bidm", "binarydm", "efficientdm", "lowbit-fp"]


def test_no_recounted_number_moves_beyond_its_tolerance(results):
    moved = [f"{r.paper}/{r.id}: published {r.published}, recount {r.recount}" for r in results if r.status == MOVED]
    assert not moved, moved
    # the statuses are those the tolerances and gaps decide, worked out again here
    for r in results:
        row = next(x for x in load_paper(r.paper).rows if x.id == r.id)
        if r.status == REPRODUCED:
            assert row.gap is None and abs(r.recount - r.published) <= row.tolerance
        elif r.status == EXPLAINED:
            assert row.gap.why and abs(r.recount - r.published - row.gap.value) <= row.tolerance
        elif r.status == NOT_RECOUNTED:
            assert row.needs or row.of  # a ratio row is not recounted when one of its rows is not


def test_the_headline_rows_reproduce(results):
    by_id = {(r.paper, r.id): r for r in results}
    for key in [("binarydm", "t5-fp-size"), ("binarydm", "t5-fp-ops"), ("binarydm", "t5-w4a4-size"),
                ("binarydm", "t5-w2a4-size"), ("binarydm", "e-w1-size"), ("binarydm", "e-w1.1-size"),
                ("bidm", "t4-w1a1-size"), ("bidm", "t4-w1a1-bops")]:
        assert by_id[key].status == REPRODUCED, key


def test_size_row_is_counted_from_the_model_by_hand(results):
    """Table 5's W2A4 size: every weight of the quantized convs and linears at 2 bits, the rest at 32."""
    _, model, _, _ = traced("ldm4-lsun-bedrooms")
    full_precision = ("time_embedding.linear_1", "time_embedding.linear_2", "conv_in", "conv_out")
    bits = 32 * sum(p.numel() for p in model.parameters())
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)) and name not in full_precision:
            bits -= 30 * module.weight.numel()
    row = next(r for r in results if r.id == "t5-w2a4-size")
    assert row.recount == pytest.approx(bits / 8 / 2**20, rel=1e-12)


def test_fp16_scale_reading_adds_one_half_word_per_output_channel(results):
    _, model, _, _ = traced("ldm4-lsun-bedrooms")
    full_precision = ("time_embedding.linear_1", "time_embedding.linear_2", "conv_in", "conv_out")
    channels = sum(m.weight.shape[0] for n, m in model.named_modules()
                   if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and n not in full_precision)
    row = next(r for r in results if r.id == "t5-w2a4-size")
    with_scales = dict(row.readings)["with per-channel fp16 scales"]
    assert with_scales - row.recount == pytest.approx(channels * 2 / 2**20, rel=1e-9)


def test_ratio_rows_divide_the_recounts_and_the_printed_rows(results):
    by_id = {(r.paper, r.id): r for r in results}
    saving = by_id[("bidm", "t4-size-saving")]  # divides a BinaryDM row by a BiDM row
    fp, w1a1 = by_id[("binarydm", "t5-fp-size")], by_id[("bidm", "t4-w1a1-size")]
    assert saving.recount == fp.recount / w1a1.recount
    assert saving.printed_ratio == 1045.4 / 37.3
    planes = by_id[("binarydm", "t17-planes-vs-one")]
    assert planes.recount == pytest.approx(4.0) and planes.printed_ratio == pytest.approx(38174.2 / 17699.5)


def test_bidm_third_reading_keeps_skip_convs_at_full_precision_without_shortcuts(results):
    _, model, _, _ = traced("ldm4-lsun-bedrooms")
    skips = [m for n, m in model.named_modules() if n.endswith("conv_shortcut")]
    skip_weights = sum(m.weight.numel() for m in skips)
    row = next(r for r in results if r.id == "t4-w1a1-size")
    readings = dict(row.readings)
    assert readings["skip convs full precision"] - row.recount == pytest.approx(skip_weights * 31 / 8 / 2**20)
    assert readings["as coded"] > readings["skip convs full precision"]  # the code's shortcuts add weights


def test_a_row_with_two_recounts_is_refused():
    data = yaml.safe_load((DATA / "bidm.yaml").read_text())
    data["rows"][0]["needs"] = "a device"
    with pytest.raises(SimdqError, match=r"exactly one of case, of, cases, needs"):
        validate(Paper, data, "bidm.yaml", SimdqError)
    data["rows"][0].pop("needs")
    data["rows"][0]["case"] = "w1a2"
    with pytest.raises(SimdqError, match=r"unknown case 'w1a2' \(did you mean 'w1a1'"):
        validate(Paper, data, "bidm.yaml", SimdqError)


def test_a_gap_that_stops_holding_is_reported_as_moved(estimates):
    paper = load_paper("bidm")
    row = next(r for r in paper.rows if r.id == "t4-w1a1-flops")
    shifted = paper.model_copy(update={"rows": [row.model_copy(update={"gap": row.gap.model_copy(
        update={"value": row.gap.value + 0.05})})]})
    result = Recount(estimates).recount_row(shifted, shifted.rows[0])
    assert result.status == MOVED


def test_tables_writes_markdown_csv_latex_and_a_figure(tmp_path, capsys, results):
    assert main(["tables", "-o", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(OUTPUTS)
    rows = list(csv.DictReader(io.StringIO((tmp_path / "paper-tables.csv").read_text())))
    assert [(r["paper"], r["id"]) for r in rows] == [(r.paper, r.id) for r in results]
    for written, result in zip(rows, results):
        assert written["status"] == result.status
        assert (float(written["recount"]) if written["recount"] else None) == result.recount
    latex = (tmp_path / "paper-tables.tex").read_text()
    assert latex.count(r"\toprule") == len(paper_names()) and r"\bottomrule" in latex
    assert "1045.4" in (tmp_path / "paper-tables.md").read_text()
    assert (tmp_path / "paper-tables.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "rows (" in capsys.readouterr().out


def test_tables_prints_one_paper(capsys):
    assert main(["tables", "--paper", "bidm", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows and {r["paper"] for r in rows} == {"bidm"}


def test_unknown_paper_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["tables", "--paper", "bdm"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "invalid choice: 'bdm'" in err


def test_output_that_is_a_file_is_one_line_and_exit_2(tmp_path, capsys):
    target = tmp_path / "FILE"
    target.write_text("x")
    assert main(["tables", "-o", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("is a file; give a folder") and len(err.splitlines()) == 1 and target.read_text() == "x"


def test_kernel_speedup_divides_the_conv_and_linear_time_alone(results, estimates):
    paper = load_paper("efficientdm")
    fp32, w8a8 = (estimates(paper.case_config(name), paper.case_device(name), name)
                  for name in ("fp32-rtx3090", "w8a8-rtx3090"))
    gemm_time = [sum(r.device.latency_s for r in e.layers if r.layer.kind in ("conv", "linear")) for e in (fp32, w8a8)]
    assert gemm_time[0] < fp32.totals["latency_s"]  # norms, attention and the rest are left out
    row = next(r for r in results if r.id == "w8a8-kernel-speedup")
    assert row.recount == pytest.approx(gemm_time[0] / gemm_time[1], rel=1e-12)


def test_rtx3090_peaks_are_its_tensor_cores_times_clock():
    from hw_models import load_device

    peaks = load_device("rtx3090").primary.rates.peaks
    cores, clock = 328, 1.695e9
    for precision, fmas_per_clock in (("fp16", 64), ("int8", 256), ("int4", 512), ("tf32", 32)):
        # fp16 with fp32 accumulation runs at half rate on GeForce Ampere
        assert peaks[precision] == pytest.approx(2 * cores * clock * fmas_per_clock, rel=2e-3), precision


def test_latex_without_pandas_is_one_line_and_exit_2_before_the_work(capsys, monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "pandas", None)  # what `import pandas` sees where it is not installed
    assert main(["tables", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "simdq: error: LaTeX tables need pandas and Jinja2: pip install 'simdq[tables]'"
    assert not (tmp_path / "out").exists()


def test_lce_device_rates_come_from_the_kernel_block_and_the_core(results):
    from hw_models import load_device

    device = load_device("snapdragon855plus-lce")
    asimd_instructions, binary_macs, pipes, clock = 16 + 16 + 12 + 4, 16 * 128, 2, 2.96e9
    assert device.engines["lce"].binary_macs_per_s == pytest.approx(binary_macs / (asimd_instructions / pipes)
                                                                    * clock, rel=1e-3)
    by_id = {r.id: r for r in results}
    fp, one_plane, four_planes, two_bases = (by_id[i].recount for i in (
        "t17-fp-latency", "t8-binary-latency", "t17-w1a4-latency", "t17-two-basis-latency"))
    macs, elements, operator = 32 * 32 * 448 * 448 * 9, 448 * 32 * 32, 20.0
    assert fp == pytest.approx(macs / (2 * 4 * clock) * 1e6, rel=1e-9)  # two 4-lane FMLA per cycle
    gemm = macs / device.engines["lce"].binary_macs_per_s * 1e6
    # LceQuantize first: the fp32 input read and its bits written at the LPDDR4X's 34.1 GB/s, one operator each
    packing = elements * (4 + 1 / 8) / 34.1e9 * 1e6 + operator
    assert one_plane == pytest.approx(gemm + packing, rel=1e-9)
    assert four_planes == pytest.approx(4 * one_plane) and by_id["t17-planes-vs-one"].recount == pytest.approx(4)
    assert two_bases == pytest.approx(8 * gemm + 4 * packing, rel=1e-9)  # two weight planes per packed plane


def test_bidm_scale_path_priced_as_its_code_runs_it(results):
    """The scale path's three float operators on the A76 at its own rates: mean(|x|) (two operators over the
    input), the 3x3 1->1 conv (one operator, 9 MACs per position), y x K (one over the output)."""
    by_id = {r.id: r for r in results}
    added = by_id["t8-bidm-latency"].recount - by_id["t8-binary-latency"].recount
    elements, positions, operator, vector, dram = 448 * 32 * 32, 32 * 32, 20.0, 23.68e9, 34.1e9
    mean = max((2 * elements + positions) / vector, (elements + positions) * 4 / dram) * 1e6
    mean = max(mean, 2 * operator)
    k_conv = max(9 * positions / (47.36e9 / 2), operator * 1e-6, (positions * 2 + 10) * 4 / dram) * 1e6
    multiply = max(elements / vector, (2 * elements + positions) * 4 / dram, operator * 1e-6) * 1e6
    assert added == pytest.approx(mean + k_conv + multiply, rel=1e-6)
    assert 100 < added < 300  # against the 4,165 us the printed rows add


def test_a_row_that_needs_what_simdq_lacks_is_shown_not_recounted(estimates):
    paper = load_paper("bidm")
    row = next(r for r in paper.rows if r.id == "t8-binary-latency")
    pending = row.model_copy(update={"case": None, "gap": None, "needs": "a device file for this phone"})
    result = Recount(estimates).recount_row(paper, pending)
    assert (result.status, result.recount, result.published) == (NOT_RECOUNTED, None, 17699.5)
    assert result.note.endswith("Needs a device file for this phone.")
