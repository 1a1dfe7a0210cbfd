"""Camera-status messages: what the PLC/MES hears while no verdicts can come.

When the camera is lost the line must know at once that parts are passing uninspected, not infer
it from silence. The daemon publishes a status message on topic ``status.<station>`` (a separate
topic, so a consumer that subscribed to ``verdict.`` is unaffected) when the camera goes down,
after each failed reconnect attempt, when it is back, and when the daemon gives up or stops.

Payload (UTF-8 JSON, schema 1)::

    schema        int     1
    station       str     station name, as in the topic
    t             float   epoch seconds
    camera        str     "up", "down" or "gave_up"
    reason        str     why (the camera error), null when up
    attempt       int     failed reconnect attempts in a row so far
    next_retry_s  float   delay before the next attempt, null when up or gave up
    stats         object  the camera's counters (frames, timeouts, incomplete, dropped, ...)
    verdicts      int     verdicts published so far (the last seq)
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Literal

log = logging.getLogger(__name__)

STATUS_SCHEMA_VERSION = 1
STATUS_TOPIC_PREFIX = "status."
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
    topic = (STATUS_TOPIC_PREFIX + str(message["station"])).encode("utf-8")
    return [topic, json.dumps(message, separators=(",", ":")).encode("utf-8")]


def parse_status(parts: list[bytes]) -> dict[str, Any]:
    """A received status message back to its payload; ValueError if it is not one."""
    if len(parts) != 2 or not parts[0].startswith(STATUS_TOPIC_PREFIX.encode()):
        raise ValueError("not a status message")
    message = json.loads(parts[1])
    if message.get("schema") != STATUS_SCHEMA_VERSION:
        raise ValueError(f"unknown status schema {message.get('schema')!r}")
    return dict(message)
