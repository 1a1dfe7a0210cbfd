"""``python stalled_inference.py --config FILE``: the daemon, its inference stage held on its first frame until SIGUSR1.

An overload made on purpose, for the tests of what the pipeline does when inference cannot keep
up (the overload policies, a SIGTERM while the frame queue is full). Hoping that the camera
outruns inference on the machine at hand would make those tests pass or fail by its speed, so
here inference holds the first frame it takes, and the sim camera delivers its second frame only
once inference holds the first: what waits in the queue, what blocks and what is dropped then
follows from the configuration alone. ``SIGUSR1`` lets inference go on; everything else is the
real daemon (``edge-inspect`` with the same arguments).
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from edge.cameras.base import Frame
from edge.cameras.sim import SimCamera
from edge.cli import main
from edge.model.inspector import Inspection, Inspector

# Only a bound for a test that never sends SIGUSR1; it fails on its own deadline long before.
HOLD_LIMIT_S = 600.0
holding = threading.Event()  # inference holds its first frame
released = threading.Event()  # SIGUSR1 came
_inspect = Inspector.inspect
_grab = SimCamera.grab


def held_inspect(self: Inspector, image: Any) -> Inspection:
    if threading.current_thread().name == "inference" and not holding.is_set():
        holding.set()
        released.wait(HOLD_LIMIT_S)
    return _inspect(self, image)


def grab_after_hold(self: SimCamera, timeout: float) -> Frame | None:
    if self.stats()["frames"] >= 1:
        holding.wait(HOLD_LIMIT_S)
    return _grab(self, timeout)


if __name__ == "__main__":
    Inspector.inspect = held_inspect  # type: ignore[method-assign]
    SimCamera.grab = grab_after_hold  # type: ignore[method-assign]
    signal.signal(signal.SIGUSR1, lambda _signum, _frame: released.set())
    main(prog_name="edge-inspect")
