"""Every log event is one line: JSON with extras and exceptions off a terminal, escaped text on one."""

from __future__ import annotations

import io
import json
import logging
import os
import warnings
from datetime import datetime, timezone

import pytest

from edge.ops.logs import FORMAT_ENV, setup_logging

log = logging.getLogger("edge.test_logs")


@pytest.fixture(autouse=True)
def restore_root_logger(monkeypatch):
    """setup_logging changes process-wide state: put the root logger back for the next test."""
    monkeypatch.delenv(FORMAT_ENV, raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_json_line_has_utc_ms_timestamp_level_logger_message_and_extras():
    stream = io.StringIO()
    setup_logging("INFO", json_format=True, stream=stream)
    log.info("frame %s rejected", 42, extra={"station": "line3", "seq": 42})
    (line,) = lines(stream)
    event = json.loads(line)
    assert event["level"] == "INFO" and event["logger"] == "edge.test_logs"
    assert event["msg"] == "frame 42 rejected"
    assert event["station"] == "line3" and event["seq"] == 42
    assert event["ts"].endswith("Z") and len(event["ts"].split(".")[1]) == len("123Z")
    ts = datetime.fromisoformat(event["ts"].replace("Z", "+00:00"))
    assert ts.utcoffset() == timezone.utc.utcoffset(None)


def test_json_exception_goes_in_exc_on_the_same_line():
    stream = io.StringIO()
    setup_logging("INFO", json_format=True, stream=stream)
    try:
        raise RuntimeError("camera vanished")
    except RuntimeError:
        log.exception("grab failed")
    (line,) = lines(stream)
    event = json.loads(line)
    assert event["msg"] == "grab failed"
    assert "Traceback" in event["exc"] and "RuntimeError: camera vanished" in event["exc"]


def test_a_message_with_newlines_stays_one_line_in_both_formats():
    for json_format in (True, False):
        stream = io.StringIO()
        setup_logging("INFO", json_format=json_format, stream=stream)
        log.warning("first\nsecond\r\nthird")
        (line,) = lines(stream)
        assert "first" in line and "third" in line


def test_text_format_escapes_tracebacks_and_shows_extras():
    stream = io.StringIO()
    setup_logging("DEBUG", json_format=False, stream=stream)
    try:
        raise ValueError("bad\nframe")
    except ValueError:
        log.error("decode failed", exc_info=True, extra={"frame_id": 7})
    (line,) = lines(stream)
    assert "ERROR" in line and "edge.test_logs: decode failed" in line
    assert "frame_id=7" in line and "\\nTraceback" in line and "ValueError: bad\\nframe" in line


def test_a_stream_that_is_not_a_terminal_gets_json_and_a_terminal_gets_text():
    stream = io.StringIO()
    setup_logging("INFO", stream=stream)
    log.info("to a pipe")
    assert json.loads(lines(stream)[0])["msg"] == "to a pipe"
    master, slave = os.openpty()
    with os.fdopen(slave, "w") as tty, os.fdopen(master, "rb", buffering=0) as reader:
        setup_logging("INFO", stream=tty)
        log.info("to a terminal")
        tty.flush()
        shown = reader.read(4096).decode("utf-8")
    assert "INFO" in shown and "edge.test_logs: to a terminal" in shown and not shown.startswith("{")


def test_the_environment_variable_picks_the_format(monkeypatch):
    monkeypatch.setenv(FORMAT_ENV, "text")
    stream = io.StringIO()
    setup_logging("INFO", stream=stream)  # not a terminal, yet text
    log.info("forced")
    assert lines(stream)[0].endswith("edge.test_logs: forced")
    monkeypatch.setenv(FORMAT_ENV, "json")
    setup_logging("INFO", stream=stream)
    log.info("forced again")
    assert json.loads(lines(stream)[1])["msg"] == "forced again"


def test_calling_it_again_replaces_the_handler_instead_of_duplicating_lines():
    stream = io.StringIO()
    setup_logging("INFO", json_format=True, stream=stream)
    setup_logging("INFO", json_format=True, stream=stream)
    log.info("once")
    assert len(lines(stream)) == 1
    assert len(logging.getLogger().handlers) == 1


def test_level_filters_and_an_unknown_level_is_refused():
    stream = io.StringIO()
    setup_logging("warning", json_format=True, stream=stream)
    log.info("hidden")
    log.warning("shown")
    assert [json.loads(line)["msg"] for line in lines(stream)] == ["shown"]
    with pytest.raises(ValueError, match="unknown log level"):
        setup_logging("LOUD", stream=stream)


def test_python_warnings_are_logged():
    stream = io.StringIO()
    setup_logging("INFO", json_format=True, stream=stream)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("old option used", DeprecationWarning, stacklevel=1)
    (line,) = lines(stream)
    event = json.loads(line)
    assert event["logger"] == "py.warnings" and "old option used" in event["msg"]
