"""A sweep point's key holds the code that computes it: simdq's files (not byte code or Numba caches) and the
versions of the libraries it runs, so a store kept across a code change never hands back the old code's results."""

import pytest

import simdq.sweep.points as points
from simdq import __version__
from simdq.sweep.identity import LIBRARIES, code_identity, library_versions, source_digest
from simdq.sweep.points import digest


@pytest.fixture
def package(tmp_path):
    root = tmp_path / "pkg"
    (root / "engines").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "engines" / "gemm.py").write_text("EFFICIENCY = 0.8\n")
    (root / "devices.yaml").write_text("clock: 1.98e9\n")
    return root


def test_one_changed_byte_of_code_or_shipped_data_changes_the_digest(package):
    before = source_digest({"pkg": package})
    (package / "engines" / "gemm.py").write_text("EFFICIENCY = 0.7\n")
    after_code = source_digest({"pkg": package})
    (package / "devices.yaml").write_text("clock: 1.75e9\n")
    after_data = source_digest({"pkg": package})
    assert len({before, after_code, after_data}) == 3


def test_a_moved_file_changes_the_digest_and_derived_files_do_not(package):
    before = source_digest({"pkg": package})
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "gemm.cpython-312.pyc").write_bytes(b"\x00" * 16)
    (package / "__pycache__" / "gemm.price-12.py312.nbi").write_bytes(b"\x01")
    (package / "engines" / "gemm.py.orig").write_text("leftover of a merge")
    assert source_digest({"pkg": package}) == before
    (package / "engines" / "gemm.py").rename(package / "gemm.py")
    assert source_digest({"pkg": package}) != before
    # the same files under another package name are other code
    assert source_digest({"other": package}) != source_digest({"pkg": package})


def test_contents_cannot_pass_for_the_next_file(tmp_path):
    # without each file's length in the stream, one file holding the next one's header and contents would hash like
    # the two files
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    (one / "a.py").write_bytes(b"x" + b"p/b.py\0" + b"y")
    (two / "a.py").write_bytes(b"x"), (two / "b.py").write_bytes(b"y")
    assert source_digest({"p": one}) != source_digest({"p": two})


def test_the_identity_names_the_release_and_the_libraries_it_ran_on():
    identity = code_identity()
    assert identity.startswith(f"simdq {__version__}+") and len(identity.partition("+")[2]) == 16
    versions = library_versions()
    assert set(versions) == set(LIBRARIES)
    import numpy

    assert versions["numpy"] == numpy.__version__


def test_a_point_key_changes_with_the_code_identity(monkeypatch):
    record = {"kind": "estimate", "labels": {"batch": 1}}
    ours = digest(record)
    monkeypatch.setattr(points, "code_identity", lambda: f"simdq {__version__}+0000000000000000")
    assert digest(record) != ours
