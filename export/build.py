"""Assembling a bundle from a training run: graph, ``bundle.yaml``, training manifest, parity check.

The bundle is built in a temporary directory beside the target and renamed into place only after
the parity check has passed, so a failed or interrupted export never leaves a bundle that looks
usable. Parity runs the torch model and the exported graph on the same held-out images, the graph
through ``edge``'s own :class:`~edge.inference.Inspector`, and records the largest difference.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import logging
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

import edge
from edge.bundle import SCHEMA_VERSION, load_bundle, sha256_file, write_bundle_yaml
from edge.imageio import read_image
from edge.inference import Inspector
from edge.preprocess import InputSpec, preprocess
from export.formats import FORMATS, check_format
from export.onnx_graph import INPUT_NAME, OUTPUT_NAMES, export_onnx
from training.train import load_run

log = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-3  # largest |score difference| allowed, relative to max(1, |torch score|)
PARITY_IMAGES = 8
TRAIN_MANIFEST = "train_images.sha256"


class ExportError(Exception):
    """The export could not produce a trustworthy bundle; the message says why."""


def tool_versions() -> dict[str, str]:
    """Versions of the tools that made the bundle, for the record in ``bundle.yaml``."""
    versions = {"python": platform.python_version(), "edge": edge.__version__}
    for dist in ("torch", "torchvision", "timm", "onnx", "onnxscript", "onnxruntime", "numpy", "opencv-python-headless"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def build_bundle(
    run_dir: Path,
    out: Path,
    fmt: str = "onnx",
    precision: str = "fp32",
    parity_images: int = PARITY_IMAGES,
    tolerance: float = PARITY_TOLERANCE,
    overwrite: bool = False,
) -> Path:
    """Export the run in ``run_dir`` to a bundle directory ``out`` and return its path."""
    graph_format, prec = check_format(fmt, precision)
    out = Path(out).resolve()
    if out.exists() and not overwrite:
        raise ExportError(f"{out}: already exists (pass --overwrite to replace it)")
    model, run = load_run(run_dir)
    spec = InputSpec.from_dict(run["input_spec"])
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        graph_name = "model" + FORMATS[graph_format].suffix
        started = time.perf_counter()
        export_onnx(model, spec.height, spec.width, staging / graph_name)
        export_seconds = time.perf_counter() - started
        manifest = _write_train_manifest(staging, run)
        meta = _bundle_meta(run, spec, graph_name, graph_format.value, prec.value, manifest)
        _hash_files(staging, meta, [graph_name, manifest])
        meta["export"] = {"seconds": round(export_seconds, 2), "created": _now()}
        write_bundle_yaml(staging, meta)
        parity = check_parity(model, staging, run, parity_images)
        parity["tolerance"] = tolerance
        parity["tolerance_rule"] = "|score_torch - score_graph| <= tolerance * max(1, |score_torch|)"
        meta["export"]["parity"] = parity
        write_bundle_yaml(staging, meta)
        if parity["max_rel_score_diff"] > tolerance:
            raise ExportError(
                f"parity check failed: torch and {graph_format.value} scores differ by up to "
                f"{parity['max_abs_score_diff']:.3g} (relative {parity['max_rel_score_diff']:.3g} > tolerance {tolerance:g})"
            )
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("bundle written to %s (parity max |score diff| %.3g)", out, parity["max_abs_score_diff"])
    return out


def check_parity(model: torch.nn.Module, bundle_dir: Path, run: dict[str, Any], count: int) -> dict[str, Any]:
    """Run torch and the exported graph (through ``edge``) on the same images; report the differences."""
    bundle = load_bundle(bundle_dir, require_thresholds=False)
    inspector = Inspector(bundle)
    paths = list(run.get("validation_images") or [])[:count] or list(run["train_images"])[:count]
    if not paths:
        raise ExportError("no images recorded in the run to check parity on")
    abs_diffs, rel_diffs, map_diffs = [], [], []
    model = model.eval().cpu()
    for path in tqdm(paths, desc="parity", unit="img", leave=False):
        image = read_image(path)
        with torch.no_grad():
            torch_map, torch_score = model(torch.from_numpy(preprocess(image, bundle.spec)))
        torch_score_f = float(torch_score.reshape(-1)[0])
        raw = inspector.run(image)
        diff = abs(torch_score_f - raw.score)
        abs_diffs.append(diff)
        rel_diffs.append(diff / max(1.0, abs(torch_score_f)))
        map_diffs.append(float(np.abs(torch_map.numpy().reshape(raw.anomaly_map.shape) - raw.anomaly_map).max()))
    return {
        "n_images": len(paths),
        "images": "validation split" if run.get("validation_images") else "training images",
        "max_abs_score_diff": float(max(abs_diffs)),
        "max_rel_score_diff": float(max(rel_diffs)),
        "max_abs_map_diff": float(max(map_diffs)),
    }


def _hash_files(staging: Path, meta: dict[str, Any], names: list[str]) -> None:
    """Record the sha256 of each bundle file and derive the bundle id from the graph's hash."""
    meta["files"] = {name: {"sha256": sha256_file(staging / name), "bytes": (staging / name).stat().st_size} for name in names}
    graph_sha = meta["files"][meta["graph"]["file"]]["sha256"]
    meta["bundle_id"] = f"{meta['model']['family']}-{meta['model']['backbone']}-{meta['graph']['precision']}-{graph_sha[:12]}"


def _write_train_manifest(staging: Path, run: dict[str, Any]) -> str:
    """sha256 of every training image, so calibration can refuse images the model was fitted on."""
    lines = [f"{sha256_file(Path(p))}  {Path(p).name}" for p in run["train_images"]]
    (staging / TRAIN_MANIFEST).write_text("\n".join(lines) + "\n")
    return TRAIN_MANIFEST


def _bundle_meta(
    run: dict[str, Any], spec: InputSpec, graph_name: str, fmt: str, precision: str, manifest: str
) -> dict[str, Any]:
    config = run["config"]
    return {
        "schema_version": SCHEMA_VERSION,
        "bundle_id": "",  # set by _hash_files from the graph's sha256
        "model": {
            "family": "patchcore",
            "backbone": config["backbone"],
            "config": config,
            "memory_bank": run.get("memory_bank_shape"),
        },
        "graph": {"file": graph_name, "format": fmt, "precision": precision, "opset": 18, "input_name": INPUT_NAME},
        "input": spec.to_dict(),
        "outputs": {
            "anomaly_map": {
                "name": OUTPUT_NAMES[0],
                "shape": [1, 1, spec.height, spec.width],
                "meaning": "per-pixel anomaly score at input resolution: nearest-neighbour patch distance "
                "to the memory bank, upsampled bilinearly and Gaussian-smoothed (raw units, not normalised)",
            },
            "score": {
                "name": OUTPUT_NAMES[1],
                "shape": [1],
                "meaning": "image anomaly score = max of anomaly_map (raw units); higher is more anomalous",
            },
        },
        "normalization": {
            "method": "threshold_ratio",
            "formula": "normalized = clip(0.5 * score / thresholds.image, 0, 1)",
            "meaning": "0.5 is the decision boundary; 1.0 is twice the threshold or more",
        },
        "thresholds": None,
        "training": {
            "dataset": run.get("dataset"),
            "n_train_images": run.get("n_train_images"),
            "n_validation_images": run.get("n_validation_images"),
            "validation_images": run.get("validation_images"),
            "train_manifest": manifest,
            "seed": run.get("seed"),
            "device": run.get("device"),
        },
        "tools": tool_versions(),
        "files": {},
    }


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
