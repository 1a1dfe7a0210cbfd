"""A bug in a pipeline thread ends the daemon with exit 1 (systemd restarts it), never a silent exit 0 or a hang.

No real camera raises an arbitrary exception on demand, so this one is a fake: it delivers two
frames of the demo set, then raises what a bug in a pixel conversion would raise.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

import edge.daemon.supervisor
from edge.cameras.base import Frame
from edge.daemon.config import load_config
from edge.daemon.supervisor import EXIT_FAILURE, InspectionDaemon

DEMO = Path(__file__).resolve().parents[4] / "edge" / "demo"


class BuggyCamera:
    def __init__(self) -> None:
        self.grabs = 0

    def open(self) -> None:
        pass

    def grab(self, timeout: float) -> Frame | None:
        self.grabs += 1
        if self.grabs > 2:
            raise ValueError("cannot reshape array of size 7 into shape (2,2)")
        return Frame(image=np.full((64, 64, 3), 128, np.uint8), frame_id=self.grabs, source="fake")

    def close(self) -> None:
        pass

    def stats(self) -> dict[str, int]:
        return {"frames": self.grabs}


def test_a_crashing_acquisition_thread_ends_in_exit_1_after_publishing_what_it_grabbed(monkeypatch, tmp_path):
    monkeypatch.setattr(edge.daemon.supervisor, "create_camera", lambda _config: BuggyCamera())
    config = load_config(None, {"bundle": str(DEMO / "bundle"), "camera.type": "sim",
                                "camera.source": str(DEMO / "images"), "publish.endpoint": f"ipc://{tmp_path}/v",
                                "publish.heartbeat_s": 0})
    daemon = InspectionDaemon(config, threading.Event())
    assert daemon.run() == EXIT_FAILURE
    counters = daemon.accounting.snapshot()
    assert counters["frames"] == counters["verdicts"] == 2 and daemon.accounting.balanced()
    assert "acquisition crashed: ValueError" in str(daemon.acquisition.failure)
