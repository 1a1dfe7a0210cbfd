"""Property-based fuzzing of every input a station reads: what each target tried, and what it answered.

Each fuzz test feeds one target (config YAML, bundle.yaml, model files, image bytes, control
messages, subscriber input) with generated cases and records, per target, how many cases ran,
how many crashed (an exception other than the target's own one-line refusal: must be 0, the
test fails on the first), and the distinct refusal messages (numbers and paths normalised, so
"port '99999'" and "port '12345'" count once). The figures are printed at the end of the run
(``pytest tests/fuzz``) and written as JSON to ``$EDGE_FUZZ_REPORT`` when it is set.

Cases per target are bounded so the fuzz tests stay around two minutes on two cores;
``EDGE_FUZZ_SCALE`` multiplies them (e.g. 10 for a long run before a release). The cases are
derived from a fixed seed, so a run (and CI) tries the same ones every time; ``EDGE_FUZZ_RANDOM=1``
draws new ones, to explore.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("fixed", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile("explore" if os.environ.get("EDGE_FUZZ_RANDOM") else "fixed")

SCALE = float(os.environ.get("EDGE_FUZZ_SCALE", "1"))
_NUMBER = re.compile(r"(0x|#x)[0-9a-fA-F]+|-?\d+(\.\d+)?(e[-+]?\d+)?")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_GOT = re.compile(r"\(got .*?\)$")
_PATH = re.compile(r"(/[\w.@+-]+)+")


def examples(n: int) -> int:
    """The number of generated cases for a target, scaled by EDGE_FUZZ_SCALE."""
    return max(1, round(n * SCALE))


@dataclass
class TargetStats:
    cases: int = 0
    accepted: int = 0
    crashes: int = 0
    refusals: set[str] = field(default_factory=set)


STATS: dict[str, TargetStats] = defaultdict(TargetStats)


def normalise(message: str) -> str:
    """A refusal message with its particulars (paths, numbers, quoted values, the offending input) taken out."""
    text = _GOT.sub("(got …)", message.strip().splitlines()[0] if message.strip() else "")
    text = _PATH.sub("PATH", text)
    text = _QUOTED.sub("'…'", text)
    return _NUMBER.sub("#", text)


class Recorder:
    """What one fuzz test hands its outcomes to."""

    def __init__(self, target: str) -> None:
        self.stats = STATS[target]

    def accepted(self) -> None:
        self.stats.cases += 1
        self.stats.accepted += 1

    def refused(self, message: str) -> None:
        """A one-line refusal: the test asserts the line; here it is counted."""
        self.stats.cases += 1
        self.stats.refusals.add(normalise(message))

    def crashed(self) -> None:
        self.stats.cases += 1
        self.stats.crashes += 1


@pytest.fixture
def recorder(request: pytest.FixtureRequest) -> Recorder:
    marker = request.node.get_closest_marker("fuzz_target")
    assert marker is not None, "fuzz tests name their target with @pytest.mark.fuzz_target(NAME)"
    return Recorder(marker.args[0])


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fuzz_target(name): the input a fuzz test feeds (for its figures)")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not STATS:
        return
    rows = sorted(STATS.items())
    terminalreporter.section("fuzz figures")
    terminalreporter.write_line(f"{'target':<22} {'cases':>6} {'accepted':>8} {'crashes':>7} {'distinct refusals':>17}")
    for name, s in rows:
        terminalreporter.write_line(f"{name:<22} {s.cases:>6} {s.accepted:>8} {s.crashes:>7} {len(s.refusals):>17}")
    report = os.environ.get("EDGE_FUZZ_REPORT")
    if report:
        Path(report).write_text(json.dumps({name: {"cases": s.cases, "accepted": s.accepted, "crashes": s.crashes,
                                                   "distinct_refusals": sorted(s.refusals)}
                                            for name, s in rows}, indent=1, ensure_ascii=False))
        terminalreporter.write_line(f"refusal messages per target in {report}")
