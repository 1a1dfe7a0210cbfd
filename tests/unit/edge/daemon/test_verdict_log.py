"""The one log line per verdict: INFO for an inspected frame, WARNING for an error verdict (seen without grepping)."""

from __future__ import annotations

import logging

from edge.cameras import Frame
from edge.daemon.announce import log_verdict
from edge.wire.verdict import build_verdict


def test_an_error_verdict_is_logged_at_warning_and_an_inspected_one_at_info(caplog):
    frame = Frame(image=None, frame_id=1, source="/line/1.png", t_capture=0.0, error="gone")
    error = build_verdict(station="s", seq=1, frame=frame, bundle_id="b", counters={}, error="decode: gone")
    inspected = {**error, "error": None, "seq": 2}
    with caplog.at_level(logging.INFO, logger="edge.daemon.announce"):
        log_verdict(error)
        log_verdict(inspected)
    assert [(r.levelno, r.getMessage().split()[0]) for r in caplog.records] == [
        (logging.WARNING, "seq=1"), (logging.INFO, "seq=2")]
    assert caplog.records[0].getMessage().endswith("error=decode: gone")
