"""Messages other than verdicts: camera status, heartbeats and events.

Each has its own topic, so a consumer that subscribed to ``verdict.`` is unaffected, and each is
UTF-8 JSON with ``schema`` 1. The payloads are the models of :mod:`edge.wire.schema` (the
builders below validate through them; JSON Schema in ``docs/schemas/``); as for verdicts, fields
are only ever added within a version, so a reader must accept fields it does not know.

``status.<station>``: when the camera is lost the line must know at once that parts are passing
uninspected, not infer it from silence. Published when the camera goes down, after each failed
reconnect attempt, when it is back, and when the daemon gives up; also when error verdicts come
``watchdog.error_frames_alarm`` times in a row (a deleted source folder, a failing camera) and
when that streak ends::

    schema        int     1
    station       str     station name, as in the topic
    t             float   epoch seconds
    camera        str     "up", "down" or "gave_up"
    reason        str     why (the camera error), null when up
    attempt       int     failed reconnect attempts in a row so far
    next_retry_s  float   delay before the next attempt, null when up or gave up
    stats         object  the camera's counters (frames, timeouts, incomplete, dropped, ...)
    verdicts      int     verdicts published so far in this run
    error_frames_in_row int  error verdicts in a row (0 when the streak ended, and in camera messages)
    subject       str     "camera", "errors" (the streak) or "output" (a link): what reason is about
    outputs       object  each output's accounting, as in the heartbeat; a status also goes out when an
                          output's link to its peer (PLC, broker) is lost or back (reason names it)

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
    outputs       object  {name: {delivered, undelivered {reason: n}, queued, connected, last_error}}
                          for each enabled output beside the publisher (PLC, broker); {} when none

``event.<station>``: things an operator should see on the line's dashboard, e.g. a reload::

    schema, station, t, run_id   as above
    event         str     "started", "reload", "reload_refused" or "stopped"
    detail        object  event-specific: started: bundle_id, previous_stop_clean; reload: bundle_id,
                          previous_bundle_id, source, selftest, needs_restart; reload_refused:
                          reason, source, bundle_id; stopped (the last message of a run):
                          counters, last_seq, balanced, failure, latency_ms, camera (reconnects,
                          stats: the camera's counters), outputs (as in the heartbeat)
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from edge.wire.schema import EVENT, SCHEMA_VERSION, Heartbeat, Status, dump

STATUS_SCHEMA_VERSION = SCHEMA_VERSION
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
    error_frames_in_row: int = 0,
    outputs: dict[str, Any] | None = None,
    subject: Literal["camera", "errors", "output"] = "camera",
) -> dict[str, Any]:
    """The status payload (see the module docstring), validated through :class:`~edge.wire.schema.Status`."""
    return dump(Status.model_validate({
        "schema": STATUS_SCHEMA_VERSION, "station": station, "t": time.time(), "camera": camera,
        "reason": reason, "attempt": int(attempt), "next_retry_s": next_retry_s, "stats": dict(stats),
        "verdicts": int(verdicts), "error_frames_in_row": int(error_frames_in_row), "outputs": outputs or {},
        "subject": subject,
    }))


def build_heartbeat(
    *, station: str, run_id: str, restart: bool, last_seq: int, paused: bool, camera_up: bool, bundle_id: str,
    counters: dict[str, Any], outputs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The heartbeat payload (see the module docstring), validated through :class:`~edge.wire.schema.Heartbeat`."""
    return dump(Heartbeat.model_validate({
        "schema": STATUS_SCHEMA_VERSION, "station": station, "t": time.time(), "run_id": run_id,
        "restart": bool(restart), "last_seq": int(last_seq), "state": "paused" if paused else "running",
        "camera": "up" if camera_up else "down", "bundle_id": bundle_id, "counters": counters,
        "outputs": outputs or {},
    }))


def build_event(*, station: str, run_id: str, event: str, detail: dict[str, Any]) -> dict[str, Any]:
    """An event payload (see the module docstring), validated through :data:`~edge.wire.schema.EVENT`."""
    return dump(EVENT.validate_python({"schema": STATUS_SCHEMA_VERSION, "station": station, "t": time.time(),
                                       "run_id": run_id, "event": event, "detail": detail}))


def encode_message(prefix: str, message: dict[str, Any]) -> list[bytes]:
    """Topic ``prefix + station`` and the JSON payload, for any of the non-verdict messages."""
    topic = (prefix + str(message["station"])).encode("utf-8")
    return [topic, json.dumps(message, separators=(",", ":")).encode("utf-8")]
