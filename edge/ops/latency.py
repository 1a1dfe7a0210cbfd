"""Latency percentiles kept inside the running daemon.

``edge-inspect ctl ... status`` and the heartbeat answer "how fast is it now" without a log
parser: each stage keeps a window of its most recent durations (a fixed-size ring, so memory
stays flat over months) and percentiles are computed from it on request. The bench uses the same
:func:`percentiles`, so a figure from ``status`` and one from ``edge-inspect bench`` mean the same.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Mapping

import numpy as np

DEFAULT_WINDOW = 2048


def percentiles(values: Iterable[float]) -> dict[str, float]:
    """p50/p95/p99 of ``values`` in their unit, rounded to 3 decimals (empty: zeros)."""
    array = np.asarray(list(values), dtype=np.float64)
    if array.size == 0:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0}
    return {f"p{q}": round(float(np.percentile(array, q)), 3) for q in (50, 95, 99)}


class LatencyWindow:
    """The last ``size`` durations (ms) per stage; thread-safe (written by one thread, read by others)."""

    def __init__(self, size: int = DEFAULT_WINDOW) -> None:
        self.size = size
        self._stages: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def add(self, stages_ms: Mapping[str, float]) -> None:
        with self._lock:
            for stage, value in stages_ms.items():
                self._stages.setdefault(stage, deque(maxlen=self.size)).append(float(value))

    def summary(self) -> dict[str, dict[str, float]]:
        """``{stage: {p50, p95, p99, n}}`` over the window."""
        with self._lock:
            copies = {stage: list(values) for stage, values in self._stages.items()}
        return {stage: {**percentiles(values), "n": len(values)} for stage, values in copies.items()}
