"""Output link changes become status messages only once they hold: a PLC flapping per poll is not a stream."""

from __future__ import annotations

from typing import Any

from edge.daemon.announce import Announcer
from edge.daemon.outputlinks import OutputLinks
from edge.daemon.pipeline import Accounting
from edge.daemon.sequence import SequenceCounter
from edge.wire.schema import Status


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def stats(connected: bool, error: str | None = None) -> dict[str, dict[str, Any]]:
    return {"plc_modbus": {"delivered": 3, "undelivered": {}, "queued": 0, "connected": connected,
                           "last_error": error}}


def links(state: dict[str, Any], clock: Clock) -> OutputLinks:
    import queue

    announce = Announcer(queue.Queue(), "st1", SequenceCounter(None), Accounting(), lambda: False)
    return OutputLinks(lambda: state["now"], announce.output_link, lambda: True, lambda: {"frames": 7},
                       hold_s=1.0, poll_every_s=0.0, clock=clock)


def test_a_link_lost_for_longer_than_the_hold_is_one_status_message_and_its_return_another() -> None:
    clock, state = Clock(), {"now": stats(True)}
    watch = links(state, clock)
    assert watch.poll() is None  # connected from the start: not news
    state["now"] = stats(False, "ConnectionError: cannot connect to 10.0.0.5:502")
    assert watch.poll() is None  # not held yet
    clock.now += 0.5
    assert watch.poll() is None
    clock.now += 0.6
    lost = watch.poll()
    assert lost is not None and Status.model_validate(lost)
    assert lost["reason"] == "output plc_modbus disconnected: ConnectionError: cannot connect to 10.0.0.5:502"
    assert lost["subject"] == "output" and lost["camera"] == "up" and lost["stats"] == {"frames": 7}
    assert not lost["outputs"]["plc_modbus"]["connected"]
    clock.now += 5
    assert watch.poll() is None  # still down: said once
    state["now"] = stats(True)
    assert watch.poll() is None
    clock.now += 1.0
    back = watch.poll()
    assert back is not None and back["reason"] == "output plc_modbus connected"


def test_a_link_that_flaps_faster_than_the_hold_says_nothing() -> None:
    clock, state = Clock(), {"now": stats(True)}
    watch = links(state, clock)
    watch.poll()
    for _ in range(20):
        state["now"] = stats(False, "the PLC closed its connection")
        clock.now += 0.4
        assert watch.poll() is None
        state["now"] = stats(True)
        clock.now += 0.4
        assert watch.poll() is None


def test_an_output_that_has_not_reached_its_peer_a_second_after_start_is_reported_disconnected() -> None:
    clock, state = Clock(), {"now": stats(False, "ConnectionError: cannot connect to 10.0.0.5:502")}
    watch = links(state, clock)
    assert watch.poll() is None
    state["now"] = stats(True)  # connected within the second: nothing to say
    clock.now += 0.8
    assert watch.poll() is None
    state["now"] = stats(False, "ConnectionError: cannot connect to 10.0.0.5:502")
    clock.now += 0.1
    assert watch.poll() is None
    clock.now += 1.0
    late = watch.poll()
    assert late is not None and late["reason"].startswith("output plc_modbus disconnected")
