"""The disk outbox: every message for the plant's broker is on disk before it counts as handed over.

A broker client's in-memory queue loses what was published while the broker was away (paho-mqtt
2.2 drops QoS 1 messages published while disconnected) and everything at ``kill -9`` or a power
cut. So the publishing thread appends each message here (SQLite in WAL mode, ``synchronous=FULL``
by default: the WAL is fsynced before :meth:`Outbox.append` returns) and the sender deletes a row
only when the broker acknowledged it. Deletes run with ``synchronous=NORMAL`` on the sender's own
connection: a delete lost to a power cut only means the message is sent once more (consumers
de-duplicate), never that one is lost.

The outbox is bounded by bytes and by age (:meth:`Outbox.enforce_bounds`, run by the output's own
thread, never the publishing thread); past a bound the oldest rows are deleted and counted under
``outbox_full`` or ``expired`` in the ``meta`` table, which also keeps the running row and byte
totals (kept by triggers) and the ``delivered`` count, so any process (the daemon, the bridge,
``stats()``) reads the same figures. A file that SQLite cannot read is moved aside with one log
line and a fresh one is created: a corrupt outbox must not keep a station from inspecting.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 2000
SyncMode = Literal["full", "normal"]
COUNTERS = ("rows", "bytes", "delivered", "dropped:outbox_full", "dropped:expired", "sender_seen", "sender_connected")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    t REAL NOT NULL,
    body BLOB NOT NULL,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v REAL NOT NULL);
CREATE TRIGGER IF NOT EXISTS outbox_added AFTER INSERT ON outbox BEGIN
    UPDATE meta SET v = v + 1 WHERE k = 'rows';
    UPDATE meta SET v = v + NEW.size WHERE k = 'bytes';
END;
CREATE TRIGGER IF NOT EXISTS outbox_removed AFTER DELETE ON outbox BEGIN
    UPDATE meta SET v = v - 1 WHERE k = 'rows';
    UPDATE meta SET v = v - OLD.size WHERE k = 'bytes';
END;
"""


class OutboxError(Exception):
    """The outbox cannot be opened or written (folder not writable, disk full); the message says which file."""


@dataclass(frozen=True)
class Row:
    """One message waiting in the outbox: its id (order of appending), kind, append time and JSON body."""

    id: int
    kind: str
    t: float
    body: bytes


def _connect(path: Path, sync: SyncMode) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {sync.upper()}")
    return conn


def _check(path: Path) -> None:
    """Raise sqlite3.DatabaseError if ``path`` is not a usable outbox."""
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    try:
        result = conn.execute("PRAGMA quick_check").fetchone()
        if result is None or result[0] != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {result[0] if result else 'no answer'}")
    finally:
        conn.close()


def move_aside(path: Path, reason: str) -> Path:
    """Rename a corrupt outbox (and its -wal/-shm) to ``NAME.corrupt-<time>``; the new name."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        try:
            source.rename(target.with_name(target.name + suffix))
        except FileNotFoundError:
            continue
    log.warning("outbox %s is corrupt (%s): moved aside to %s, starting with an empty outbox", path, reason, target)
    return target


class Outbox:
    """One SQLite outbox file; one connection per role (``append``, ``send``), each used by one thread."""

    def __init__(self, path: Path, sync: SyncMode = "full", role: Literal["append", "send"] = "append") -> None:
        self.path = Path(path)
        self.role = role
        self.moved_aside: Path | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutboxError(f"{self.path.parent}: cannot create the outbox folder ({exc.strerror or exc})") from None
        if self.path.exists():
            try:
                _check(self.path)
            except sqlite3.DatabaseError as exc:
                self.moved_aside = move_aside(self.path, str(exc))
        try:
            self._conn = _connect(self.path, sync if role == "append" else "normal")
            with self._conn:
                self._conn.executescript(_SCHEMA)
                self._conn.executemany("INSERT OR IGNORE INTO meta (k, v) VALUES (?, 0)", [(k,) for k in COUNTERS])
        except sqlite3.DatabaseError as exc:
            raise OutboxError(f"{self.path}: cannot open the outbox ({exc})") from None
        self._lock = threading.Lock()  # stats() may be read from another thread than the owner's

    # ------------------------------------------------------------------ the publishing side

    def append(self, kind: str, body: bytes) -> int:
        """Store one message durably (per the sync mode) and return its id; OutboxError if it cannot."""
        try:
            with self._lock:
                cursor = self._conn.execute("INSERT INTO outbox (kind, t, body, size) VALUES (?, ?, ?, ?)",
                                            (kind, time.time(), body, len(body)))
        except sqlite3.Error as exc:
            raise OutboxError(f"{self.path}: append failed ({exc})") from None
        return int(cursor.lastrowid or 0)

    # ------------------------------------------------------------------ the sending side

    def max_id(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT MAX(id) FROM outbox").fetchone()
        return int(row[0] or 0)

    def rows_after(self, after: int, limit: int, up_to: int | None = None) -> list[Row]:
        """Up to ``limit`` rows with ``after < id`` (``<= up_to`` when given), oldest first."""
        if limit <= 0:
            return []
        query = "SELECT id, kind, t, body FROM outbox WHERE id > ?"
        args: tuple[int, ...] = (after,)
        if up_to is not None:
            query += " AND id <= ?"
            args = (after, up_to)
        with self._lock:
            found = self._conn.execute(query + " ORDER BY id LIMIT ?", (*args, limit)).fetchall()
        return [Row(int(i), str(k), float(t), bytes(b)) for i, k, t, b in found]

    def acknowledge(self, ids: Sequence[int]) -> int:
        """Delete acknowledged rows and count them delivered; how many were still there."""
        if not ids:
            return 0
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                deleted = 0
                for chunk in _chunks(ids, 500):
                    marks = ",".join("?" * len(chunk))
                    deleted += self._conn.execute(f"DELETE FROM outbox WHERE id IN ({marks})", chunk).rowcount
                self._conn.execute("UPDATE meta SET v = v + ? WHERE k = 'delivered'", (deleted,))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return deleted

    def mark_sender(self, connected: bool) -> None:
        """The sender says it is alive (and whether it is connected): read by the daemon in bridge mode."""
        with self._lock:
            self._conn.execute("UPDATE meta SET v = ? WHERE k = 'sender_seen'", (time.time(),))
            self._conn.execute("UPDATE meta SET v = ? WHERE k = 'sender_connected'", (1.0 if connected else 0.0,))

    # ------------------------------------------------------------------ housekeeping (the output's own thread)

    def enforce_bounds(self, max_bytes: int, max_age_s: float) -> dict[str, int]:
        """Delete the oldest rows past the age bound, then past the byte bound; {reason: n} deleted and counted."""
        dropped: dict[str, int] = {}
        with self._lock:
            cutoff = time.time() - max_age_s
            oldest = self._conn.execute("SELECT t FROM outbox ORDER BY id LIMIT 1").fetchone()
            if oldest is not None and oldest[0] < cutoff:
                ids = [r[0] for r in self._conn.execute("SELECT id FROM outbox WHERE t < ? ORDER BY id", (cutoff,))]
                dropped["expired"] = self._drop(ids, "expired")
            excess = self._counter("bytes") - max_bytes
            if excess > 0:
                ids, total = [], 0
                for row_id, size in self._conn.execute("SELECT id, size FROM outbox ORDER BY id"):
                    ids.append(row_id)
                    total += size
                    if total >= excess:
                        break
                dropped["outbox_full"] = self._drop(ids, "outbox_full")
        for reason, n in dropped.items():
            if n:
                log.warning("outbox %s: dropped the %d oldest message(s) (%s)", self.path.name, n, reason)
        return {reason: n for reason, n in dropped.items() if n}

    def _drop(self, ids: list[int], reason: str) -> int:
        """Delete ``ids`` and count them under ``dropped:<reason>`` in one transaction (lock held)."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            n = 0
            for chunk in _chunks(ids, 500):
                n += self._conn.execute(f"DELETE FROM outbox WHERE id IN ({','.join('?' * len(chunk))})",
                                        chunk).rowcount
            self._conn.execute("UPDATE meta SET v = v + ? WHERE k = ?", (n, f"dropped:{reason}"))
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        return n

    def checkpoint(self) -> None:
        """Fold the WAL into the database without waiting for readers (keeps the WAL file small)."""
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    # ------------------------------------------------------------------ figures

    def counters(self) -> dict[str, float]:
        """``rows``, ``bytes``, ``delivered``, ``dropped:<reason>``, ``sender_seen``, ``sender_connected``."""
        with self._lock:
            return {str(k): float(v) for k, v in self._conn.execute("SELECT k, v FROM meta")}

    def _counter(self, name: str) -> float:
        row = self._conn.execute("SELECT v FROM meta WHERE k = ?", (name,)).fetchone()
        return float(row[0]) if row else 0.0

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _chunks(items: Sequence[int] | Iterable[int], size: int) -> Iterable[list[int]]:
    batch: list[int] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
