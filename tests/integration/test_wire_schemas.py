"""What the running daemon publishes matches the committed JSON Schema files, and documents every field it sends.

A real ``python -m edge`` on the demo bundle and the sim camera, subscribed over a real ZeroMQ
SUB socket (:class:`edge.tools.harness.RunningDaemon`): its verdicts, heartbeats and events,
down to the ``stopped`` event of a SIGTERM, are validated with ``jsonschema`` against
``docs/schemas/``. The schemas let readers accept unknown fields (a newer sender within schema 1);
here they are tightened to refuse them, so a field the daemon sends but no model describes fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

from edge.tools.harness import DEMO_BUNDLE, DEMO_IMAGES, RunningDaemon

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "docs" / "schemas"


def closed(schema: Any) -> Any:
    """``schema`` with every object that lists its properties closed to others (``additionalProperties: false``)."""
    if isinstance(schema, dict):
        schema = {key: closed(value) for key, value in schema.items()}
        if "properties" in schema and schema.get("additionalProperties", True) is True:
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    return schema


def strict_validator(name: str) -> jsonschema.Draft202012Validator:
    schema = closed(json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8")))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_verdicts_heartbeats_and_the_stopped_event_of_a_running_daemon_validate_against_the_schemas(tmp_path):
    config = {"bundle": str(DEMO_BUNDLE),
              "camera": {"type": "sim", "source": str(DEMO_IMAGES), "fps": 2, "loop": True},
              "publish": {"heartbeat_s": 0.05}}
    with RunningDaemon(tmp_path, config) as daemon:
        daemon.wait_for(lambda d: bool(d.of("verdict")) and bool(d.of("heartbeat")), 120,
                        "a verdict and a heartbeat")
        assert daemon.terminate(60) == 0
        published = {kind: daemon.of(kind) for kind in ("verdict", "heartbeat", "event")}
    assert [e["event"] for e in published["event"]][-1] == "stopped"
    assert {e["event"] for e in published["event"]} == {"started", "stopped"}
    for kind, payloads in published.items():
        check = strict_validator(kind)
        for payload in payloads:
            check.validate(payload)
    stopped = published["event"][-1]["detail"]
    assert stopped["last_seq"] == published["verdict"][-1]["seq"] and stopped["balanced"] is True
