"""The bundle: the versioned contract between the training half and the edge half.

A bundle is a directory holding the model graph and ``bundle.yaml``, which says everything the
edge needs to run that graph correctly: how pixels are prepared (:class:`InputSpec`), what the
outputs mean, how scores are normalised, the thresholds and the strategy that set them, what the
model was trained on, which tools made it, and the sha256 of every model file. The edge validates
all of it on load and refuses a bundle with one line that names the problem, because a plant PC
that silently runs a mismatched or half-copied model is worse than one that refuses to start.

Writing is here too (:func:`write_bundle_yaml`), atomic by temp file and rename, so that export
and calibration share one writer and a crash never leaves a half-written ``bundle.yaml``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from edge.ops.atomicfile import write_atomic
from edge.model.preprocess import InputSpec

BUNDLE_FILE = "bundle.yaml"
SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)
REQUIRED_KEYS = ("schema_version", "bundle_id", "model", "graph", "input", "outputs", "normalization", "files")
# graph format -> (graph file suffix, companion weights file suffix or None); IR = .xml + .bin
GRAPH_FORMATS: dict[str, tuple[str, str | None]] = {"onnx": (".onnx", None), "openvino": (".xml", ".bin")}
NORMALIZATION_METHODS = ("threshold_ratio",)


class BundleError(Exception):
    """A bundle that cannot be used; the message is one line naming the problem."""


@dataclass(frozen=True)
class Thresholds:
    """Decision thresholds in raw score units, as calibration wrote them."""

    image: float
    pixel: float
    strategy: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Bundle:
    """A validated bundle on disk."""

    root: Path
    bundle_id: str
    spec: InputSpec
    meta: dict[str, Any]
    thresholds: Thresholds | None

    @property
    def graph_path(self) -> Path:
        return self.root / self.meta["graph"]["file"]

    @property
    def output_names(self) -> tuple[str, str]:
        outputs = self.meta["outputs"]
        return outputs["anomaly_map"]["name"], outputs["score"]["name"]

    @property
    def input_name(self) -> str:
        return str(self.meta["graph"].get("input_name", "image"))

    @property
    def map_shape(self) -> tuple[int, int]:
        """(height, width) of the anomaly map the graph outputs, as ``bundle.yaml`` declares it."""
        shape = self.meta["outputs"]["anomaly_map"].get("shape")
        return (int(shape[-2]), int(shape[-1])) if shape else (self.spec.height, self.spec.width)


def graph_files(graph: dict[str, Any]) -> list[str]:
    """The model files of a graph entry: the graph itself and, for an IR, its weights (``.bin``)."""
    weights_suffix = GRAPH_FORMATS[graph["format"]][1]
    files = [str(graph["file"])]
    if weights_suffix is not None:
        files.append(str(graph.get("weights") or Path(graph["file"]).with_suffix(weights_suffix)))
    return files


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_bundle_yaml(root: str | Path) -> dict[str, Any]:
    """Parse ``bundle.yaml`` without validating it (for tools that are about to rewrite it)."""
    path = Path(root) / BUNDLE_FILE
    if not Path(root).is_dir():
        raise BundleError(f"{root}: bundle directory not found")
    if not path.is_file():
        raise BundleError(f"{path}: missing {BUNDLE_FILE}")
    try:
        meta = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise BundleError(f"{path}: unreadable YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(meta, dict):
        raise BundleError(f"{path}: expected a mapping at the top level")
    return meta


def load_bundle(root: str | Path, require_thresholds: bool = True, verify_hashes: bool = True) -> Bundle:
    """Load and validate a bundle; raise :class:`BundleError` naming the first problem found."""
    root = Path(root).resolve()
    meta = read_bundle_yaml(root)
    where = root / BUNDLE_FILE
    missing = [key for key in REQUIRED_KEYS if key not in meta]
    if missing:
        raise BundleError(f"{where}: missing key(s) {', '.join(missing)}")
    version = meta["schema_version"]
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise BundleError(
            f"{where}: unknown schema_version {version!r} (this runtime reads {list(SUPPORTED_SCHEMA_VERSIONS)})"
        )
    try:
        spec = InputSpec.from_dict(meta["input"])
    except (TypeError, ValueError) as exc:
        raise BundleError(f"{where}: {exc}") from exc
    graph = meta["graph"]
    if not isinstance(graph, dict) or graph.get("format") not in GRAPH_FORMATS or "file" not in graph:
        raise BundleError(f"{where}: graph needs file and format (one of {sorted(GRAPH_FORMATS)})")
    for key in ("anomaly_map", "score"):
        if "name" not in meta["outputs"].get(key, {}):
            raise BundleError(f"{where}: outputs.{key}.name missing")
    _check_map_shape(where, meta["outputs"]["anomaly_map"].get("shape"), spec)
    if meta["normalization"].get("method") not in NORMALIZATION_METHODS:
        raise BundleError(f"{where}: normalization.method must be one of {list(NORMALIZATION_METHODS)}")
    _check_files(root, meta, verify_hashes)
    for name in graph_files(graph):
        if name not in meta["files"]:
            raise BundleError(f"{where}: graph file {name} has no sha256 entry under files")
    thresholds = _parse_thresholds(where, meta.get("thresholds"))
    if require_thresholds and thresholds is None:
        raise BundleError(f"{where}: missing threshold (run edge-calibrate on this bundle first)")
    return Bundle(root=root, bundle_id=str(meta["bundle_id"]), spec=spec, meta=meta, thresholds=thresholds)


def _check_map_shape(where: Path, shape: Any, spec: InputSpec) -> None:
    """The map is ``[1, 1, h, w]`` with ``h``, ``w`` dividing the input size by the same stride."""
    if shape is None:
        return  # bundles written before the shape was recorded: maps at input resolution
    if (not isinstance(shape, list) or len(shape) != 4 or not all(isinstance(v, int) and v > 0 for v in shape)
            or shape[:2] != [1, 1]):
        raise BundleError(f"{where}: outputs.anomaly_map.shape must be [1, 1, height, width], got {shape!r}")
    height, width = shape[2:]
    if spec.height % height or spec.width % width or spec.height // height != spec.width // width:
        raise BundleError(f"{where}: outputs.anomaly_map.shape {shape} is not the input size "
                          f"{spec.height}x{spec.width} divided by one stride")


def _check_files(root: Path, meta: dict[str, Any], verify_hashes: bool) -> None:
    files = meta["files"]
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{root / BUNDLE_FILE}: files must map each model file to its sha256")
    for name, entry in files.items():
        path = root / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise BundleError(f"{root / BUNDLE_FILE}: file {name} must be a plain name inside the bundle")
        if not path.is_file():
            raise BundleError(f"{path}: missing file listed in {BUNDLE_FILE}")
        expected = entry.get("sha256") if isinstance(entry, dict) else None
        if not expected:
            raise BundleError(f"{root / BUNDLE_FILE}: files.{name}.sha256 missing")
        if verify_hashes and sha256_file(path) != expected:
            raise BundleError(f"{path}: sha256 mismatch (file changed or corrupt; expected {expected[:12]}...)")


def _parse_thresholds(where: Path, data: Any) -> Thresholds | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise BundleError(f"{where}: thresholds must be a mapping")
    for key in ("image", "pixel", "strategy"):
        if data.get(key) is None:
            raise BundleError(f"{where}: missing threshold thresholds.{key}")
    try:
        image, pixel = float(data["image"]), float(data["pixel"])
    except (TypeError, ValueError) as exc:
        raise BundleError(f"{where}: thresholds.image and thresholds.pixel must be numbers") from exc
    if not image > 0 or not pixel > 0:
        raise BundleError(f"{where}: thresholds must be positive (image={image}, pixel={pixel})")
    return Thresholds(image=image, pixel=pixel, strategy=str(data["strategy"]), params=dict(data.get("params") or {}))


def write_bundle_yaml(root: str | Path, meta: dict[str, Any]) -> Path:
    """Write ``bundle.yaml`` atomically (see :mod:`edge.ops.atomicfile`)."""
    text = yaml.safe_dump(meta, sort_keys=False, default_flow_style=None, width=120)
    return write_atomic(Path(root) / BUNDLE_FILE, text.encode("utf-8"))
