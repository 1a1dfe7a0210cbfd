"""The bundle: the versioned contract between the training half and the edge half.

A bundle is a directory holding the model graph and ``bundle.yaml``, which says everything the
edge needs to run that graph correctly: how pixels are prepared (:class:`InputSpec`), what the
outputs mean, how scores are normalised, the thresholds and the strategy that set them, what the
model was trained on, which tools made it, and the sha256 of every model file. The edge validates
all of it on load and refuses a bundle with one line that names the problem, because a plant PC
that silently runs a mismatched or half-copied model is worse than one that refuses to start.

The keys, their types and ranges are the pydantic models of :mod:`edge.model.manifest`; this
module adds what a field type cannot say (the files are there and hash to what is recorded, the
map size divides the input size, the graph's files are listed) and turns a validation error
into that one line, naming the field path. Writing is here too (:func:`write_bundle_yaml`, which
takes the manifest model), atomic by temp file and rename, so that export and calibration share
one writer and one definition with the reader, and a crash never leaves a half-written
``bundle.yaml``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from edge.model.formats import GraphFormat
from edge.model.layout import WINDOW_ALIGN
from edge.model.manifest import (
    SCHEMA_VERSION,
    SUPPORTED_SCHEMA_VERSIONS,
    BundleManifest,
    Thresholds,
)
from edge.model.preprocess import InputSpec
from edge.ops.atomicfile import write_atomic

BUNDLE_FILE = "bundle.yaml"

__all__ = ["BUNDLE_FILE", "SCHEMA_VERSION", "Bundle", "BundleError", "BundleManifest", "Thresholds", "load_bundle",
           "read_bundle_yaml", "sha256_file", "write_bundle_yaml"]


class BundleError(Exception):
    """A bundle that cannot be used; the message is one line naming the problem."""


@dataclass(frozen=True)
class Bundle:
    """A validated bundle on disk: its directory and its typed ``bundle.yaml``."""

    root: Path
    manifest: BundleManifest

    @property
    def bundle_id(self) -> str:
        return self.manifest.bundle_id

    @property
    def spec(self) -> InputSpec:
        return self.manifest.input

    @property
    def thresholds(self) -> Thresholds | None:
        return self.manifest.thresholds

    @property
    def graph_format(self) -> GraphFormat:
        return self.manifest.graph.format

    @property
    def graph_path(self) -> Path:
        return self.root / self.manifest.graph.file

    @property
    def output_names(self) -> tuple[str, str]:
        outputs = self.manifest.outputs
        return outputs.anomaly_map.name, outputs.score.name

    @property
    def input_name(self) -> str:
        return self.manifest.graph.input_name

    @property
    def map_shape(self) -> tuple[int, int]:
        """(height, width) of the anomaly map the graph outputs, as ``bundle.yaml`` declares it."""
        shape = self.manifest.outputs.anomaly_map.shape
        return (shape[2], shape[3]) if shape else (self.spec.height, self.spec.width)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_bundle_yaml(root: str | Path) -> dict[str, Any]:
    """Parse ``bundle.yaml`` into plain data without validating it (the first step of :func:`load_bundle`)."""
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


def parse_manifest(meta: dict[str, Any], where: str | Path = BUNDLE_FILE) -> BundleManifest:
    """Validate plain ``bundle.yaml`` data; :class:`BundleError` naming the first bad field in one line."""
    version = meta.get("schema_version")
    if "schema_version" in meta and version not in SUPPORTED_SCHEMA_VERSIONS:
        raise BundleError(
            f"{where}: unknown schema_version {version!r} (this runtime reads {list(SUPPORTED_SCHEMA_VERSIONS)})"
        )
    try:
        return BundleManifest.model_validate(meta)
    except ValidationError as exc:
        raise BundleError(f"{where}: {describe_error(exc)}") from None


def describe_error(exc: ValidationError) -> str:
    """The first error of a pydantic ``ValidationError`` as ``field.path: message`` (plus a count of the rest)."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = ".".join(str(part) for part in first["loc"])
    text = first["msg"]
    if first["type"] == "value_error" and "error" in first.get("ctx", {}):
        text = str(first["ctx"]["error"])  # a validator's own words, without pydantic's "Value error, "
    if first["type"] not in ("missing", "extra_forbidden", "value_error") and "input" in first:  # value_error says it
        text += f" (got {_short(first['input'])})"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return (f"{loc}: {text}" if loc else text) + more


def _short(value: Any) -> str:
    text = repr(value).replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def load_bundle(root: str | Path, require_thresholds: bool = True, verify_hashes: bool = True) -> Bundle:
    """Load and validate a bundle; raise :class:`BundleError` naming the first problem found."""
    root = Path(root).resolve()
    where = root / BUNDLE_FILE
    manifest = parse_manifest(read_bundle_yaml(root), where)
    _check_map_shape(where, manifest)
    _check_files(root, manifest, verify_hashes)
    for name in manifest.graph.files():
        if name not in manifest.files:
            raise BundleError(f"{where}: graph file {name} has no sha256 entry under files")
    if require_thresholds and manifest.thresholds is None:
        raise BundleError(f"{where}: missing threshold (run edge-calibrate on this bundle first)")
    return Bundle(root=root, manifest=manifest)


def _check_map_shape(where: Path, manifest: BundleManifest) -> None:
    """The map's ``h``, ``w`` divide the input size by the same stride (its ``[1, 1, h, w]`` form is a field type)."""
    shape = manifest.outputs.anomaly_map.shape
    if shape is None:
        return  # bundles written before the shape was recorded: maps at input resolution
    spec = manifest.input
    height, width = shape[2:]
    if spec.height % height or spec.width % width or spec.height // height != spec.width // width:
        raise BundleError(f"{where}: outputs.anomaly_map.shape {list(shape)} is not the input size "
                          f"{spec.height}x{spec.width} divided by one stride")
    if spec.resize != "stretch" and WINDOW_ALIGN % (spec.height // height):
        raise BundleError(f"{where}: resize {spec.resize} needs a map stride dividing {WINDOW_ALIGN} (window offsets "
                          f"are multiples of it), got {spec.height // height}")


def _check_files(root: Path, manifest: BundleManifest, verify_hashes: bool) -> None:
    for name, entry in manifest.files.items():
        path = root / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise BundleError(f"{root / BUNDLE_FILE}: file {name} must be a plain name inside the bundle")
        if not path.is_file():
            raise BundleError(f"{path}: missing file listed in {BUNDLE_FILE}")
        if verify_hashes and sha256_file(path) != entry.sha256:
            raise BundleError(f"{path}: sha256 mismatch (file changed or corrupt; expected {entry.sha256[:12]}...)")


def write_bundle_yaml(root: str | Path, manifest: BundleManifest) -> Path:
    """Write ``manifest`` as ``bundle.yaml`` atomically (see :mod:`edge.ops.atomicfile`), in field order.

    What is written is validated first, as the edge will read it: a writer that assigned a wrong
    value to a field gets :class:`BundleError` here rather than a bundle that the edge refuses.
    """
    data = manifest.to_yaml_data()
    parse_manifest(data, Path(root) / BUNDLE_FILE)
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=120)
    return write_atomic(Path(root) / BUNDLE_FILE, text.encode("utf-8"))
