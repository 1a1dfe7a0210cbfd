"""Assembling a bundle from a training run: graph, ``bundle.yaml``, training manifest, parity check.

The bundle is built in a temporary directory beside the target and renamed into place only after
the parity check (and, for FP16/INT8, the accuracy guard of :mod:`export.guard`) has passed, so a
failed or interrupted export never leaves a bundle that looks usable. Parity runs the torch model and the exported graph on the same held-out images, the graph
through ``edge``'s own :class:`~edge.model.inspector.Inspector`, and records the largest difference.
"""

from __future__ import annotations

import copy
import datetime as dt
import importlib.metadata
import logging
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm import tqdm

import edge
from edge.model.bundle import SCHEMA_VERSION, load_bundle, sha256_file, write_bundle_yaml
from edge.model.imageio import read_image
from edge.model.inspector import Inspector
from edge.model.preprocess import InputSpec, preprocess
from edge.model.selftest import SELFTEST_IMAGE
from export.formats import FORMATS, GraphFormat, Precision, check_format, needs_accuracy_guard, needs_calibration
from export.guard import DEFAULT_AUROC_DROP_POINTS, DEFAULT_MAX_SCORE_CHANGE, compare
from export.onnx_graph import INPUT_NAME, OUTPUT_NAMES, export_onnx
from export.quantize import (
    DEFAULT_CALIB_COUNT,
    calibration_set,
    quantize_onnx_int8,
    quantize_openvino_int8,
    save_openvino_ir,
)
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
    for dist in ("torch", "torchvision", "timm", "onnx", "onnxscript", "onnxruntime", "openvino", "nncf", "numpy",
                 "opencv-python-headless"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


@dataclass(frozen=True)
class ReducedPrecisionOptions:
    """INT8 calibration images and the accuracy guard's limits (unused for FP32)."""

    calib_dir: Path | None = None
    calib_count: int = DEFAULT_CALIB_COUNT
    val_dir: Path | None = None
    max_auroc_drop: float = DEFAULT_AUROC_DROP_POINTS
    max_score_change: float = DEFAULT_MAX_SCORE_CHANGE
    force: bool = False


def build_bundle(
    run_dir: Path,
    out: Path,
    fmt: str = "onnx",
    precision: str = "fp32",
    parity_images: int = PARITY_IMAGES,
    tolerance: float = PARITY_TOLERANCE,
    overwrite: bool = False,
    reduced: ReducedPrecisionOptions | None = None,
    map_stride: int | None = None,
) -> Path:
    """Export the run in ``run_dir`` to a bundle directory ``out`` and return its path.

    ``map_stride`` overrides the run's anomaly-map resolution (it changes post-processing only,
    not the memory bank), so one run can be exported at several map resolutions.

    The FP32 ONNX graph is always made first and checked against torch (parity). Any other row of
    the formats table is derived from it in a second staging directory and must pass the accuracy
    guard against it (or be forced) before it replaces ``out``.
    """
    graph_format, prec = check_format(fmt, precision)
    reduced = reduced or ReducedPrecisionOptions()
    out = Path(out).resolve()
    if out.exists() and not overwrite:
        raise ExportError(f"{out}: already exists (pass --overwrite to replace it)")
    model, run = load_run(run_dir)
    if map_stride is not None:
        model.set_map_stride(map_stride)
    # The config the graph is made from (runs saved before a field existed get its default).
    run = {**run, "config": model.config.to_dict()}
    spec = InputSpec.from_dict(run["input_spec"])
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    derived: Path | None = None
    try:
        graph_name = "model.onnx"
        started = time.perf_counter()
        export_onnx(model, spec.height, spec.width, staging / graph_name)
        export_seconds = time.perf_counter() - started
        manifest = _write_train_manifest(staging, run)
        meta = _bundle_meta(run, spec, graph_name, GraphFormat.ONNX.value, Precision.FP32.value, manifest)
        _hash_files(staging, meta, [graph_name, manifest])
        meta["export"] = {"seconds": round(export_seconds, 2), "created": _now()}
        write_bundle_yaml(staging, meta)
        parity = check_parity(model, staging, run, parity_images)
        parity["tolerance"] = tolerance
        parity["tolerance_rule"] = "|score_torch - score_graph| <= tolerance * max(1, |score_torch|)"
        meta["export"]["parity"] = parity
        write_selftest(staging, meta, run, tolerance)
        if parity["max_rel_score_diff"] > tolerance:
            raise ExportError(
                f"parity check failed: torch and onnx scores differ by up to "
                f"{parity['max_abs_score_diff']:.3g} (relative {parity['max_rel_score_diff']:.3g} > tolerance {tolerance:g})"
            )
        final = staging
        if (graph_format, prec) != (GraphFormat.ONNX, Precision.FP32):
            derived = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
            derive_bundle(staging, derived, run, spec, graph_format, prec, meta, reduced)
            final = derived
        if out.exists():
            shutil.rmtree(out)
        final.rename(out)
    except BaseException:
        if derived is not None:
            shutil.rmtree(derived, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("bundle written to %s (parity max |score diff| %.3g)", out, parity["max_abs_score_diff"])
    return out


def derive_bundle(reference: Path, target: Path, run: dict[str, Any], spec: InputSpec, graph_format: GraphFormat,
                  prec: Precision, reference_meta: dict[str, Any], reduced: ReducedPrecisionOptions) -> None:
    """Write the ``graph_format``/``prec`` graph of the FP32 ``reference`` bundle into ``target``, guarded."""
    info = FORMATS[graph_format]
    graph_name = "model" + info.suffix
    source = reference / reference_meta["graph"]["file"]
    started = time.perf_counter()
    record: dict[str, Any] = {}
    if needs_calibration(prec):
        calib = calibration_set(run, spec, reduced.calib_dir, reduced.calib_count)
        record["calibration"] = calib.record
        if graph_format is GraphFormat.OPENVINO:
            record["quantization"] = quantize_openvino_int8(source, target / graph_name, calib)
        else:
            record["quantization"] = quantize_onnx_int8(source, target / graph_name, INPUT_NAME, calib)
    else:
        save_openvino_ir(source, target / graph_name, fp16=prec is Precision.FP16)
    seconds = time.perf_counter() - started
    manifest = reference_meta["training"]["train_manifest"]
    shutil.copy2(reference / manifest, target / manifest)
    shutil.copy2(reference / SELFTEST_IMAGE, target / SELFTEST_IMAGE)
    meta = copy.deepcopy(reference_meta)
    meta["graph"].update({"file": graph_name, "format": graph_format.value, "precision": prec.value})
    names = [graph_name]
    if info.weights_suffix:
        meta["graph"]["weights"] = "model" + info.weights_suffix
        names.append(meta["graph"]["weights"])
    _hash_files(target, meta, [*names, manifest, SELFTEST_IMAGE])
    meta["tools"] = tool_versions()
    meta["export"].update(record)
    meta["export"]["derived"] = {"from": "FP32 ONNX graph checked by the parity record", "seconds": round(seconds, 2)}
    write_bundle_yaml(target, meta)
    record_selftest(target, meta, reference_meta["selftest"]["tolerance"])
    if needs_accuracy_guard(prec):
        good = [Path(p) for p in run.get("validation_images") or []]
        guard = compare(reference, target, good, reduced.val_dir, reduced.max_auroc_drop, reduced.max_score_change)
        guard["forced"] = bool(reduced.force and not guard["passed"])
        meta["export"]["accuracy_guard"] = guard
        write_bundle_yaml(target, meta)
        if not guard["passed"] and not reduced.force:
            raise ExportError(f"accuracy guard refused the {graph_format.value}/{prec.value} graph: "
                              f"{'; '.join(guard['failures'])} (measured: {guard_summary(guard)}); "
                              "pass --force to write it anyway")
        if guard["forced"]:
            log.warning("accuracy guard failed but --force given: %s", "; ".join(guard["failures"]))


def guard_summary(guard: dict[str, Any]) -> str:
    """The guard's figures on one line."""
    text = (f"median relative score change {guard['median_rel_score_change_good']:.3f} (limit "
            f"{guard['max_score_change']} without --val), max {guard['max_rel_score_change_good']:.3f}, score rank "
            f"correlation {guard['score_rank_correlation_good']:.3f}, map rank correlation "
            f"{guard['map_rank_correlation_good']['mean']:.3f} on {guard['good_images']['count']} held-out good images")
    if "labelled" in guard:
        lab = guard["labelled"]
        text += (f"; image AUROC {lab['image_auroc']:.4f} vs FP32 {lab['image_auroc_fp32']:.4f} "
                 f"(drop {lab['auroc_drop_points']:.2f} points, tolerance {guard['max_auroc_drop_points']})")
    return text


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


def write_selftest(staging: Path, meta: dict[str, Any], run: dict[str, Any], tolerance: float) -> None:
    """Put a probe image in the bundle with the score this graph gives it, for the edge's load-time self-test.

    The probe is the first held-out image, resized to the input size (a few kB). The edge runs it
    before a (re)loaded bundle may decide anything: a graph that a different engine version,
    corrupt weights or a wrong preprocessing would make score differently is refused there.
    """
    paths = list(run.get("validation_images") or []) or list(run["train_images"])
    image = read_image(paths[0])
    probe = cv2.resize(image, (meta["input"]["width"], meta["input"]["height"]), interpolation=cv2.INTER_AREA)
    if not cv2.imwrite(str(staging / SELFTEST_IMAGE), probe):
        raise ExportError(f"cannot write {staging / SELFTEST_IMAGE}")
    _hash_files(staging, meta, [*meta["files"], SELFTEST_IMAGE])
    record_selftest(staging, meta, tolerance)


def record_selftest(bundle_dir: Path, meta: dict[str, Any], tolerance: float) -> None:
    """Score the probe through ``edge`` with this bundle's graph and record it in ``bundle.yaml``."""
    meta.pop("selftest", None)
    write_bundle_yaml(bundle_dir, meta)
    raw = Inspector(load_bundle(bundle_dir, require_thresholds=False)).run(read_image(bundle_dir / SELFTEST_IMAGE))
    meta["selftest"] = {"image": SELFTEST_IMAGE, "score": float(raw.score), "tolerance": float(tolerance),
                        "rule": "|score - selftest.score| <= tolerance * max(1, |selftest.score|)"}
    write_bundle_yaml(bundle_dir, meta)


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
    map_stride = int(config.get("map_stride", 1))
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
                "shape": [1, 1, spec.height // map_stride, spec.width // map_stride],
                "meaning": f"anomaly score per {map_stride}x{map_stride} input pixels (map_stride {map_stride}): "
                "nearest-neighbour patch distance to the memory bank, upsampled bilinearly and Gaussian-smoothed "
                "(raw units, not normalised); region boxes are scaled to image pixels",
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
