"""The frame queue's overload policies and the accounting that every frame passes through."""

from __future__ import annotations

import threading

from edge.cameras.base import Frame
from edge.daemon.pipeline import Accounting, FrameQueue, Job


def job(n: int) -> Job:
    return Job(frame=Frame(image=None, frame_id=n, source=str(n)))


def fill(policy: str, size: int = 2, frames: int = 5) -> tuple[FrameQueue, Accounting]:
    accounting = Accounting()
    queue = FrameQueue(size, policy, accounting, threading.Event())  # type: ignore[arg-type]
    for n in range(1, frames + 1):
        accounting.frame_in()
        queue.put(job(n))
    return queue, accounting


def drain(queue: FrameQueue) -> list[int]:
    ids = []
    while (item := queue.get(0.01)) is not None:
        ids.append(item.frame.frame_id)
    return ids


def test_drop_oldest_keeps_the_newest_frames_and_counts_the_rest():
    queue, accounting = fill("drop_oldest")
    assert drain(queue) == [4, 5] and accounting.drops == {"queue_full": 3}


def test_drop_newest_keeps_the_first_frames_and_counts_the_rest():
    queue, accounting = fill("drop_newest")
    assert drain(queue) == [1, 2] and accounting.drops == {"queue_full": 3}


def test_block_waits_for_room_and_drops_nothing():
    accounting = Accounting()
    queue = FrameQueue(1, "block", accounting, threading.Event())
    taken: list[int] = []

    def consumer() -> None:
        while len(taken) < 4:
            item = queue.get(1.0)
            if item is not None:
                taken.append(item.frame.frame_id)

    thread = threading.Thread(target=consumer)
    thread.start()
    for n in range(1, 5):
        queue.put(job(n))
    thread.join(10)
    assert taken == [1, 2, 3, 4] and not accounting.drops


def test_accounting_balances_when_every_frame_has_a_verdict_or_a_drop():
    queue, accounting = fill("drop_oldest")
    assert not accounting.balanced()  # two frames still queued
    for item in drain_jobs(queue):
        accounting.verdict(error=item.frame.frame_id == 5)
    snapshot = accounting.snapshot()
    assert accounting.balanced() and snapshot["frames"] == 5 and snapshot["verdicts"] == 2
    assert snapshot["errors"] == 1 and snapshot["dropped"] == 3


def test_discard_all_counts_what_was_still_queued_at_shutdown():
    queue, accounting = fill("drop_newest", size=3, frames=3)
    assert queue.discard_all("shutdown") == 3 and accounting.drops == {"shutdown": 3} and accounting.balanced()


def drain_jobs(queue: FrameQueue) -> list[Job]:
    jobs = []
    while (item := queue.get(0.01)) is not None:
        jobs.append(item)
    return jobs
