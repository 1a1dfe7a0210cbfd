"""Verdict messages carry every schema field, read back identically, and fail safe when not inspected."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.cameras import Frame
from edge.model.inspector import Inspection, Region
from edge.wire.verdict import (
    ADDED_FIELDS,
    LATENCY_KEYS,
    REQUIRED_FIELDS,
    VERDICT_SCHEMA_VERSION,
    VerdictError,
    build_verdict,
    encode_verdict,
    parse_verdict,
)

REPO = Path(__file__).resolve().parents[4]


def make_frame(**fields) -> Frame:
    values = {"image": np.zeros((20, 30), np.uint8), "frame_id": 7, "source": "/imgs/a.png",
              "t_capture": time.time() - 0.05, "decode_ms": 1.25}
    values.update(fields)
    return Frame(**values)


def make_inspection(score: float = 3.5) -> Inspection:
    return Inspection(
        score=score, normalized_score=0.6, verdict="NG", image_threshold=3.0, pixel_threshold=2.5,
        regions=[Region(x=np.int64(4), y=5, w=6, h=7, area=30, peak=np.float32(4.25))],
        anomaly_map=np.linspace(0, 5, 64, dtype=np.float32).reshape(8, 8),
        timings_ms={"preprocess": 1.0, "inference": 20.0, "postprocess": 0.5},
    )


def verdict_for(inspection=None, error=None, **kwargs):
    args = {"station": "line3", "seq": 12, "frame": make_frame(), "bundle_id": "bottle-1",
            "counters": {"frames": 12, "verdicts": 11, "errors": 1}, "inspection": inspection, "error": error}
    args.update(kwargs)
    return build_verdict(**args)


def test_payload_has_every_schema_field_with_json_types():
    parts = encode_verdict(verdict_for(make_inspection()), publish_start=time.perf_counter())
    assert parts[0] == b"verdict.line3"
    payload = json.loads(parts[1])
    assert set(payload) == set(REQUIRED_FIELDS) | set(ADDED_FIELDS)
    assert payload["schema"] == VERDICT_SCHEMA_VERSION == 1
    assert (payload["station"], payload["seq"], payload["frame_id"]) == ("line3", 12, 7)
    assert payload["source"] == "/imgs/a.png" and payload["bundle_id"] == "bottle-1"
    assert payload["verdict"] == "NG" and payload["error"] is None
    assert (payload["score"], payload["normalized_score"]) == (3.5, pytest.approx(0.6))
    assert (payload["threshold"], payload["pixel_threshold"]) == (3.0, 2.5)
    assert payload["regions"] == [{"x": 4, "y": 5, "w": 6, "h": 7, "area": 30, "peak": 4.25}]
    assert payload["counters"] == {"frames": 12, "verdicts": 11, "errors": 1, "dropped": 0, "drops": {}}
    assert payload["has_map"] is False
    assert payload["device_frame_id"] is None and payload["timestamp_clock"] == "host"
    assert payload["timestamp_ns"] == round(payload["t_capture"] * 1e9)


def test_device_frame_id_and_device_timestamp_travel_in_the_verdict():
    frame = make_frame(device_frame_id=1041, timestamp_ns=987_654_321_000, timestamp_clock="device")
    parts = encode_verdict(verdict_for(make_inspection(), frame=frame))
    message = parse_verdict(parts).message
    assert (message["frame_id"], message["device_frame_id"]) == (7, 1041)
    assert (message["timestamp_ns"], message["timestamp_clock"]) == (987_654_321_000, "device")
    error_verdict = verdict_for(error="decode: incomplete buffer", frame=frame)
    assert (error_verdict["device_frame_id"], error_verdict["timestamp_clock"]) == (1041, "device")


def test_verdict_from_a_sender_without_the_added_fields_still_parses():
    parts = encode_verdict(verdict_for(make_inspection()))
    parts[1] = edited(parts[1], **dict.fromkeys(ADDED_FIELDS))
    assert not set(ADDED_FIELDS) & set(parse_verdict(parts).message)


def test_latency_covers_each_stage_and_capture_to_publish():
    message = verdict_for(make_inspection())
    encode_verdict(message, publish_start=time.perf_counter())
    latency = message["latency_ms"]
    assert set(latency) == set(LATENCY_KEYS)
    stages = (latency["decode"], latency["preprocess"], latency["inference"], latency["postprocess"])
    assert stages == (1.25, 1.0, 20.0, 0.5)
    assert latency["publish"] >= 0
    assert message["t_publish"] >= message["t_capture"]
    assert latency["total"] == pytest.approx((message["t_publish"] - message["t_capture"]) * 1000, abs=0.01)
    assert latency["total"] >= 40  # the frame was captured 50 ms ago


def test_encoded_verdict_parses_back_with_its_map():
    inspection = make_inspection()
    message = verdict_for(inspection, has_map=True)
    parts = encode_verdict(message, inspection.map_png())
    received = parse_verdict(parts)
    assert received.topic == "verdict.line3"
    assert received.message == json.loads(json.dumps(message))
    assert received.map_png is not None and received.map_png.startswith(b"\x89PNG")


def test_unreadable_image_gives_a_fail_safe_ng_with_null_score():
    message = verdict_for(error="decode: /imgs/a.png: not a decodable image")
    received = parse_verdict(encode_verdict(message))
    payload = received.message
    assert payload["verdict"] == "NG"
    assert payload["score"] is None and payload["normalized_score"] is None and payload["threshold"] is None
    assert payload["regions"] == [] and payload["error"].startswith("decode: ")
    assert payload["has_map"] is False and received.map_png is None


def test_non_finite_score_is_published_as_null_not_nan():
    parts = encode_verdict(verdict_for(make_inspection(score=float("nan"))))
    assert json.loads(parts[1])["score"] is None


def test_build_needs_exactly_one_of_inspection_or_error():
    with pytest.raises(ValueError):
        verdict_for()
    with pytest.raises(ValueError):
        verdict_for(make_inspection(), error="decode: x")


def edited(payload: bytes, **changes) -> bytes:
    """The payload with keys changed (a value of None removes the key)."""
    data = {**json.loads(payload), **changes}
    return json.dumps({k: v for k, v in data.items() if k not in changes or v is not None}).encode()


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda p: p.__setitem__(0, b"other.line3"), "not a verdict topic"),
        (lambda p: p.__setitem__(0, b"verdict.line4"), "does not match station"),
        (lambda p: p.__setitem__(1, b"{not json"), "undecodable"),
        (lambda p: p.__setitem__(1, edited(p[1], schema=2)), "unsupported verdict schema"),
        (lambda p: p.__setitem__(1, edited(p[1], seq=None)), "seq"),
        (lambda p: p.__setitem__(1, edited(p[1], timestamp_clock="ptp")), "timestamp_clock: Input should be 'device'"),
        (lambda p: p.__setitem__(1, edited(p[1], verdict="MAYBE")), "verdict: Input should be 'OK' or 'NG'"),
        (lambda p: p.__setitem__(1, edited(p[1], regions=[{"x": 1}])), r"regions\.0\.y: Field required"),
        (lambda p: p.append(b"unexpected map"), "has_map"),
        (lambda p: p.pop(), "2 to 4"),
    ],
)
def test_parser_rejects_malformed_messages(mutate, match):
    parts = encode_verdict(verdict_for(make_inspection()))
    mutate(parts)
    with pytest.raises(VerdictError, match=match):
        parse_verdict(parts)


def test_frame_jpeg_follows_the_map_and_the_image_size_travels_with_the_regions():
    from edge.model.imageio import encode_jpeg, read_image

    image = read_image(min((REPO / "edge" / "demo" / "images" / "scratch").glob("*.png")))
    inspection = make_inspection()
    jpeg = encode_jpeg(image, max_side=100, quality=80)
    message = verdict_for(inspection, frame=make_frame(image=image), has_map=True, has_image=True)
    parts = encode_verdict(message, inspection.map_png(), image_jpeg=jpeg)
    assert len(parts) == 4
    received = parse_verdict(parts)
    assert received.map_png.startswith(b"\x89PNG") and received.image_jpeg == jpeg and jpeg.startswith(b"\xff\xd8")
    assert (received.message["image_width"], received.message["image_height"]) == (image.shape[1], image.shape[0])
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_UNCHANGED)
    assert max(decoded.shape[:2]) == 100  # the longest side, shrunk; the regions stay in frame pixels


def test_image_without_a_map_is_frame_2_and_a_frame_count_off_by_one_is_refused():
    message = verdict_for(make_inspection(), has_image=True)
    parts = encode_verdict(message, image_jpeg=b"\xff\xd8jpeg")
    received = parse_verdict(parts)
    assert received.image_jpeg == b"\xff\xd8jpeg" and received.map_png is None
    with pytest.raises(VerdictError, match="has_image"):
        parse_verdict(parts[:2])
    with pytest.raises(ValueError, match="has_image"):
        encode_verdict(verdict_for(make_inspection()), image_jpeg=b"\xff\xd8jpeg")


def test_error_verdict_without_pixels_carries_no_image_and_no_size():
    message = verdict_for(error="decode: unreadable", frame=make_frame(image=None), has_image=True)
    assert message["has_image"] is False and message["image_width"] is None and message["image_height"] is None
