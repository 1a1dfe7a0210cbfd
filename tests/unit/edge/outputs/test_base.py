"""Every message handed to an output ends delivered, undelivered with a reason, or queued; none silently."""

from __future__ import annotations

import threading

from edge.outputs.base import PENDING, DeliveryError, OutboundMessage, QueuedOutput


class Gate(QueuedOutput):
    """Delivers when the gate is open; refuses payloads marked ``bad``."""

    name = "gate"

    def __init__(self, queue_size: int) -> None:
        super().__init__(queue_size=queue_size, kinds=("verdict", "event"))
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.seen: list[int] = []

    def deliver(self, message: OutboundMessage) -> None:
        self.entered.set()
        assert self.gate.wait(30), "test gate never opened"
        if message.payload.get("bad"):
            raise DeliveryError("refused", "bad payload")
        self.seen.append(message.payload["seq"])


def verdict(seq: int, **extra: object) -> OutboundMessage:
    return OutboundMessage("verdict", {"seq": seq, **extra})


def test_a_full_queue_drops_and_counts_while_a_stalled_consumer_blocks_nothing() -> None:
    out = Gate(queue_size=2)
    out.start()
    assert out.submit(verdict(1))
    assert out.entered.wait(30)  # message 1 is held in deliver(); the queue is empty again
    assert out.submit(verdict(2)) and out.submit(verdict(3))
    assert not out.submit(verdict(4))  # queue of 2 full: dropped at once, never waits
    out.gate.set()
    assert out.close(timeout=30) == 0
    stats = out.stats()
    assert out.seen == [1, 2, 3]
    assert stats["delivered"] == 3 and stats["undelivered"] == {"queue_full": 1} and stats["queued"] == 0


def test_delivery_errors_are_counted_by_reason_and_kinds_not_wanted_are_ignored() -> None:
    out = Gate(queue_size=8)
    out.gate.set()
    out.start()
    out.submit(verdict(1))
    out.submit(verdict(2, bad=True))
    out.submit(OutboundMessage("heartbeat", {"seq": 0}))  # not a kind this output takes
    out.close(timeout=30)
    stats = out.stats()
    assert out.seen == [1]
    assert stats["delivered"] == 1 and stats["undelivered"] == {"refused": 1}
    assert stats["last_error"] == "refused: bad payload"


def test_what_is_queued_or_in_flight_at_the_close_deadline_is_counted_once_as_shutdown() -> None:
    out = Gate(queue_size=8)
    out.start()
    out.submit(verdict(1))
    assert out.entered.wait(30)  # the sender holds message 1 until the gate opens
    out.submit(verdict(2))
    out.submit(verdict(3))
    # past the deadline at once: 2 and 3 never left the queue, and 1 is still inside deliver()
    assert out.close(timeout=0.0) == 3
    out.gate.set()
    out._thread.join(30)  # deliver(1) returns after the close: it is not counted a second time
    stats = out.stats()
    assert stats["delivered"] == 0 and stats["undelivered"] == {"shutdown": 3} and stats["queued"] == 0


class Crashing(QueuedOutput):
    name = "crashing"

    def deliver(self, message: OutboundMessage) -> None:
        raise RuntimeError("bug")


def test_a_crashing_output_counts_every_later_message_and_records_the_failure() -> None:
    out = Crashing(queue_size=8)
    out.start()
    for seq in range(1, 4):
        out.submit(verdict(seq))
    out.close(timeout=30)
    stats = out.stats()
    assert stats["delivered"] == 0 and sum(stats["undelivered"].values()) == 3
    assert out.failure and "RuntimeError: bug" in out.failure


class Deferred(QueuedOutput):
    """Takes every message into its own buffer; the test settles them as a peer would acknowledge."""

    name = "deferred"

    def __init__(self) -> None:
        super().__init__(queue_size=8)
        self.held: list[OutboundMessage] = []
        self.took = threading.Semaphore(0)

    def deliver(self, message: OutboundMessage) -> object:
        self.held.append(message)
        self.took.release()
        return PENDING


def test_a_pending_message_counts_as_queued_until_settled_and_as_shutdown_if_never() -> None:
    out = Deferred()
    out.start()
    for seq in range(1, 5):
        out.submit(verdict(seq))
    for _ in range(4):
        assert out.took.acquire(timeout=30)
    assert out.stats()["queued"] == 4 and out.stats()["delivered"] == 0
    out.settle_pending(None)  # the peer acknowledged one
    out.settle_pending("overrun")  # and one was dropped from its buffer
    stats = out.stats()
    assert (stats["delivered"], stats["undelivered"], stats["queued"]) == (1, {"overrun": 1}, 2)
    assert out.close(timeout=0.0) == 2  # the two still pending at the deadline
    out.settle_pending(None)  # too late: not counted twice
    stats = out.stats()
    assert (stats["delivered"], stats["undelivered"], stats["queued"]) == (1, {"overrun": 1, "shutdown": 2}, 0)
