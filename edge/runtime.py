"""Inference backends: the one place that knows how to execute a bundle's graph.

Each backend takes the preprocessed ``1x3xHxW`` tensor and returns the raw anomaly map and image
score. Which backend runs is a name looked up in :data:`BACKENDS`; the rest of the runtime never
names a particular engine. The default comes from the bundle's graph format (:data:`DEFAULT_BACKEND`:
an ONNX graph runs on onnxruntime, an OpenVINO IR on OpenVINO) and the daemon config, calibration
and evaluation can override it, e.g. to run an ONNX bundle on OpenVINO. Engine settings (threads,
OpenVINO's performance hint, its model cache) travel in one :class:`RuntimeOptions`.

The OpenVINO model cache never defaults to the working directory: under systemd that can be ``/``.
It goes to ``$STATE_DIRECTORY`` (set by systemd's ``StateDirectory=``) when present, else into a
``.cache`` folder inside the bundle when that is writable, else caching is off.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from edge.bundle import Bundle, BundleError

log = logging.getLogger(__name__)

PerformanceHint = Literal["latency", "throughput"]
CACHE_SUBDIR = ".cache"


@dataclass(frozen=True)
class RuntimeOptions:
    """Engine settings: ``threads`` (None = engine default), OpenVINO ``hint`` and ``cache_dir``.

    ``cache_dir`` None means the default described in the module docstring; ``Path("")`` is not
    accepted (it would be the working directory), use ``cache=False`` to switch caching off.
    """

    threads: int | None = None
    hint: PerformanceHint = "latency"
    cache_dir: Path | None = None
    cache: bool = True

    def describe(self) -> dict[str, object]:
        return {"threads": self.threads, "hint": self.hint, "cache_dir": str(self.cache_dir) if self.cache_dir else None}


class Backend(Protocol):
    """Runs a bundle's graph on one preprocessed tensor."""

    name: str

    def run(self, tensor: np.ndarray) -> tuple[np.ndarray, float]:
        """Return ``(anomaly_map HxW float32, image score)``."""
        ...

    def settings(self) -> dict[str, object]:
        """The engine settings in effect (for logs and benchmarks)."""
        ...


class OnnxRuntimeBackend:
    """onnxruntime on the CPU, with the thread count under the caller's control (ONNX graphs only)."""

    name = "onnxruntime"
    formats = ("onnx",)

    def __init__(self, bundle: Bundle, options: RuntimeOptions) -> None:
        import onnxruntime as ort  # imported here so that a runtime without it can still load bundles

        sess_options = ort.SessionOptions()
        sess_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess_options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if options.threads:
            sess_options.intra_op_num_threads = int(options.threads)
            sess_options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                str(bundle.graph_path), sess_options=sess_options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors on a bad graph
            raise BundleError(f"{bundle.graph_path}: onnxruntime cannot load the graph ({exc})") from exc
        self._input = bundle.input_name
        self._outputs = list(bundle.output_names)
        names = {i.name for i in self._session.get_inputs()}
        if self._input not in names:
            raise BundleError(f"{bundle.graph_path}: graph has no input named {self._input!r} (has {sorted(names)})")
        shapes = {o.name: list(o.shape) for o in self._session.get_outputs()}
        check_map_shape(bundle, shapes.get(self._outputs[0], []))
        self.threads = options.threads
        log.debug("onnxruntime session for %s (threads=%s)", bundle.graph_path, options.threads)

    def run(self, tensor: np.ndarray) -> tuple[np.ndarray, float]:
        anomaly_map, score = self._session.run(self._outputs, {self._input: tensor})
        return anomaly_map.reshape(anomaly_map.shape[-2:]), float(np.asarray(score).reshape(-1)[0])

    def settings(self) -> dict[str, object]:
        return {"backend": self.name, "intra_op_threads": self.threads or "default (one per core)",
                "inter_op_threads": 1 if self.threads else "default", "execution_mode": "sequential"}


class OpenVinoBackend:
    """OpenVINO on the CPU for ONNX graphs and IR (``.xml`` + ``.bin``).

    Inference precision is pinned to f32: on CPUs with bf16/AMX OpenVINO would otherwise lower
    FP32 and FP16 graphs to bf16 on its own and the scores would drift from those the bundle was
    calibrated with. INT8 graphs keep their quantised layers.
    """

    name = "openvino"
    formats = ("onnx", "openvino")

    def __init__(self, bundle: Bundle, options: RuntimeOptions) -> None:
        import openvino as ov  # imported here: the daemon loads only the engine it runs

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
        self._map_port = self._compiled.output(bundle.output_names[0])
        map_shape = self._map_port.get_partial_shape()
        check_map_shape(bundle, [d.get_length() if d.is_static else None for d in map_shape])
        self._score_port = self._compiled.output(bundle.output_names[1])
        self._request = self._compiled.create_infer_request()
        self.options = options
        self.threads = int(self._compiled.get_property("INFERENCE_NUM_THREADS"))
        log.debug("OpenVINO model for %s (%s)", bundle.graph_path, self.settings())

    def run(self, tensor: np.ndarray) -> tuple[np.ndarray, float]:
        self._request.infer({self._input: tensor}, share_inputs=True)
        anomaly_map = self._request.get_tensor(self._map_port).data
        score = self._request.get_tensor(self._score_port).data
        # The request reuses its output buffers: copy the map out before the next frame.
        return np.array(anomaly_map.reshape(anomaly_map.shape[-2:]), copy=True), float(score.reshape(-1)[0])

    def settings(self) -> dict[str, object]:
        return {"backend": self.name, "inference_threads": self.threads, "hint": self.options.hint,
                "streams": int(self._compiled.get_property("NUM_STREAMS")), "inference_precision": "f32",
                "cache_dir": str(self.cache_dir) if self.cache_dir else None}


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


def resolve_cache_dir(bundle: Bundle, options: RuntimeOptions) -> Path | None:
    """Where OpenVINO may cache compiled models; never the working directory."""
    if not options.cache:
        return None
    if options.cache_dir is not None:
        path = Path(options.cache_dir).expanduser()
        if not path.is_absolute():
            raise BundleError(f"cache_dir {path}: must be an absolute path (the working directory may be /)")
    elif os.environ.get("STATE_DIRECTORY"):
        path = Path(os.environ["STATE_DIRECTORY"].split(":")[0]) / "openvino-cache" / bundle.bundle_id
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


BACKENDS: dict[str, type] = {"onnxruntime": OnnxRuntimeBackend, "openvino": OpenVinoBackend}
DEFAULT_BACKEND: dict[str, str] = {"onnx": "onnxruntime", "openvino": "openvino"}


def backend_for(bundle: Bundle, name: str | None = None) -> str:
    """The backend that runs ``bundle``: ``name`` if given (and able to), else the format's default."""
    fmt = str(bundle.meta["graph"]["format"])
    if name in (None, "auto"):
        return DEFAULT_BACKEND[fmt]
    if name not in BACKENDS:
        raise BundleError(f"unknown backend {name!r} (available: {', '.join(sorted(BACKENDS))})")
    if fmt not in BACKENDS[name].formats:  # type: ignore[attr-defined]
        able = sorted(b for b, cls in BACKENDS.items() if fmt in cls.formats)  # type: ignore[attr-defined]
        raise BundleError(f"backend {name} cannot run a {fmt} graph ({bundle.graph_path.name}); use {', '.join(able)}")
    return name


def create_backend(
    bundle: Bundle, name: str | None = None, threads: int | None = None, options: RuntimeOptions | None = None
) -> Backend:
    """Build the backend ``name`` (default: the one the bundle's graph format calls for)."""
    options = options or RuntimeOptions(threads=threads)
    if threads and options.threads != threads:
        options = RuntimeOptions(threads=threads, hint=options.hint, cache_dir=options.cache_dir, cache=options.cache)
    backend: Backend = BACKENDS[backend_for(bundle, name)](bundle, options)
    return backend
