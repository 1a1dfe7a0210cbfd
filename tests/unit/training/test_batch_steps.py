"""A batch step that fails says why in one line: the signal that killed it, else its last log line."""

from __future__ import annotations

import sys
from pathlib import Path

from training.batch import run_step, step_error


def test_a_killed_step_is_reported_by_its_signal_and_a_failing_one_by_its_last_line(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    killed = run_step([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"], log, 1)
    assert not killed["ok"] and killed["returncode"] == -15
    assert step_error(killed, log).startswith("killed by SIGTERM after ")

    failed = run_step([sys.executable, "-c", "import sys; print('edge-train: error: no images'); sys.exit(2)"],
                      tmp_path / "other.log", 1)
    assert not failed["ok"] and failed["returncode"] == 2
    assert step_error(failed, tmp_path / "other.log") == "edge-train: error: no images"
