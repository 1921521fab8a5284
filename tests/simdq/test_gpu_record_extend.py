"""benchmarks/gpu_record_extend.py without a GPU: a record extended with another session's classes, on the CPU's
pipeline-test suite; what cannot be one GPU's record refused in one line (exit code 2)."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from gpu_record_extend import main  # noqa: E402
from simdq.microbench import read_record, samples_of  # noqa: E402


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """A record without the bias_add class, and an addition of it alone, both timed on the CPU."""
    folder = tmp_path_factory.mktemp("records")
    added = folder / "added.json"
    assert main(["measure", "--classes", "bias_add", "--device", "cpu", "--quick", "-o", str(added)]) == 0
    assert main(["measure", "--classes", "norm,strided_copy", "--device", "cpu", "--quick",
                 "-o", str(folder / "record.json")]) == 0
    return folder / "record.json", added


def test_the_merged_record_holds_both_sessions_and_says_what_was_added(records, tmp_path):
    record, added = records
    out = tmp_path / "merged.json"
    assert main(["merge", str(record), str(added), "-o", str(out)]) == 0
    merged, before, addition = (read_record(str(p)) for p in (out, record, added))
    assert merged["measurements"] == before["measurements"] + addition["measurements"]
    assert {s.op_class for s in samples_of(merged)} == {"norm", "strided_copy", "bias_add"}
    assert merged["additions"] == [{"date": addition["date"], "torch": addition["torch"], "cuda": addition["cuda"],
                                    "classes": ["bias_add"], "measurements": 3}]
    assert merged["date"] == before["date"]


def _refused(args, capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    return err


def test_another_gpu_or_a_class_the_record_has_is_refused(records, tmp_path, capsys):
    record, added = records
    other = tmp_path / "other.json"
    other.write_text(json.dumps(dict(json.loads(added.read_text()), gpu="NVIDIA H200")))
    err = _refused(["merge", str(record), str(other), "-o", str(tmp_path / "out.json")], capsys)
    assert "not the record's GPU and software" in err and "NVIDIA H200" in err
    err = _refused(["merge", str(record), str(record), "-o", str(tmp_path / "out.json")], capsys)
    assert "already times norm, strided_copy" in err
    assert not (tmp_path / "out.json").exists()


def test_a_class_outside_the_suite_is_refused_before_anything_is_timed(tmp_path, capsys):
    err = _refused(["measure", "--classes", "bias_add,bias_sub", "--device", "cpu", "--quick",
                    "-o", str(tmp_path / "x.json")], capsys)
    assert "classes bias_sub: not in this device's suite" in err and "bias_add" in err
