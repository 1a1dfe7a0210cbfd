"""Acquisition, inference and publishing as three threads joined by small bounded queues.

Grabbing frame n+1 (camera I/O, image decode) overlaps inferring frame n, which overlaps
publishing frame n-1, so the line runs at the pace of its slowest stage rather than of their sum.
What happens when the camera is faster than inference is a configured policy, never an accident:

- ``block`` (default): acquisition waits for room, so every frame grabbed is inspected; a
  free-running GenTL camera with ``buffer_handling: newest`` meanwhile keeps only its freshest
  image (the frames it replaced show as ``device_frame_id`` jumps), a file replay simply slows,
- ``drop_oldest``: the frame waiting longest is discarded for the new one (freshest verdicts),
- ``drop_newest``: the new frame is discarded (keeps the order of arrival).

Every frame is accounted for: :class:`Accounting` counts frames in, verdicts, and drops by reason,
and ``frames_in == verdicts + dropped`` holds whenever the queues are empty (at exit always: a
frame still queued when the shutdown deadline passes is counted as a ``shutdown`` drop). The
cumulative drops travel in every verdict and heartbeat. Queues are bounded, so memory is bounded
whatever the input rate: at most ``queue_size`` + ``PUBLISH_QUEUE`` + one frame per thread are alive.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from edge.cameras.base import Frame
from edge.model.inspector import Inspection
from edge.wire.messages import encode_message

log = logging.getLogger(__name__)

OverloadPolicy = Literal["drop_oldest", "drop_newest", "block"]
PUBLISH_QUEUE = 8
POLL_S = 0.2
# A frame inside inference, or a grab or camera open, for longer than this means the pipeline is
# wedged: heartbeats then no longer count as signs of life for the systemd watchdog.
WEDGED_AFTER_S = 10.0
# At a stop, publishing gets at least this long to send what inference finished, even past the drain deadline.
PUBLISH_JOIN_MIN_S = 0.5


class PipelineConfig(BaseModel):
    """``pipeline:`` how frames flow from the camera to the publisher."""

    model_config = ConfigDict(extra="forbid")

    queue_size: int = Field(
        2, ge=1, le=64, description="Frames that may wait for inference. Small keeps latency low and memory bounded."
    )
    overload: OverloadPolicy = Field(
        "block", description="When a frame arrives and the queue is full: block (acquisition waits: every grabbed frame "
        "is inspected, and a GenTL camera with buffer_handling newest keeps only its freshest image meanwhile), "
        "drop_oldest (discard the frame waiting longest) or drop_newest (discard the new frame). Drops are counted "
        "per reason.",
    )
    acquisition: Literal["continuous", "on_demand"] = Field(
        "continuous", description="continuous: grab as the camera delivers. on_demand: grab one frame per 'trigger' "
        "control command (with a software-triggered camera, each grab fires the trigger).",
    )
    shutdown_timeout_s: float = Field(
        10.0, gt=0, description="On stop, how long frames already grabbed may take to be inspected and published; "
        "what remains after that is counted as dropped (reason 'shutdown').",
    )


@dataclass
class Job:
    """One frame on its way through the pipeline, with per-stage durations (ms)."""

    frame: Frame
    t_grabbed: float = field(default_factory=time.perf_counter)
    stages_ms: dict[str, float] = field(default_factory=dict)
    inspection: Inspection | None = None
    error: str | None = None
    bundle_id: str = ""
    t_inspected: float = 0.0


@dataclass
class Message:
    """A non-verdict message (status, event) for the publishing thread, the only user of the socket."""

    prefix: str
    payload: dict[str, Any]

    def payload_parts(self) -> list[bytes]:
        return encode_message(self.prefix, self.payload)

    @property
    def kind(self) -> str:
        """``status`` or ``event``: the topic's first word."""
        return self.prefix.rstrip(".")


class Accounting:
    """Frames in, verdicts, error verdicts and drops by reason; shared by the three threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.frames_in = 0
        self.verdicts = 0
        self.errors = 0
        self.drops: Counter[str] = Counter()

    def frame_in(self, n: int = 1) -> None:
        with self._lock:
            self.frames_in += n

    def drop(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self.drops[reason] += n

    def verdict(self, error: bool) -> None:
        with self._lock:
            self.verdicts += 1
            self.errors += int(error)

    def snapshot(self) -> dict[str, Any]:
        """Counters as they go out in verdicts, heartbeats and ``status``."""
        with self._lock:
            drops = dict(self.drops)
            return {"frames": self.frames_in, "verdicts": self.verdicts,
                    "errors": self.errors, "dropped": sum(drops.values()), "drops": drops}

    def balanced(self) -> bool:
        """Whether every frame that came in has a verdict or a counted drop."""
        with self._lock:
            return self.frames_in == self.verdicts + sum(self.drops.values())


class Worker:
    """One pipeline thread: ``_run`` on a named daemon thread; ``finished`` is set when it returns.

    An exception escaping ``_run`` is a bug: it is logged with its traceback and recorded in
    ``failure`` (the daemon then exits 1 and systemd restarts it), and ``stop`` is set so the
    other threads drain and end instead of waiting for frames that will never come.
    """

    def __init__(self, name: str, stop: threading.Event) -> None:
        self.name = name
        self.stop = stop
        self.failure: str | None = None
        self.finished = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; whether the thread has ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        raise NotImplementedError

    def _main(self) -> None:
        try:
            self._run()
        except Exception as exc:  # noqa: BLE001 - a bug must end in exit 1, not a hang or a silent exit 0
            self.failure = f"{self.name} crashed: {type(exc).__name__}: {exc}"
            log.exception("%s thread crashed", self.name)
            self.stop.set()
        finally:
            self.finished.set()


def pipeline_healthy(inference_busy_since: float | None, acquisition_busy_since: float | None, now: float) -> bool:
    """Whether neither thread has been inside one call (an inference, a grab, a camera open) past WEDGED_AFTER_S."""
    return all(since is None or now - since < WEDGED_AFTER_S for since in (inference_busy_since, acquisition_busy_since))


class FrameQueue:
    """The bounded queue between acquisition and inference, applying the overload policy on ``put``."""

    def __init__(self, size: int, policy: OverloadPolicy, accounting: Accounting, stop: threading.Event) -> None:
        self._queue: queue.Queue[Job] = queue.Queue(maxsize=size)
        self.policy = policy
        self._accounting = accounting
        self._stop = stop

    def put(self, job: Job) -> bool:
        """Queue ``job`` or drop per policy; False when a frame was dropped (the new or the oldest)."""
        if self.policy == "block":
            while True:
                try:
                    self._queue.put(job, timeout=POLL_S)
                    return True
                except queue.Full:
                    if self._stop.is_set():  # stopping: inference still drains, so keep waiting a little
                        try:
                            self._queue.put(job, timeout=POLL_S)
                            return True
                        except queue.Full:
                            self._accounting.drop("shutdown")
                            return False
        try:
            self._queue.put_nowait(job)
            return True
        except queue.Full:
            pass
        if self.policy == "drop_newest":
            self._accounting.drop("queue_full")
            return False
        try:  # drop_oldest: this thread is the only producer, so after one get there is room
            self._queue.get_nowait()
            self._accounting.drop("queue_full")
        except queue.Empty:
            pass
        self._queue.put_nowait(job)
        return False

    def get(self, timeout: float) -> Job | None:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def qsize(self) -> int:
        return self._queue.qsize()

    def discard_all(self, reason: str) -> int:
        """Empty the queue, counting each frame as dropped for ``reason``."""
        count = len(drain(self._queue))
        if count:
            self._accounting.drop(reason, count)
        return count


def drain(items: queue.Queue[Any]) -> list[Any]:
    """Everything waiting in ``items`` now, removed from it (for the shutdown accounting)."""
    taken = []
    while True:
        try:
            taken.append(items.get_nowait())
        except queue.Empty:
            return taken
