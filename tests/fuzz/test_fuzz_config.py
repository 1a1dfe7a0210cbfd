"""Fuzzed daemon configs (random keys, types, nesting; mutations of a valid one): a one-line refusal, or valid.

Every case goes through what ``--validate-config`` runs: the YAML is loaded and validated
(:func:`edge.daemon.config.load_config`), and a config that validates is checked as start-up
would check it (:func:`edge.daemon.preflight.validate`). The answer must be an ``EdgeConfig``
that passes, or ``ConfigError``/``StartupError`` whose every line names where the problem is;
anything else is a crash.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.daemon.config import ConfigError, load_config
from edge.daemon.preflight import StartupError, validate
from edge.tools.harness import DEMO_BUNDLE, DEMO_IMAGES
from tests.fuzz.conftest import Recorder, examples

KEYS = ["station", "bundle", "camera", "type", "source", "fps", "loop", "max_frames", "publish", "endpoint",
        "runtime", "threads", "backend", "watchdog", "pipeline", "queue_size", "overload", "archive", "enabled",
        "directory", "metrics", "port", "control", "curve", "state_dir", "log_level", "faults", "producers",
        "max_pixels", "error_frames_alarm", "linger_ms", "heartbeat_s", "shutdown_timeout_s", "x", "ü", ""]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=30), st.sampled_from(["sim", "gentl", "tcp://127.0.0.1:99999", "-5", "abc",
                                                           "/nonexistent", "drop_oldest", "DEBUG", "inf"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)),
                      max_leaves=20)
VALID: dict[str, Any] = {"station": "fz", "bundle": str(DEMO_BUNDLE), "runtime": {"threads": 1},
                         "camera": {"type": "sim", "source": str(DEMO_IMAGES)},
                         "publish": {"endpoint": "tcp://127.0.0.1:5999"}}


def paths(data: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            found += paths(value, (*prefix, key))
    return found


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    config = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths(config) or [("station",)]))
        parent = config
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent.get(key), dict) else {}
        if draw(st.booleans()):
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = draw(VALUES)
    return config


DOCUMENTS = st.one_of(mutated(), st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6), VALUES)


def check(document: Any, text: str | bytes | None, recorder: Recorder) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text if text is not None else yaml.safe_dump(document, allow_unicode=True))
        try:
            config = load_config(path)
            validate(config)
        except ConfigError as exc:
            lines = str(exc).splitlines()
            assert lines and all(line.startswith(str(path)) for line in lines), str(exc)
            recorder.refused(lines[0].removeprefix(str(path)))
            return
        except StartupError as exc:
            assert "\n" not in str(exc), str(exc)
            recorder.refused(str(exc))
            return
        except Exception:
            recorder.crashed()
            raise
    recorder.accepted()


@pytest.mark.fuzz_target("config YAML")
@settings(max_examples=examples(150), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(document=DOCUMENTS)
def test_any_config_is_valid_or_refused_with_lines_that_name_where(document, recorder):
    check(document, None, recorder)


@pytest.mark.fuzz_target("config YAML")
@settings(max_examples=examples(60), deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.text(max_size=200), st.binary(max_size=200),
                      st.sampled_from(["a: [", "a: b\na: c\n", "- 1\n- 2", "!!python/object:os.system x",
                                       "camera: {type: sim}\n\tbad", "&a [*a]"])))
def test_any_text_as_a_config_file_is_refused_with_a_line_that_names_where(text, recorder):
    check(None, text, recorder)
