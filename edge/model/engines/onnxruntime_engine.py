"""onnxruntime: the default engine for ONNX graphs."""

from __future__ import annotations

import logging

import numpy as np

from edge.model.bundle import Bundle, BundleError
from edge.model.engines.base import RuntimeOptions, check_map_shape, static_batch
from edge.model.formats import GraphFormat

log = logging.getLogger(__name__)


class OnnxRuntimeBackend:
    """onnxruntime on the CPU, with the thread count under the caller's control (ONNX graphs only)."""

    name = "onnxruntime"
    formats = (GraphFormat.ONNX,)

    def __init__(self, bundle: Bundle, options: RuntimeOptions) -> None:
        import onnxruntime as ort  # imported here so that a runtime without it can still load bundles

        sess_options = ort.SessionOptions()
        sess_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess_options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if not options.spin:
            sess_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            sess_options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        if options.threads:
            sess_options.intra_op_num_threads = int(options.threads)
            sess_options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                str(bundle.graph_path), sess_options=sess_options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise BundleError(f"{bundle.graph_path}: onnxruntime cannot load the graph ({exc})") from exc
        self._input = bundle.input_name
        self._outputs = list(bundle.output_names)
        inputs = {i.name: list(i.shape) for i in self._session.get_inputs()}
        if self._input not in inputs:
            raise BundleError(f"{bundle.graph_path}: graph has no input named {self._input!r} (has {sorted(inputs)})")
        self._batch = static_batch(inputs[self._input])
        shapes = {o.name: list(o.shape) for o in self._session.get_outputs()}
        check_map_shape(bundle, shapes.get(self._outputs[0], []))
        self.threads = options.threads
        self.spin = options.spin
        log.debug("onnxruntime session for %s (threads=%s)", bundle.graph_path, options.threads)

    def run(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._batch is not None and tensor.shape[0] != self._batch:
            parts = [self.run(tensor[i : i + 1]) for i in range(tensor.shape[0])]
            return np.concatenate([m for m, _ in parts]), np.concatenate([s for _, s in parts])
        anomaly_map, score = self._session.run(self._outputs, {self._input: tensor})
        return anomaly_map.reshape(-1, *anomaly_map.shape[-2:]), np.asarray(score, np.float64).reshape(-1)

    def settings(self) -> dict[str, object]:
        return {"backend": self.name, "intra_op_threads": self.threads or "default (one per core)",
                "inter_op_threads": 1 if self.threads else "default", "execution_mode": "sequential",
                "spin": self.spin}
