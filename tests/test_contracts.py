"""The import contracts of pyproject.toml (ARCHITECTURE.md's layers) hold, and a wrong import breaks them."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("simdq", "emulator", "hw_models", "diagnostics")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    lint = shutil.which("lint-imports", path=os.path.dirname(sys.executable)) or shutil.which("lint-imports")
    if lint is None:
        pytest.fail("lint-imports is missing: install the test extras (pip install -e '.[test]')")
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([lint, "--config", str(root / "pyproject.toml"), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def test_every_contract_is_kept():
    result = lint_imports(ROOT)
    broken = [line for line in result.stdout.splitlines() if "BROKEN" in line]
    assert result.returncode == 0, "\n".join(broken) or result.stdout[-2000:] + result.stderr[-2000:]


@pytest.mark.parametrize("module, line, contract", [
    ("simdq/cost/accounting.py", "import torch", "torch and diffusers stay out"),
    ("hw_models/energy.py", "import emulator", "never import each other"),
    ("simdq/scheme/formats.py", "from simdq.cli import main", "simdq's layers"),
    ("simdq/cost/estimate.py", "import distributed", "Dask stays in simdq.sweep"),
])
def test_a_wrong_import_breaks_its_contract(tmp_path, module, line, contract):
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{line}\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert any(contract in row and "BROKEN" in row for row in result.stdout.splitlines()), result.stdout[-2000:]
