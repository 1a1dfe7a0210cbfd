"""Every shutdown step has a deadline, and they add up to less than the units' TimeoutStopSec."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.daemon.config import load_config
from edge.daemon.deadlines import UNIT_TIMEOUT_STOP_S, stop_budget_s, stop_deadlines
from edge.tools.harness import DEMO_BUNDLE, DEMO_IMAGES

REPO = Path(__file__).resolve().parents[4]


def unit_timeout_stop(unit: Path) -> float:
    (value,) = [line.split("=", 1)[1] for line in unit.read_text().splitlines() if line.startswith("TimeoutStopSec=")]
    return float(value)


@pytest.mark.parametrize("unit", ["edge-inspect.service", "edge-inspect@.service"])
def test_the_units_timeout_is_the_one_the_budget_is_checked_against(unit):
    assert unit_timeout_stop(REPO / "systemd" / unit) == UNIT_TIMEOUT_STOP_S


@pytest.mark.parametrize("config", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_each_example_config_stops_within_the_units_timeout_with_every_service_on(config):
    loaded = load_config(config)
    assert stop_budget_s(loaded, all_services=True) < UNIT_TIMEOUT_STOP_S, stop_deadlines(loaded)


def test_the_budget_counts_the_drain_the_linger_and_only_the_services_that_run():
    overrides = {"bundle": str(DEMO_BUNDLE), "camera.type": "sim", "camera.source": str(DEMO_IMAGES),
                 "pipeline.shutdown_timeout_s": 7.0, "publish.linger_ms": 3000}
    config = load_config(None, overrides)
    steps = stop_deadlines(config)
    assert steps["drain (pipeline.shutdown_timeout_s)"] >= 7.0 and steps["publish linger (publish.linger_ms)"] == 3.0
    assert steps["archive flush"] == 0.0 and steps["metrics"] == 0.0 and steps["control"] == 0.0
    assert stop_budget_s(config, all_services=True) > stop_budget_s(config)
    assert stop_budget_s(config) == pytest.approx(sum(steps.values()))
