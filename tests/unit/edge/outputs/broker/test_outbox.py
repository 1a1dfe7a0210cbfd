"""The outbox keeps what was appended until it is acknowledged, within its bounds, counting every drop.

Real SQLite files in a temporary folder; the crash test appends from a real subprocess and kills
it with SIGKILL, then checks that every append that had returned is in the file.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from edge.outputs.broker.outbox import Outbox
from edge.outputs.broker.output import encode_body
from edge.outputs.broker.sender import mark_replay
from edge.tools.harness import daemon_env


def body(n: int, size: int = 0) -> bytes:
    return encode_body({"seq": n, "pad": "x" * size}, "run1", n)


def test_rows_come_back_in_order_and_leave_only_when_acknowledged(tmp_path: Path) -> None:
    writer = Outbox(tmp_path / "o.sqlite")
    reader = Outbox(tmp_path / "o.sqlite", role="send")
    ids = [writer.append("verdict", body(n)) for n in range(1, 6)]
    assert [row.id for row in reader.rows_after(0, 10)] == ids
    assert [row.id for row in reader.rows_after(ids[1], 2)] == ids[2:4]
    assert [row.id for row in reader.rows_after(0, 10, up_to=ids[2])] == ids[:3]
    assert reader.acknowledge([ids[0], ids[2], 999]) == 2  # an id already gone counts nothing
    assert [row.id for row in reader.rows_after(0, 10)] == [ids[1], ids[3], ids[4]]
    counters = writer.counters()
    assert counters["rows"] == 3 and counters["delivered"] == 2
    assert counters["bytes"] == sum(len(body(n)) for n in (2, 4, 5))


def test_past_the_byte_bound_the_oldest_are_dropped_and_counted(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite")
    sizes = [len(body(n, 1000)) for n in range(10)]
    ids = [outbox.append("verdict", body(n, 1000)) for n in range(10)]
    dropped = outbox.enforce_bounds(max_bytes=sum(sizes[:4]), max_age_s=3600)
    assert dropped == {"outbox_full": 6}
    assert [row.id for row in outbox.rows_after(0, 100)] == ids[6:]  # the newest four are kept
    assert outbox.counters()["dropped:outbox_full"] == 6 and outbox.counters()["rows"] == 4


def test_past_the_age_bound_old_messages_are_dropped_as_expired(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite")
    old = [outbox.append("event", body(n)) for n in range(3)]
    fresh = outbox.append("event", body(3))
    with sqlite3.connect(tmp_path / "o.sqlite") as conn:  # the first three were appended two hours ago
        conn.execute("UPDATE outbox SET t = t - 7200 WHERE id <= ?", (old[-1],))
    assert outbox.enforce_bounds(max_bytes=10**9, max_age_s=3600) == {"expired": 3}
    assert [row.id for row in outbox.rows_after(0, 10)] == [fresh] and old[-1] < fresh
    assert outbox.counters()["dropped:expired"] == 3


def test_a_corrupt_file_is_moved_aside_and_a_fresh_outbox_starts(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    path.write_bytes(b"this is not an sqlite database" * 100)
    outbox = Outbox(path)
    assert outbox.moved_aside is not None and outbox.moved_aside.read_bytes().startswith(b"this is not")
    assert outbox.append("verdict", body(1)) == 1 and outbox.counters()["rows"] == 1


def test_the_body_is_json_with_a_delivery_key_and_the_replay_mark_flips_only_that(tmp_path: Path) -> None:
    raw = encode_body({"station": "s1", "seq": 7, "note": '"replay":false'}, "abc", 42)
    first = json.loads(raw)
    assert first["delivery"] == {"run_id": "abc", "n": 42, "replay": False} and first["note"] == '"replay":false'
    again = json.loads(mark_replay(raw))
    assert again["delivery"]["replay"] is True and again["note"] == '"replay":false'
    assert json.loads(encode_body({}, "r", 1)) == {"delivery": {"run_id": "r", "n": 1, "replay": False}}


APPENDER = """
import sys
from pathlib import Path
from edge.outputs.broker.outbox import Outbox
outbox = Outbox(Path(sys.argv[1]), sync="full")
n = 0
while True:
    n += 1
    row = outbox.append("verdict", b'{"n":%d}' % n)
    print(row, flush=True)
"""


def test_every_append_that_returned_survives_kill_9_of_the_appending_process(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", APPENDER, str(path)], stdout=subprocess.PIPE, env=daemon_env(),
                            text=True)
    assert proc.stdout is not None
    returned = []
    try:
        for line in proc.stdout:
            returned.append(int(line))
            if len(returned) == 200:
                break
    finally:
        proc.kill()
        proc.wait(30)
    assert len(returned) == 200
    stored = {row.id for row in Outbox(path, role="send").rows_after(0, 100_000)}
    assert set(returned) <= stored
