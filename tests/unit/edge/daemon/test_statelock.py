"""The state-directory lock: held once, refused with the holder's pid, free again when released or its process dies."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge.daemon.statelock import LOCK_FILE, StateLock, StateLockError

REPO = Path(__file__).resolve().parents[4]


def test_a_second_lock_is_refused_naming_the_pid_and_free_after_release(tmp_path):
    first = StateLock(tmp_path / "state")
    first.acquire()
    with pytest.raises(StateLockError, match=rf"is in use by another edge-inspect \(pid {os.getpid()}\)"):
        StateLock(tmp_path / "state").acquire()
    first.release()
    second = StateLock(tmp_path / "state")
    second.probe()
    second.acquire()
    assert second.held and (tmp_path / "state" / LOCK_FILE).read_text().strip() == str(os.getpid())
    second.release()


def test_a_lock_held_by_a_process_that_died_does_not_block(tmp_path):
    code = ("import sys; from edge.daemon.statelock import StateLock; StateLock(sys.argv[1]).acquire(); "
            "print('held', flush=True); sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(StateLockError, match=rf"pid {holder.pid}"):
        StateLock(tmp_path).acquire()
    holder.kill()
    holder.wait(timeout=30)
    lock = StateLock(tmp_path)
    lock.acquire()  # the kernel dropped the dead process's flock
    lock.release()


def test_a_state_dir_that_cannot_be_made_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StateLockError, match=r"cannot create daemon.lock \(Not a directory\)"):
        StateLock(tmp_path / "file" / "state").acquire()
