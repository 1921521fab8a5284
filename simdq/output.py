"""Outputs written atomically: into a temporary file beside the target, then renamed over it, so that an
interrupted run leaves the previous file or none, never half of one."""

from __future__ import annotations

import os
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
