"""The verdict message: what the PLC/MES bridge receives for every frame, and how to read it back.

One module owns both directions so the publisher and every consumer (our ``subscribe`` command,
a bridge, a test) agree on the bytes. A verdict is published for every frame the camera delivers,
including frames that could not be inspected: those are NG (fail-safe) with ``error`` set, because
on a production line a part nobody looked at must not pass.

Wire format (ZeroMQ multipart, PUB/SUB)::

    frame 0  topic    b"verdict.<station>"   (subscribe to b"verdict." for all stations)
    frame 1  payload  UTF-8 JSON object, below
    frame 2  map      optional: anomaly map as an 8-bit PNG (only when publish.send_map is on
                      and the frame was inspected; then "has_map" is true)
    next     image    optional: the frame itself as a JPEG, longest side at most
                      publish.image_max_side (only when publish.send_image is on and the frame
                      had an image; then "has_image" is true). It is frame 3 after a map, else
                      frame 2: the attachments follow the payload in this order, each present
                      only when its flag says so, so a reader counts 2 + has_map + has_image.

Payload, schema version 1 (``VERDICT_SCHEMA_VERSION``)::

    schema            int     1; bumped on any incompatible change (consumers must check it)
    station           str     station name, same as in the topic
    seq               int     +1 per published verdict of this station. Persisted in the state
                              directory (edge/daemon/sequence.py), so it continues across reloads
                              and restarts, crashes included; it starts at 1 only without a state
                              directory. A jump means verdicts were lost, except on a verdict with
                              restart true (numbers reserved by a run that did not stop cleanly)
    frame_id          int     camera's frame counter (from 1)
    device_frame_id   int     the producer's own frame id (GenTL cameras); null where there is none.
                              A jump larger than 1 means images the camera made were not inspected
                              (pipeline behind with buffer_handling newest, or lost on the link)
    source            str     where the frame came from (file path for the sim camera)
    t_capture         float   epoch seconds when the frame was captured (host clock)
    timestamp_ns      int     the image's timestamp in ns: the camera's own buffer timestamp when
                              the device gives one, else t_capture in epoch ns
    timestamp_clock   str     "device" (timestamp_ns is from the camera's clock: compare it only
                              with other timestamps of the same camera) or "host" (epoch ns)
    t_publish         float   epoch seconds when the verdict was handed to ZeroMQ
    verdict           str     "OK" or "NG"
    score             float   raw image anomaly score; null when the frame was not inspected
    normalized_score  float   score mapped to 0..1 by the bundle's normalisation (threshold_ratio:
                              0 at score 0, 0.5 at the image threshold, 1 at twice it); null
                              when not inspected
    threshold         float   image threshold the score was compared with; null when not inspected
    pixel_threshold   float   pixel threshold used to find regions; null when not inspected
    regions           list    [{x, y, w, h, area, peak}] NG regions in original image pixels
                              (x, y, w, h, area int; peak float); [] when none
    error             str     null, or why the frame was not inspected: "decode: ..." (unreadable
                              image) or "inference: ..." (the model failed); verdict is then "NG"
    bundle_id         str     id of the model bundle that decided
    latency_ms        object  decode, preprocess, inference, postprocess, publish, total (float ms);
                              stages not run are 0; total = (t_publish - t_capture) * 1000
    counters          object  frames (frames received from the camera so far, counting those it
                              discarded), verdicts (verdicts published so far, this one included),
                              errors (error verdicts so far), dropped (frames that got no verdict so
                              far) and drops ({reason: n}: queue_full, incomplete_buffer, shutdown):
                              the same shape as in heartbeats and the stopped event.
                              frames = verdicts published + dropped, always; a frame dropped between
                              two verdicts shows in the next one
    has_map           bool    whether frame 2 (anomaly map PNG) follows
    has_image         bool    whether the frame's JPEG follows (after the map, if any)
    image_width       int     width and height in pixels of the frame as the camera delivered
    image_height      int     it, the space the regions are in (the JPEG may be smaller); null
                              when the frame had no image
    run_id            str     changes at every start of the daemon (not at a reload)
    restart           bool    true on the first verdict of a run: a seq jump before it means numbers
                              left unused by an unclean stop, not verdicts lost
    part_id           int     the part id the frame's trigger carried (a PLC trigger, or the trigger
                              control command with part_id); null in free run or without one

``device_frame_id``, ``timestamp_ns``, ``timestamp_clock``, ``run_id``, ``restart``, ``part_id``,
``has_image``, ``image_width``, ``image_height`` and the ``dropped``/``drops`` counters were added
within schema 1 (fields are only ever added
within a version): a reader must accept verdicts that lack them, and fields it does not know.
The payload is :class:`edge.wire.schema.Verdict`: :func:`build_verdict` makes it through that model
and :func:`parse_verdict` checks received ones against it (JSON Schema: ``docs/schemas/``).

Example::

    {"schema": 1, "station": "station1", "seq": 42, "frame_id": 42, "device_frame_id": null,
     "source": "/data/imgs/000042.png", "t_capture": 1732250000.123, "timestamp_ns": 1732250000123000000,
     "timestamp_clock": "host", "t_publish": 1732250000.171,
     "verdict": "NG", "score": 3.81, "normalized_score": 0.635, "threshold": 3.0,
     "pixel_threshold": 2.6, "regions": [{"x": 120, "y": 88, "w": 40, "h": 22, "area": 610,
     "peak": 4.2}], "error": null, "bundle_id": "bottle-2024-11-20-ab12cd34",
     "latency_ms": {"decode": 2.1, "preprocess": 1.5, "inference": 38.0, "postprocess": 2.2,
     "publish": 0.3, "total": 48.0}, "counters": {"frames": 42, "verdicts": 42, "errors": 0, "dropped": 0,
     "drops": {}},
     "has_map": false, "has_image": false, "image_width": 900, "image_height": 900,
     "run_id": "3f9a1c2b7d10", "restart": false, "part_id": null}
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from edge.wire.schema import (
    SCHEMA_VERSION,
    VERDICT_ADDED_FIELDS,
    VERDICT_REQUIRED_FIELDS,
    Latency,
    Verdict,
    describe_error,
    dump,
)

if TYPE_CHECKING:
    from edge.cameras.base import Frame
    from edge.model.inspector import Inspection

VERDICT_SCHEMA_VERSION = SCHEMA_VERSION
TOPIC_PREFIX = "verdict."
LATENCY_KEYS = tuple(Latency.model_fields)
REQUIRED_FIELDS = VERDICT_REQUIRED_FIELDS
ADDED_FIELDS = VERDICT_ADDED_FIELDS


class VerdictError(ValueError):
    """A received message is not a verdict this code can read."""


@dataclass
class ReceivedVerdict:
    """A parsed verdict: the topic, the JSON payload (as received), the optional map PNG and frame JPEG."""

    topic: str
    message: dict[str, Any]
    map_png: bytes | None = None
    image_jpeg: bytes | None = None


def topic_for(station: str) -> bytes:
    """The ZeroMQ topic frame for ``station``."""
    return (TOPIC_PREFIX + station).encode("utf-8")


def _num(value: Any) -> float | None:
    """JSON has no NaN/inf: a non-finite or missing number is published as null."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def build_verdict(
    *,
    station: str,
    seq: int,
    frame: Frame,
    bundle_id: str,
    counters: dict[str, Any],
    inspection: Inspection | None = None,
    error: str | None = None,
    has_map: bool = False,
    has_image: bool = False,
    run_id: str | None = None,
    restart: bool = False,
) -> dict[str, Any]:
    """The payload for one frame: from ``inspection``, or a fail-safe NG when ``error`` is given.

    Validated through :class:`~edge.wire.schema.Verdict` (about 12 us per verdict, against tens of
    ms of inference). ``t_publish`` and the publish/total latencies are provisional until
    :func:`encode_verdict` stamps them.
    """
    if (inspection is None) == (error is None):
        raise ValueError("build_verdict needs exactly one of inspection or error")
    latency = dict.fromkeys(LATENCY_KEYS, 0.0)
    latency["decode"] = round(float(frame.decode_ms), 3)
    if inspection is not None:
        for key in ("preprocess", "inference", "postprocess"):
            latency[key] = round(float(inspection.timings_ms.get(key, 0.0)), 3)
        verdict = str(inspection.verdict)
        score, normalized = _num(inspection.score), _num(inspection.normalized_score)
        threshold, pixel_threshold = _num(inspection.image_threshold), _num(inspection.pixel_threshold)
        regions = [_region(r) for r in inspection.regions]
    else:
        verdict, score, normalized, threshold, pixel_threshold, regions = "NG", None, None, None, None, []
    shape = getattr(frame.image, "shape", None)
    height, width = (int(shape[0]), int(shape[1])) if shape is not None and len(shape) >= 2 else (None, None)
    payload = {
        "schema": VERDICT_SCHEMA_VERSION,
        "station": station,
        "seq": int(seq),
        "frame_id": int(frame.frame_id),
        "device_frame_id": None if frame.device_frame_id is None else int(frame.device_frame_id),
        "source": frame.source,
        "t_capture": float(frame.t_capture),
        "timestamp_ns": int(frame.timestamp_ns) if frame.timestamp_ns is not None else round(frame.t_capture * 1e9),
        "timestamp_clock": frame.timestamp_clock if frame.timestamp_ns is not None else "host",
        "t_publish": time.time(),  # provisional: encode_verdict stamps the hand-over time
        "verdict": verdict,
        "score": score,
        "normalized_score": normalized,
        "threshold": threshold,
        "pixel_threshold": pixel_threshold,
        "regions": regions,
        "error": error,
        "bundle_id": bundle_id,
        "latency_ms": latency,
        "counters": _counters(counters),
        "has_map": bool(has_map and inspection is not None),
        "has_image": bool(has_image and width is not None),
        "image_width": width,
        "image_height": height,
        "run_id": run_id,
        "restart": bool(restart),
        "part_id": frame.part_id,
    }
    return dump(Verdict.model_validate(payload))


def _counters(counters: dict[str, Any]) -> dict[str, Any]:
    drops = {str(k): int(v) for k, v in dict(counters.get("drops") or {}).items()}
    return {"frames": int(counters.get("frames", 0)), "verdicts": int(counters.get("verdicts", 0)),
            "errors": int(counters.get("errors", 0)), "dropped": sum(drops.values()), "drops": drops}


def _region(region: Any) -> dict[str, Any]:
    return {
        "x": int(region.x), "y": int(region.y), "w": int(region.w), "h": int(region.h),
        "area": int(region.area), "peak": _num(region.peak),
    }


def encode_verdict(
    message: dict[str, Any], map_png: bytes | None = None, publish_start: float | None = None,
    image_jpeg: bytes | None = None,
) -> list[bytes]:
    """Stamp ``t_publish`` and the publish/total latencies, and return the multipart frames.

    ``publish_start`` is the ``time.perf_counter()`` reading taken when inspection finished, so
    ``latency_ms.publish`` covers map and image encoding and serialisation.
    """
    message["t_publish"] = time.time()
    latency = message["latency_ms"]
    if publish_start is not None:
        latency["publish"] = round((time.perf_counter() - publish_start) * 1000.0, 3)
    latency["total"] = round(max(0.0, message["t_publish"] - message["t_capture"]) * 1000.0, 3)
    parts = [topic_for(message["station"]), json.dumps(message, allow_nan=False).encode("utf-8")]
    for flag, attachment in (("has_map", map_png), ("has_image", image_jpeg)):
        if (attachment is not None) != bool(message.get(flag)):
            raise ValueError(f"{flag} is {bool(message.get(flag))} but the attachment was "
                             f"{'not ' if attachment is None else ''}given")
        if attachment is not None:
            parts.append(attachment)
    return parts


def parse_verdict(parts: list[bytes]) -> ReceivedVerdict:
    """Read multipart frames back into a :class:`ReceivedVerdict`; :class:`VerdictError` if malformed."""
    if len(parts) not in (2, 3, 4):
        raise VerdictError(f"expected 2 to 4 message frames, got {len(parts)}")
    try:
        topic = parts[0].decode("utf-8")
        message = json.loads(parts[1].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VerdictError(f"undecodable verdict: {exc}") from None
    if not topic.startswith(TOPIC_PREFIX):
        raise VerdictError(f"topic {topic!r} is not a verdict topic")
    if not isinstance(message, dict):
        raise VerdictError("verdict payload is not a JSON object")
    schema = message.get("schema")
    if not isinstance(schema, int) or schema > VERDICT_SCHEMA_VERSION or schema < 1:
        raise VerdictError(f"unsupported verdict schema {schema!r} (this reader knows {VERDICT_SCHEMA_VERSION})")
    try:
        Verdict.model_validate(message)
    except ValidationError as exc:
        raise VerdictError(f"invalid verdict: {describe_error(exc)}") from None
    if topic != TOPIC_PREFIX + str(message["station"]):
        raise VerdictError(f"topic {topic!r} does not match station {message['station']!r}")
    has_map, has_image = bool(message["has_map"]), bool(message.get("has_image", False))
    if len(parts) != 2 + has_map + has_image:
        raise VerdictError(f"has_map {has_map} and has_image {has_image} do not match the {len(parts)} message frames")
    attachments = iter(parts[2:])
    map_png = next(attachments) if has_map else None
    image_jpeg = next(attachments) if has_image else None
    return ReceivedVerdict(topic=topic, message=message, map_png=map_png, image_jpeg=image_jpeg)
