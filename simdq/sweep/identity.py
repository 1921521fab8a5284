"""What computes a sweep point: simdq's own files and the versions of the libraries whose arithmetic it runs.

Every point's key holds this identity. The release number alone would let a store kept across a code change (a new
cost model under the same version) or a torch upgrade hand back results the old code computed, and would let a
cluster mix workers that price the same point differently.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from functools import lru_cache
from pathlib import Path

from .. import __version__

PACKAGES = ("simdq", "hw_models", "emulator", "diagnostics")
# shipped data decides results as much as code does (device files, preset configs, parity vectors); Numba's
# caches and byte code under __pycache__ are derived from these and differ between machines
SOURCE_SUFFIXES = (".py", ".yaml", ".json", ".npz")
LIBRARIES = ("numpy", "numba", "torch", "diffusers")
IDENTITY_HEX_CHARS = 16


def source_digest(roots: dict) -> str:
    """SHA-256 over every source file under each root (name -> folder), by relative path and contents."""
    sha = hashlib.sha256()
    for name in sorted(roots):
        root = Path(roots[name])
        paths = sorted(path for path in root.rglob("*")
                       if path.is_file() and path.suffix in SOURCE_SUFFIXES and "__pycache__" not in path.parts)
        for path in paths:
            contents = path.read_bytes()
            sha.update(f"{name}/{path.relative_to(root).as_posix()}\0{len(contents)}\0".encode())
            sha.update(contents)
    return sha.hexdigest()


def library_versions() -> dict:
    versions = {}
    for library in LIBRARIES:
        try:
            versions[library] = importlib.metadata.version(library)
        except importlib.metadata.PackageNotFoundError:
            versions[library] = "absent"
    return versions


@lru_cache(maxsize=1)
def code_identity() -> str:
    """`simdq VERSION+HEX`: the release, then a digest of the installed packages' files and the libraries'
    versions (computed once a process: about 1 MB of files)."""
    roots = {name: Path(importlib.util.find_spec(name).origin).parent for name in PACKAGES}
    versions = ",".join(f"{library}={version}" for library, version in library_versions().items())
    digest = hashlib.sha256(f"{source_digest(roots)}\0{versions}".encode()).hexdigest()
    return f"simdq {__version__}+{digest[:IDENTITY_HEX_CHARS]}"
