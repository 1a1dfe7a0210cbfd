"""The committed JSON Schema files are what the models generate; what the builders produce validates against them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from click.testing import CliRunner

from edge.cameras import Frame
from edge.cli import main
from edge.model.inspector import Inspection, Region
from edge.wire.messages import build_event, build_heartbeat, build_status
from edge.wire.schema_files import NAMES, file_name, generate, stale_files
from edge.wire.verdict import ADDED_FIELDS, build_verdict, encode_verdict, parse_verdict

REPO = Path(__file__).resolve().parents[4]
SCHEMAS = REPO / "docs" / "schemas"
COUNTERS = {"frames": 5, "verdicts": 4, "errors": 1, "dropped": 1, "drops": {"queue_full": 1}}


def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / file_name(name)).read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_committed_schema_files_are_what_the_models_generate():
    assert sorted(generate()) == sorted(file_name(name) for name in NAMES)
    assert stale_files(SCHEMAS) == [], "models changed: run `edge-inspect schemas` and commit docs/schemas/"
    result = CliRunner().invoke(main, ["schemas", "--check", "--out", str(SCHEMAS)])
    assert result.exit_code == 0, result.output


def test_schemas_check_fails_on_a_missing_or_changed_file_and_writing_fixes_it(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["schemas", "--check", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "verdict.schema.json is missing or out of date" in result.output
    assert runner.invoke(main, ["schemas", "--out", str(tmp_path)]).exit_code == 0
    assert stale_files(tmp_path) == []
    (tmp_path / "status.schema.json").write_text("{}")
    assert stale_files(tmp_path) == ["status.schema.json"]


def make_inspection() -> Inspection:
    return Inspection(
        score=3.5, normalized_score=0.6, verdict="NG", image_threshold=3.0, pixel_threshold=2.5,
        regions=[Region(x=np.int64(4), y=5, w=6, h=7, area=30, peak=np.float32(4.25))],
        anomaly_map=np.zeros((8, 8), np.float32), timings_ms={"preprocess": 1.0, "inference": 20.0, "postprocess": 0.5},
    )


def test_built_verdicts_validate_against_the_verdict_schema():
    frame = Frame(image=np.zeros((8, 8), np.uint8), frame_id=3, source="/imgs/3.png", t_capture=time.time())
    check = validator("verdict")
    for kwargs in ({"inspection": make_inspection()}, {"error": "decode: /imgs/3.png: not a decodable image"}):
        message = build_verdict(station="line3", seq=3, frame=frame, bundle_id="b1", counters=COUNTERS,
                                run_id="ab12", restart=True, **kwargs)
        check.validate(json.loads(encode_verdict(message)[1]))


def test_a_schema_1_verdict_from_an_older_sender_is_accepted_by_the_schema_and_the_parser():
    frame = Frame(image=None, frame_id=3, source="/imgs/3.png", t_capture=time.time(), error="x")
    parts = encode_verdict(build_verdict(station="line3", seq=3, frame=frame, bundle_id="b1", counters=COUNTERS,
                                         error="decode: x"))
    payload = {k: v for k, v in json.loads(parts[1]).items() if k not in ADDED_FIELDS}
    payload["counters"] = {"frames": 5, "errors": 1}  # verdicts, dropped and drops came later within schema 1
    validator("verdict").validate(payload)
    assert parse_verdict([parts[0], json.dumps(payload).encode()]).message == payload


def test_a_verdict_outside_the_schema_is_refused_by_it():
    frame = Frame(image=None, frame_id=3, source="/imgs/3.png", t_capture=time.time(), error="x")
    payload = json.loads(encode_verdict(build_verdict(station="line3", seq=3, frame=frame, bundle_id="b1",
                                                      counters=COUNTERS, error="decode: x"))[1])
    with pytest.raises(jsonschema.ValidationError):
        validator("verdict").validate({**payload, "verdict": "MAYBE"})


def test_built_heartbeat_status_and_events_validate_against_their_schemas():
    validator("heartbeat").validate(build_heartbeat(station="line3", run_id="ab12", restart=False, last_seq=4,
                                                    paused=False, camera_up=True, bundle_id="b1", counters=COUNTERS))
    validator("status").validate(build_status(station="line3", camera="down", reason="device gone", attempt=2,
                                              next_retry_s=4.0, stats={"frames": 5, "timeouts": 1}, verdicts=4))
    details = {
        "started": {"bundle_id": "b1", "previous_stop_clean": None},
        "reload": {"bundle_id": "b2", "previous_bundle_id": "b1", "source": "SIGHUP", "needs_restart": [],
                   "selftest": {"score": 1.2, "expected": 1.2, "abs_diff": 0.0, "limit": 0.001}},
        "reload_refused": {"reason": "bundle.yaml: thresholds.image: Field required", "source": "control",
                           "bundle_id": "b1"},
        "stopped": {"counters": COUNTERS, "last_seq": 4, "balanced": True, "failure": None,
                    "latency_ms": {"total": {"p50": 40.0, "p95": 45.0, "p99": 50.0, "n": 4}}},
    }
    check = validator("event")
    for event, detail in details.items():
        check.validate(build_event(station="line3", run_id="ab12", event=event, detail=detail))


def test_an_event_the_schema_does_not_know_is_refused_by_the_builder_and_the_schema():
    with pytest.raises(ValueError, match="event"):
        build_event(station="line3", run_id="ab12", event="exploded", detail={})
    with pytest.raises(ValueError, match="balanced"):
        build_event(station="line3", run_id="ab12", event="stopped",
                    detail={"counters": COUNTERS, "last_seq": 4, "failure": None, "latency_ms": {}})
    with pytest.raises(jsonschema.ValidationError):
        validator("event").validate({"schema": 1, "station": "line3", "t": 1.0, "run_id": "ab12",
                                     "event": "exploded", "detail": {}})
