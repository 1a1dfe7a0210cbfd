"""Inference backends: the one place that knows how to execute a bundle's graph.

Each backend takes the preprocessed ``1x3xHxW`` tensor and returns the raw anomaly map and image
score. Which backend runs is a name looked up in :data:`BACKENDS`; the rest of the runtime never
names a particular engine, so adding one (OpenVINO) is adding a class and a dict entry.
"""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np

from edge.bundle import Bundle, BundleError

log = logging.getLogger(__name__)


class Backend(Protocol):
    """Runs a bundle's graph on one preprocessed tensor."""

    name: str

    def run(self, tensor: np.ndarray) -> tuple[np.ndarray, float]:
        """Return ``(anomaly_map HxW float32, image score)``."""
        ...


class OnnxRuntimeBackend:
    """onnxruntime on the CPU, with the thread count under the caller's control."""

    name = "onnxruntime"

    def __init__(self, bundle: Bundle, threads: int | None = None) -> None:
        import onnxruntime as ort  # imported here so that a runtime without it can still load bundles

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                str(bundle.graph_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors on a bad graph
            raise BundleError(f"{bundle.graph_path}: onnxruntime cannot load the graph ({exc})") from exc
        self._input = bundle.input_name
        self._outputs = list(bundle.output_names)
        names = {i.name for i in self._session.get_inputs()}
        if self._input not in names:
            raise BundleError(f"{bundle.graph_path}: graph has no input named {self._input!r} (has {sorted(names)})")
        self.threads = threads
        log.debug("onnxruntime session for %s (threads=%s)", bundle.graph_path, threads)

    def run(self, tensor: np.ndarray) -> tuple[np.ndarray, float]:
        anomaly_map, score = self._session.run(self._outputs, {self._input: tensor})
        return anomaly_map.reshape(anomaly_map.shape[-2:]), float(np.asarray(score).reshape(-1)[0])


BACKENDS: dict[str, type] = {"onnxruntime": OnnxRuntimeBackend}


def create_backend(bundle: Bundle, name: str | None = None, threads: int | None = None) -> Backend:
    """Build the backend ``name`` (default: the one the bundle's graph format calls for)."""
    name = name or "onnxruntime"
    if name not in BACKENDS:
        raise BundleError(f"unknown backend {name!r} (available: {', '.join(sorted(BACKENDS))})")
    backend: Backend = BACKENDS[name](bundle, threads=threads)
    return backend
