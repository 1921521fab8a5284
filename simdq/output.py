"""Outputs written atomically: into a temporary file (or folder) beside the target, then renamed over it, so
that an interrupted run leaves the previous output or none, never half of one."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import SimdqError


@contextmanager
def replacing(path, what: str = ""):
    """Yields a temporary path in the target's folder; on success it replaces `path`, on failure it is removed.
    An OSError becomes one line naming `what` (the option or file) and the path."""
    path = Path(path)
    label = f"{what} {path}".strip()
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=f".{path.name}.")
        os.close(handle)
    except OSError as err:
        raise SimdqError(f"{label}: cannot write ({err.strerror})") from None
    try:
        yield Path(temporary)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp's 0600 would make the output private
        os.replace(temporary, path)
    except OSError as err:
        raise SimdqError(f"{label}: cannot write ({err.strerror})") from None
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path, text: str, what: str = "") -> None:
    with replacing(path, what) as temporary:
        temporary.write_text(text)


def check_output_file(path, what: str) -> None:
    """That `path` can be written as a file: its folder exists and it is not itself a folder. Checked before the
    work, so a bad -o or --plot costs nothing."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise SimdqError(f"{what} {path}: folder {parent} does not exist" if not parent.exists() else
                         f"{what} {path}: {parent} is a file, not a folder")
    if path.is_dir():
        raise SimdqError(f"{what} {path}: is a folder; give a file name")


def check_output_directory(path, what: str, replaceable=()) -> None:
    """That `path` can become an output folder: new, empty, or one holding only the files named `replaceable`
    (an earlier output of the same kind, which is replaced whole). Checked before the work, so a bad -o costs
    nothing."""
    path = Path(path)
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise SimdqError(f"{what} {path}: {parent} is a file, not a folder")
    if not path.exists():
        return
    if not path.is_dir():
        raise SimdqError(f"{what} {path}: is a file; give a new or empty folder")
    odd = sorted(entry.name + ("/" if entry.is_dir() else "") for entry in path.iterdir()
                 if entry.name not in replaceable or not entry.is_file())
    if odd:
        raise SimdqError(f"{what} {path}: holds {', '.join(odd[:3])}{' ...' if len(odd) > 3 else ''}, which is "
                         f"not an earlier output to replace; give a new or empty folder")


@contextmanager
def replacing_directory(path, what: str, replaceable=()):
    """Yields a temporary folder beside `path`; on success it takes the place of `path` (an earlier output,
    per check_output_directory, is removed), on failure it is removed."""
    path = Path(path)
    check_output_directory(path, what, replaceable)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    except OSError as err:
        raise SimdqError(f"{what} {path}: cannot write ({err.strerror})") from None
    try:
        yield staging
        os.chmod(staging, 0o777 & ~_umask())
        if path.exists():
            earlier = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old."))
            os.replace(path, earlier / path.name)
            os.replace(staging, path)
            shutil.rmtree(earlier)
        else:
            os.replace(staging, path)
    except OSError as err:
        raise SimdqError(f"{what} {path}: cannot write ({err.strerror})") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging)
