"""Writing a file so that a power cut or ``kill -9`` leaves the old file or the new one, never half.

A line-side PC is switched off at the wall. Everything the daemon persists (the bundle's
thresholds, the verdict sequence counter, NG archive records) goes through :func:`write_atomic`:
the bytes go to a temporary file in the same directory, are flushed and fsynced, the file is
renamed over the target (atomic on POSIX within one filesystem), and the directory is fsynced so
the rename itself survives. Temporary files carry :data:`TMP_MARK` so a clean-up after a crash can
recognise and remove them.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

TMP_MARK = ".tmp-"


def write_atomic(path: str | Path, data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically and durably; the temp file is removed on failure."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}{TMP_MARK}", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)
    return target


def fsync_dir(directory: str | Path) -> None:
    """Make a rename or unlink in ``directory`` durable."""
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def is_temp(path: Path) -> bool:
    """Whether ``path`` is a temporary file left by an interrupted :func:`write_atomic`."""
    return path.name.startswith(".") and TMP_MARK in path.name
