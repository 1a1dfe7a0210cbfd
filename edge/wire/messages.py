"""Messages other than verdicts: camera status, heartbeats and events.

Each has its own topic, so a consumer that subscribed to ``verdict.`` is unaffected, and each is
UTF-8 JSON with ``schema`` 1.

``status.<station>``: when the camera is lost the line must know at once that parts are passing
uninspected, not infer it from silence. Published when the camera goes down, after each failed
reconnect attempt, when it is back, and when the daemon gives up::

    schema        int     1
    station       str     station name, as in the topic
    t             float   epoch seconds
    camera        str     "up", "down" or "gave_up"
    reason        str     why (the camera error), null when up
    attempt       int     failed reconnect attempts in a row so far
    next_retry_s  float   delay before the next attempt, null when up or gave up
    stats         object  the camera's counters (frames, timeouts, incomplete, dropped, ...)
    verdicts      int     verdicts published so far in this run

``heartbeat.<station>``: sent when nothing else was published for ``publish.heartbeat_s``, so a
subscriber can tell "no parts" (heartbeats, no verdicts) from "daemon dead" (nothing)::

    schema, station, t    as above
    run_id        str     changes at every start of the daemon
    restart       bool    true on the first message of a run
    last_seq      int     the last verdict seq published (0 before any)
    state         str     "running" or "paused"
    camera        str     "up" or "down"
    bundle_id     str     the bundle deciding now
    counters      object  frames, verdicts, errors, dropped, drops {reason: n} (the verdict's shape)

``event.<station>``: things an operator should see on the line's dashboard, e.g. a reload::

    schema, station, t, run_id   as above
    event         str     "started", "reload", "reload_refused" or "stopped"
    detail        object  event-specific: started: bundle_id, previous_stop_clean; reload: bundle_id,
                          previous_bundle_id, selftest, needs_restart; reload_refused: reason;
                          stopped (the last message of a run): counters, last_seq, balanced,
                          failure, latency_ms
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Literal

log = logging.getLogger(__name__)

STATUS_SCHEMA_VERSION = 1
STATUS_TOPIC_PREFIX = "status."
HEARTBEAT_TOPIC_PREFIX = "heartbeat."
EVENT_TOPIC_PREFIX = "event."
CameraState = Literal["up", "down", "gave_up"]


def build_status(
    *,
    station: str,
    camera: CameraState,
    reason: str | None,
    attempt: int,
    next_retry_s: float | None,
    stats: dict[str, int],
    verdicts: int,
) -> dict[str, Any]:
    """The status payload (see the module docstring)."""
    return {
        "schema": STATUS_SCHEMA_VERSION, "station": station, "t": time.time(), "camera": camera,
        "reason": reason, "attempt": int(attempt), "next_retry_s": next_retry_s, "stats": dict(stats),
        "verdicts": int(verdicts),
    }


def encode_status(message: dict[str, Any]) -> list[bytes]:
    """Topic and payload frames for the publisher."""
    return encode_message(STATUS_TOPIC_PREFIX, message)


def parse_status(parts: list[bytes]) -> dict[str, Any]:
    """A received status message back to its payload; ValueError if it is not one."""
    if len(parts) != 2 or not parts[0].startswith(STATUS_TOPIC_PREFIX.encode()):
        raise ValueError("not a status message")
    message = json.loads(parts[1])
    if message.get("schema") != STATUS_SCHEMA_VERSION:
        raise ValueError(f"unknown status schema {message.get('schema')!r}")
    return dict(message)


def build_heartbeat(
    *, station: str, run_id: str, restart: bool, last_seq: int, paused: bool, camera_up: bool, bundle_id: str,
    counters: dict[str, Any],
) -> dict[str, Any]:
    """The heartbeat payload (see the module docstring)."""
    return {
        "schema": STATUS_SCHEMA_VERSION, "station": station, "t": time.time(), "run_id": run_id,
        "restart": bool(restart), "last_seq": int(last_seq), "state": "paused" if paused else "running",
        "camera": "up" if camera_up else "down", "bundle_id": bundle_id, "counters": counters,
    }


def build_event(*, station: str, run_id: str, event: str, detail: dict[str, Any]) -> dict[str, Any]:
    """An event payload (see the module docstring)."""
    return {"schema": STATUS_SCHEMA_VERSION, "station": station, "t": time.time(), "run_id": run_id,
            "event": event, "detail": detail}


def encode_message(prefix: str, message: dict[str, Any]) -> list[bytes]:
    """Topic ``prefix + station`` and the JSON payload, for any of the non-verdict messages."""
    topic = (prefix + str(message["station"])).encode("utf-8")
    return [topic, json.dumps(message, separators=(",", ":")).encode("utf-8")]
