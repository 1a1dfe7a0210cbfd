"""Inference backends: the one place that knows how to execute a bundle's graph.

Each backend takes the preprocessed ``Nx3xHxW`` windows of a frame (N = 1 except for tiles) and
returns their raw anomaly maps and scores. Which backend runs is a name looked up in :data:`BACKENDS`; the rest of the runtime never
names a particular engine. The default comes from the bundle's graph format, a row of the formats
table in :mod:`edge.model.formats` (:data:`DEFAULT_BACKEND`: an ONNX graph runs on onnxruntime, an
OpenVINO IR on OpenVINO; each engine lists the formats it can run), and the daemon config,
calibration and evaluation can override it, e.g. to run an ONNX bundle on OpenVINO. Engine settings (threads,
OpenVINO's performance hint, its model cache) travel in one :class:`RuntimeOptions`.

One module per engine (:mod:`.onnxruntime_engine`, :mod:`.openvino_engine`); :data:`BACKENDS` below
is the explicit registry, and nothing outside this package names an engine.
"""

from __future__ import annotations

from dataclasses import replace

from edge.model.bundle import Bundle, BundleError
from edge.model.engines.base import (
    Backend,
    PerformanceHint,
    RuntimeOptions,
    check_map_shape,
)
from edge.model.engines.onnxruntime_engine import OnnxRuntimeBackend
from edge.model.engines.openvino_engine import OpenVinoBackend
from edge.model.formats import GraphFormat

BACKENDS: dict[str, type] = {"onnxruntime": OnnxRuntimeBackend, "openvino": OpenVinoBackend}
# Each row of the formats table (edge.model.formats) runs by default on its format's native engine.
DEFAULT_BACKEND: dict[GraphFormat, str] = {GraphFormat.ONNX: "onnxruntime", GraphFormat.OPENVINO: "openvino"}


def backend_for(bundle: Bundle, name: str | None = None) -> str:
    """The backend that runs ``bundle``: ``name`` if given (and able to), else the format's default."""
    fmt = bundle.graph_format
    if name in (None, "auto"):
        return DEFAULT_BACKEND[fmt]
    if name not in BACKENDS:
        raise BundleError(f"unknown backend {name!r} (available: {', '.join(sorted(BACKENDS))})")
    if fmt not in BACKENDS[name].formats:  # type: ignore[attr-defined]
        able = sorted(b for b, cls in BACKENDS.items() if fmt in cls.formats)  # type: ignore[attr-defined]
        raise BundleError(f"backend {name} cannot run a {fmt.value} graph ({bundle.graph_path.name}); "
                          f"use {', '.join(able)}")
    return name


def create_backend(
    bundle: Bundle, name: str | None = None, threads: int | None = None, options: RuntimeOptions | None = None
) -> Backend:
    """Build the backend ``name`` (default: the one the bundle's graph format calls for)."""
    options = options or RuntimeOptions(threads=threads)
    if threads and options.threads != threads:
        options = replace(options, threads=threads)
    backend: Backend = BACKENDS[backend_for(bundle, name)](bundle, options)
    return backend


__all__ = ["BACKENDS", "DEFAULT_BACKEND", "Backend", "OnnxRuntimeBackend", "OpenVinoBackend", "PerformanceHint",
           "RuntimeOptions", "backend_for", "check_map_shape", "create_backend"]
