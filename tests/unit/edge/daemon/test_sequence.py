"""The verdict sequence counter: continues after a clean stop, jumps past the reservation after a crash."""

from __future__ import annotations

import json

import pytest

from edge.daemon.sequence import STATE_FILE, SequenceCounter, SequenceError


def test_without_a_state_dir_every_run_starts_at_one():
    counter = SequenceCounter(None)
    assert counter.open() == 1 and [counter.next() for _ in range(3)] == [1, 2, 3] and counter.last == 3
    counter.close()
    assert SequenceCounter(None).open() == 1


def test_a_clean_stop_lets_the_next_run_continue_exactly(tmp_path):
    first = SequenceCounter(tmp_path, reserve=10)
    first.open()
    assert [first.next() for _ in range(25)] == list(range(1, 26))
    first.close()
    second = SequenceCounter(tmp_path, reserve=10)
    assert second.open() == 26 and second.previous_clean is True and second.next() == 26


def test_after_a_crash_the_next_run_starts_above_every_number_that_may_have_been_published(tmp_path):
    first = SequenceCounter(tmp_path, reserve=10)
    first.open()
    issued = [first.next() for _ in range(25)]  # no close(): the process died
    second = SequenceCounter(tmp_path, reserve=10)
    start = second.open()
    assert second.previous_clean is False and start > max(issued) and start <= max(issued) + 10
    assert second.run_id != first.run_id


def test_the_state_file_is_written_once_per_block_not_per_verdict(tmp_path):
    counter = SequenceCounter(tmp_path, reserve=100)
    counter.open()
    path = tmp_path / STATE_FILE
    before = path.stat().st_mtime_ns, json.loads(path.read_text())
    for _ in range(99):
        counter.next()
    assert (path.stat().st_mtime_ns, json.loads(path.read_text())) == before
    counter.next()  # the 100th number ends the first block
    assert json.loads(path.read_text())["next_seq"] == 201


def test_closing_a_counter_that_never_opened_leaves_the_state_alone(tmp_path):
    counter = SequenceCounter(tmp_path)
    counter.open()
    counter.next()
    counter.close()
    SequenceCounter(tmp_path).close()  # e.g. the daemon failed before opening it
    assert SequenceCounter(tmp_path).open() == 2


def test_an_unreadable_state_file_is_an_error_naming_it(tmp_path):
    (tmp_path / STATE_FILE).write_text("{not json")
    with pytest.raises(SequenceError, match=STATE_FILE):
        SequenceCounter(tmp_path).open()


def test_without_a_state_dir_the_start_says_once_that_seq_will_not_survive_a_restart(caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="edge.daemon.sequence"):
        SequenceCounter(None).open()
    assert [r.getMessage() for r in caplog.records] == [
        ("no state_dir: verdict seq starts at 1 and will not survive a restart (set state_dir, or run under "
         "systemd with StateDirectory=)")]
