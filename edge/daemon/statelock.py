"""One daemon per state directory: an exclusive ``flock`` on a lock file held for the daemon's life.

Two daemons started on the same ``state_dir`` (a copied unit file, a technician's manual run
beside the service) would both number verdicts from the same counter: the second continues at
the first's reserved block, the first later persists its own next number, and seqs are
published twice. So the state directory is locked: the lock file holds the pid of the daemon
that has it, a second daemon is refused with one line naming that pid, and because the kernel
drops an ``flock`` when its process dies, a lock left by ``kill -9`` or a power cut never
blocks the next start. The file itself is left in place (removing it would race with a
starting daemon that has it open).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_FILE = "daemon.lock"


class StateLockError(Exception):
    """The state directory is locked by another daemon, or the lock file cannot be made (one line)."""


class StateLock:
    """The lock on ``state_dir``; :meth:`acquire` once, :meth:`release` at the end (or let the process end)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock and write this pid into the file; StateLockError naming the holder's pid if taken."""
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StateLockError(f"state_dir {self.state_dir}: cannot create {LOCK_FILE} "
                                 f"({exc.strerror or exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise StateLockError(
                f"state_dir {self.state_dir} is in use by another edge-inspect (pid {holder or 'unknown'}): "
                "one daemon per station and state directory") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd

    def release(self) -> None:
        """Give the lock up (safe to call twice, or without having it)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None

    def probe(self) -> None:
        """Whether a daemon could take the lock now (``--validate-config``): acquire and release at once."""
        self.acquire()
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
