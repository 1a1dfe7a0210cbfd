"""What every inference engine shares: its settings, its interface, and the map-shape check.

Kept apart from the registry (:mod:`edge.model.engines`) so each engine module can import it
without importing the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from edge.model.bundle import Bundle, BundleError

PerformanceHint = Literal["latency", "throughput"]


@dataclass(frozen=True)
class RuntimeOptions:
    """Engine settings: ``threads`` (None = engine default), OpenVINO ``hint`` and ``cache_dir``, onnxruntime ``spin``.

    ``spin``: whether onnxruntime's worker threads busy-wait for the next operator instead of
    sleeping (onnxruntime's own default). Off by default: in the daemon, whose camera, output and
    control threads share a few cores with inference, a spinning worker takes the core another
    thread needs next; measured with ``edge-inspect plc-bench --spin on|off`` (docs/plc.md), off
    lowered the p99 and the daemon's CPU time and changed no score.

    ``cache_dir`` None means the default described in the module docstring; ``Path("")`` is not
    accepted (it would be the working directory), use ``cache=False`` to switch caching off.
    """

    threads: int | None = None
    hint: PerformanceHint = "latency"
    cache_dir: Path | None = None
    cache: bool = True
    spin: bool = False


class Backend(Protocol):
    """Runs a bundle's graph on the preprocessed windows of one frame."""

    name: str

    def run(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(anomaly maps (N, h, w) float32, scores (N,))`` for ``N x 3 x H x W`` inputs.

        N is 1 except for tiled inputs; a graph with a fixed batch of 1 is run once per window.
        """
        ...

    def settings(self) -> dict[str, object]:
        """The engine settings in effect (for logs and benchmarks)."""
        ...


def check_map_shape(bundle: Bundle, graph_shape: list[object]) -> None:
    """Refuse a graph whose anomaly map is not the size ``bundle.yaml`` declares (dynamic sizes pass).

    Region boxes are scaled from the map to the image by the declared size, so a graph exported
    at another map resolution than its ``bundle.yaml`` says would put them in the wrong place.
    """
    declared = bundle.map_shape
    graph = tuple(graph_shape[-2:])
    if len(graph) == 2 and all(isinstance(v, int) for v in graph) and graph != declared:
        raise BundleError(f"{bundle.graph_path}: graph outputs a {graph[0]}x{graph[1]} anomaly map but "
                          f"bundle.yaml declares {declared[0]}x{declared[1]}")


def static_batch(shape: list[object]) -> int | None:
    """The graph input's fixed batch size, or None when it is dynamic."""
    return shape[0] if shape and isinstance(shape[0], int) else None
