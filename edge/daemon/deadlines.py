"""The stop budget: every deadline of a shutdown, added up, must fit in the unit's ``TimeoutStopSec``.

On SIGTERM the daemon stops in steps, each with its own deadline: acquisition notices the stop
within one grab, inference and publishing drain what was grabbed, the socket lingers to flush,
then the outputs (PLC, broker) get their shared close deadline, the archive writes what is
queued and the metrics, control and watchdog threads end. They
run one after the other, so the worst case is their sum; if that exceeds systemd's
``TimeoutStopSec`` the unit is killed in the middle (the archive flushing, a verdict unsent).
This module names each step's deadline from the code and the config that set it, so the sum is
logged at start and printed by ``--validate-config``, and a test holds it under the shipped
units' ``TimeoutStopSec`` for the default config and every example config.
"""

from __future__ import annotations

import logging

from edge.control.server import JOIN_TIMEOUT_S
from edge.daemon.acquisition import GRAB_TIMEOUT_S
from edge.daemon.config import EdgeConfig
from edge.daemon.pipeline import PUBLISH_JOIN_MIN_S
from edge.daemon.services import ARCHIVE_CLOSE_S, METRICS_CLOSE_S, OUTPUTS_CLOSE_S, PINGER_CLOSE_S

log = logging.getLogger(__name__)

# TimeoutStopSec= of systemd/edge-inspect.service and edge-inspect@.service (a test reads the files).
UNIT_TIMEOUT_STOP_S = 30.0


def stop_deadlines(config: EdgeConfig, all_services: bool = False) -> dict[str, float]:
    """Each shutdown step and the longest it may take, in seconds (with every service on, if ``all_services``)."""
    grab_s = max(GRAB_TIMEOUT_S, float(getattr(config.camera, "trigger_timeout_s", 0.0) or 0.0))
    outputs_on = any(getattr(getattr(config.outputs, name), "enabled", False)
                     for name in type(config.outputs).model_fields)

    def on(enabled: bool, seconds: float) -> float:
        return seconds if enabled or all_services else 0.0

    return {
        "acquisition (one grab)": grab_s,
        "drain (pipeline.shutdown_timeout_s)": config.pipeline.shutdown_timeout_s + PUBLISH_JOIN_MIN_S,
        "publish linger (publish.linger_ms)": config.publish.linger_ms / 1000.0,
        "watchdog pinger": PINGER_CLOSE_S,
        "outputs (PLC, broker)": on(outputs_on, OUTPUTS_CLOSE_S),
        "control": on(config.control.enabled, JOIN_TIMEOUT_S),
        "archive flush": on(config.archive.enabled, ARCHIVE_CLOSE_S),
        "metrics": on(config.metrics.enabled, METRICS_CLOSE_S),
    }


def stop_budget_s(config: EdgeConfig, all_services: bool = False) -> float:
    """The worst-case stop time: the sum of :func:`stop_deadlines`."""
    return sum(stop_deadlines(config, all_services).values())


def warn_if_over_budget(config: EdgeConfig) -> None:
    """At start: one WARNING when this config's stop deadlines exceed the shipped units' TimeoutStopSec."""
    budget = stop_budget_s(config)
    if budget > UNIT_TIMEOUT_STOP_S:
        log.warning("stop deadlines add up to %.1f s, more than the shipped units' TimeoutStopSec=%g: raise "
                    "TimeoutStopSec or lower pipeline.shutdown_timeout_s", budget, UNIT_TIMEOUT_STOP_S)
