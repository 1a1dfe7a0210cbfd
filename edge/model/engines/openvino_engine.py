"""OpenVINO: runs ONNX graphs and OpenVINO IR; owns the compiled-model cache location.

It is the ``openvino`` extra (180 MB, a third of a plain install): a bundle in OpenVINO IR, or
``runtime.backend: openvino``, on a machine without it is refused with one line naming the extra.

The OpenVINO model cache never defaults to the working directory: under systemd that can be ``/``.
It goes to ``$STATE_DIRECTORY`` (set by systemd's ``StateDirectory=``) when present, else into a
``.cache`` folder inside the bundle when that is writable, else caching is off.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from edge.configfields import systemd_state_directory
from edge.extras import MissingExtra, require
from edge.model.bundle import Bundle, BundleError
from edge.model.engines.base import RuntimeOptions, check_map_shape, static_batch
from edge.model.formats import GraphFormat

log = logging.getLogger(__name__)

CACHE_SUBDIR = ".cache"


class OpenVinoBackend:
    """OpenVINO on the CPU for ONNX graphs and IR (``.xml`` + ``.bin``).

    Inference precision is pinned to f32: on CPUs with bf16/AMX OpenVINO would otherwise lower
    FP32 and FP16 graphs to bf16 on its own and the scores would drift from those the bundle was
    calibrated with. INT8 graphs keep their quantised layers.
    """

    name = "openvino"
    formats = (GraphFormat.ONNX, GraphFormat.OPENVINO)

    def __init__(self, bundle: Bundle, options: RuntimeOptions) -> None:
        try:  # imported here: the daemon loads only the engine it runs, and this one is an extra
            ov = require("openvino", "openvino", f"the openvino engine ({bundle.graph_path.name})")
        except MissingExtra as exc:
            raise BundleError(str(exc)) from None

        core = ov.Core()
        config: dict[str, object] = {
            "PERFORMANCE_HINT": options.hint.upper(),
            "INFERENCE_PRECISION_HINT": "f32",
        }
        if options.threads:
            config["INFERENCE_NUM_THREADS"] = int(options.threads)
        self.cache_dir = resolve_cache_dir(bundle, options)
        if self.cache_dir is not None:
            config["CACHE_DIR"] = str(self.cache_dir)
        try:
            model = core.read_model(str(bundle.graph_path))
            self._compiled = core.compile_model(model, "CPU", config)
        except RuntimeError as exc:  # OpenVINO reports graph and plugin problems as RuntimeError
            raise BundleError(f"{bundle.graph_path}: OpenVINO cannot load the graph ({str(exc).splitlines()[0]})") from exc
        names = {name for port in self._compiled.inputs for name in port.get_names()}
        if bundle.input_name not in names:
            raise BundleError(f"{bundle.graph_path}: graph has no input named {bundle.input_name!r} (has {sorted(names)})")
        self._input = bundle.input_name
        input_shape = self._compiled.input(self._input).get_partial_shape()
        self._batch = static_batch([d.get_length() if d.is_static else None for d in input_shape])
        self._map_port = self._compiled.output(bundle.output_names[0])
        map_shape = self._map_port.get_partial_shape()
        check_map_shape(bundle, [d.get_length() if d.is_static else None for d in map_shape])
        self._score_port = self._compiled.output(bundle.output_names[1])
        self._request = self._compiled.create_infer_request()
        self.options = options
        self.threads = int(self._compiled.get_property("INFERENCE_NUM_THREADS"))
        log.debug("OpenVINO model for %s (%s)", bundle.graph_path, self.settings())

    def run(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._batch is not None and tensor.shape[0] != self._batch:
            parts = [self.run(tensor[i : i + 1]) for i in range(tensor.shape[0])]
            return np.concatenate([m for m, _ in parts]), np.concatenate([s for _, s in parts])
        self._request.infer({self._input: tensor}, share_inputs=True)
        anomaly_map = self._request.get_tensor(self._map_port).data
        score = self._request.get_tensor(self._score_port).data
        # The request reuses its output buffers: copy the map out before the next frame.
        return (np.array(anomaly_map.reshape(-1, *anomaly_map.shape[-2:]), copy=True),
                np.asarray(score, np.float64).reshape(-1))

    def settings(self) -> dict[str, object]:
        return {"backend": self.name, "inference_threads": self.threads, "hint": self.options.hint,
                "streams": int(self._compiled.get_property("NUM_STREAMS")), "inference_precision": "f32",
                "cache_dir": str(self.cache_dir) if self.cache_dir else None}


def resolve_cache_dir(bundle: Bundle, options: RuntimeOptions) -> Path | None:
    """Where OpenVINO may cache compiled models; never the working directory."""
    if not options.cache:
        return None
    state_directory = systemd_state_directory()
    if options.cache_dir is not None:
        path = Path(options.cache_dir).expanduser()
        if not path.is_absolute():
            raise BundleError(f"cache_dir {path}: must be an absolute path (the working directory may be /)")
    elif state_directory is not None:
        path = state_directory / "openvino-cache" / bundle.bundle_id
    else:
        path = bundle.root / CACHE_SUBDIR / "openvino"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if options.cache_dir is not None:
            raise BundleError(f"cache_dir {path}: cannot create ({exc.strerror or exc})") from exc
        log.info("OpenVINO model cache off: %s not writable (%s)", path, exc.strerror or exc)
        return None
    if not os.access(path, os.W_OK):
        log.info("OpenVINO model cache off: %s not writable", path)
        return None
    return path
