"""simdq parity refs: the detector on references built to (not) match, the version table, the command,
and every installed reference held to the convention the table expects for its version."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

import emulator as em
from simdq.cli import main
from simdq.emulate.parity import expected as table
from simdq.emulate.parity.conventions import Convention
from simdq.emulate.parity.detect import detect
from simdq.emulate.parity.refs import installed_references
from simdq.emulate.parity.refs.affine import QuantizeReference
from simdq.emulate.parity.refs.casts import CastReference
from simdq.emulate.parity.versions import in_range, installed_version, reference_version, release

INSTALLED, NOT_INSTALLED = installed_references()


@pytest.mark.parametrize("reference", INSTALLED, ids=lambda r: r.id)
def test_installed_reference_implements_the_tables_convention(reference):
    version = reference_version(reference)
    finding = detect(reference, examples=settings.default.max_examples)
    expected = table.expected_convention(reference, version)
    found = "; ".join(c.name for c in finding.matches) or "no named convention"
    if expected is None:
        pytest.fail(f"{reference.library} {version} is outside the table in simdq/emulate/parity/expected.py for "
                    f"'{reference.id}': it implements {found}; add a row", pytrace=False)
    if expected not in finding.matches:
        counterexample = finding.counterexample_for(expected)
        pytest.fail(f"{reference.library} {version}: '{reference.id}' implements {found}, the table expects "
                    f"{expected.name}; counterexample: {counterexample.line()}", pytrace=False)


def test_every_library_the_tests_use_is_installed():
    assert NOT_INSTALLED == []


def e4m3fn_cast(library_function, input_dtype=np.float64, conventions=None):
    ref = CastReference("numpy", "synthetic", "e4m3fn", input_dtype, library_function)
    if conventions is not None:
        ref.conventions = conventions
    return ref


def test_detector_names_exactly_the_convention_a_reference_implements():
    # a "library" that is the emulator under one convention: only that convention may match
    truth = Convention.of(rounding="rne", overflow="saturate", float64="via_float32")
    ref = e4m3fn_cast(lambda x: em.encode(x, em.get_format("e4m3fn", overflow="saturate"), via_float32=True))
    finding = detect(ref, examples=30)
    assert finding.matches == (truth,)
    assert len(finding.counterexamples) == len(ref.conventions) - 1


def test_a_tie_rule_difference_is_reported_with_a_single_tie_as_counterexample():
    ref = e4m3fn_cast(lambda x: em.encode(x, "e4m3fn", rounding="rna"), np.float32,
                      conventions=[Convention.of(rounding="rne", overflow="nan")])
    finding = detect(ref, examples=0)
    assert finding.matches == ()
    (counterexample,) = finding.counterexamples
    x = float(re.search(r"x=\[(\S+) ", counterexample.case).group(1))
    grid = np.unique(np.abs(em.decode(np.arange(256, dtype=np.uint8), "e4m3fn")[:-1]).astype(np.float64))
    lower = grid[grid < abs(x)].max()
    upper = grid[grid > abs(x)].min()
    assert abs(x) == (lower + upper) / 2  # the one element shown is an exact tie


def test_the_hypothesis_search_finds_what_the_boundary_cases_cannot():
    # wrong only where the float32 bits end in 0x5: no boundary value does (they end in 0, 1 or F)
    def library(x):
        codes = em.encode(x, "e4m3fn")
        odd = (x.view(np.uint32) & 0xF) == 0x5
        return np.where(odd & (codes != 0x7F), codes ^ 1, codes).astype(np.uint8)

    ref = e4m3fn_cast(library, np.float32, conventions=[Convention.of(rounding="rne", overflow="nan")])
    assert detect(ref, examples=0).matches == tuple(ref.conventions)
    finding = detect(ref, examples=300)
    assert finding.matches == ()
    x = np.float32(float(re.search(r"x=\[(\S+) ", finding.counterexamples[0].case).group(1)))
    assert (x.view(np.uint32) & 0xF) == 0x5


def test_version_ranges():
    assert release("2.14.1+cu130") == (2, 14, 1)
    assert in_range("2.14.1+cu130", ">=2.14") and not in_range("2.13.0+cpu", ">=2.14")
    assert in_range("0.6.0", ">=0.5,<0.7") and not in_range("0.7.0", ">=0.5,<0.7")
    assert in_range("2.13", "==2.13.0") and in_range("1.0", "")
    with pytest.raises(ValueError, match="clause"):
        in_range("1.0", "~=1.0")


@pytest.mark.parametrize("version, op", [("2.13.0+cpu", "reciprocal_fma"), ("2.14.1", "reciprocal"),
                                         ("2.15.0", "reciprocal"), ("2.12.1", None)])
def test_the_table_by_torch_version(version, op):
    ref = QuantizeReference("int8", per_channel=False, fake=False)
    expected = table.expected_convention(ref, version)
    assert (expected.get("scale_op") if expected else None) == op


def test_the_issues_decisive_case_separates_torch_213_from_2141():
    x = np.array([2.5 - 2**-22, 2.5, 3.5, -2.5 + 2**-22], np.float32)
    fused = em.quantize(x, "int8", 1.0, 101, scale_op="reciprocal_fma")
    rounded_first = em.quantize(x, "int8", 1.0, 101, scale_op="reciprocal")
    np.testing.assert_array_equal(em.decode(fused, "int8"), [104, 104, 104, 98])
    np.testing.assert_array_equal(em.decode(rounded_first, "int8"), [103, 103, 105, 99])


def test_readme_documents_the_table_as_the_code_has_it():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert table.table_markdown() in readme


def run_cli(capsys, *argv):
    code = main(["parity", "refs", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_command_reports_json_and_exits_0_when_everything_matches(capsys):
    code, out, _ = run_cli(capsys, "--only", "numpy*", "--examples", "20", "--format", "json")
    report = json.loads(out)
    assert code == 0
    rows = {r["reference"]: r for r in report["references"]}
    assert set(rows) == {"numpy: astype(float16) from float32", "numpy: astype(float16) from float64"}
    assert rows["numpy: astype(float16) from float64"]["matches"] == ["rounding=rne, overflow=inf, float64=once"]
    assert rows["numpy: astype(float16) from float64"]["table"] == "as expected"


def test_command_exits_1_with_a_counterexample_when_a_reference_matches_nothing(capsys, monkeypatch):
    broken = e4m3fn_cast(lambda x: em.encode(x, "e4m3fn", rounding="rtz"), np.float32)
    monkeypatch.setattr("simdq.emulate.parity.refs.installed_references", lambda: ([broken], ["gfloat"]))
    code, out, _ = run_cli(capsys, "--format", "markdown", "--examples", "0")
    assert code == 1
    broken_row, missing_row = out.strip().splitlines()[2:]
    assert "| none |" in broken_row and "reference gives" in broken_row
    assert missing_row.startswith("| gfloat: every reference | not installed |")


@pytest.mark.parametrize("argv, message", [(["--only", "nothing*"], "matches no installed reference"),
                                           (["--examples", "-3"], "--examples: expected an integer from 0 to 1000000, got '-3'")])
def test_command_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    try:
        code, _, err = run_cli(capsys, *argv)
    except SystemExit as stop:
        code, err = stop.code, capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
