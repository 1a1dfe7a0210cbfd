"""Logging set-up: one line per event, JSON for journald and log shippers, plain text on a terminal.

Under systemd the daemon's stderr goes to journald, which reads it line by line: a traceback
spread over twenty lines becomes twenty unrelated entries, so every event here is exactly one
line, with newlines escaped in text mode too. When stderr is not a terminal the lines are JSON
objects (``ts``, ``level``, ``logger``, ``msg``, the caller's ``extra={...}`` fields, ``exc``) that a
log shipper can index without parsing prose; on a terminal they are readable text.
``EDGE_LOG_FORMAT=json|text`` picks one explicitly (the ``json_format`` argument wins over it).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import datetime, timezone
from typing import Any, TextIO

log = logging.getLogger(__name__)

FORMAT_ENV = "EDGE_LOG_FORMAT"
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# Attributes every LogRecord has; anything else on a record came from the caller's ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (ISO-8601 UTC, ms), level, logger, msg, extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a single-line JSON object (json escapes every newline)."""
        ts = datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds")
        out: dict[str, Any] = {
            "ts": ts.replace("+00:00", "Z"), "level": record.levelname, "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _extras(record).items():
            out.setdefault(key, value)  # an extra named like a core field must not hide it
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...`` with newlines (and tracebacks) escaped to stay one line."""

    def __init__(self) -> None:
        """Use the project's text layout."""
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as one line of text."""
        text = super().format(record)
        extras = _extras(record)
        if extras:
            text += " " + " ".join(f"{key}={value!r}" for key, value in extras.items())
        return _one_line(text)


def use_json(stream: TextIO, json_format: bool | None = None) -> bool:
    """Whether to log JSON: the argument if given, else ``EDGE_LOG_FORMAT``, else JSON unless a terminal."""
    if json_format is not None:
        return json_format
    forced = os.environ.get(FORMAT_ENV, "").strip().lower()
    if forced in ("json", "text"):
        return forced == "json"
    isatty = getattr(stream, "isatty", None)
    try:
        return not (isatty is not None and isatty())
    except ValueError:  # a closed stream
        return True


def setup_logging(
    level: str = "INFO", json_format: bool | None = None, stream: TextIO | None = None
) -> logging.Handler:
    """Send all logging (and ``warnings``) to ``stream`` (default stderr), replacing earlier handlers.

    Calling it again (a reload, a test) swaps the handler rather than adding a second one, so no
    line is ever written twice. Returns the handler installed. ValueError for an unknown level.
    """
    stream = stream if stream is not None else sys.stderr
    numeric = logging.getLevelName(str(level).upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    handler = logging.StreamHandler(stream)
    as_json = use_json(stream, json_format)
    handler.setFormatter(JsonFormatter() if as_json else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)  # not closed: it may belong to someone else (pytest's capture)
    root.addHandler(handler)
    root.setLevel(numeric)
    logging.captureWarnings(True)
    _silence_opencv()
    forced = os.environ.get(FORMAT_ENV)
    if forced is not None and forced.strip().lower() not in ("json", "text"):
        log.warning("%s=%r is neither json nor text; ignored", FORMAT_ENV, forced)
    return handler


def _silence_opencv() -> None:
    """OpenCV prints its own warnings straight to stderr, which would break one-JSON-object-per-line.

    Every OpenCV failure the daemon meets already reaches it as a return value or exception that
    it logs itself (an undecodable image becomes an error verdict and a log line), so its native
    log is switched off.
    """
    try:
        import cv2.utils.logging as cv_logging
    except ImportError:  # an OpenCV build without the logging module: leave it as it is
        return
    cv_logging.setLogLevel(cv_logging.LOG_LEVEL_SILENT)
