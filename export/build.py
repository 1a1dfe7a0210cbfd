"""Assembling a bundle from a training run: graph, ``bundle.yaml``, training manifest, parity check.

The bundle is built in a temporary directory beside the target and renamed into place only after
the parity check (and, for FP16/INT8, the accuracy guard of :mod:`export.guard`) has passed, so a
failed or interrupted export never leaves a bundle that looks usable. Parity runs the torch model and the exported graph on the same held-out images, the graph
through ``edge``'s own :class:`~edge.model.inspector.Inspector`, and records the largest difference.
"""

from __future__ import annotations

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
from edge.model.bundle import load_bundle, sha256_file, write_bundle_yaml
from edge.model.formats import FORMATS, GraphFormat, Precision, check_format
from edge.model.imageio import read_image
from edge.model.inspector import Inspector
from edge.model.layout import cover_frame, stitch
from edge.model.manifest import (
    SCHEMA_VERSION,
    AccuracyGuardRecord,
    AnomalyMapOutput,
    BundleManifest,
    DerivedRecord,
    ExportRecord,
    FileEntry,
    GraphSpec,
    ModelInfo,
    Normalization,
    Outputs,
    ParityRecord,
    ScoreOutput,
    SelfTest,
    TrainingRecord,
)
from edge.model.preprocess import InputSpec, prepare
from edge.model.selftest import SELFTEST_IMAGE
from export.defaults import PARITY_IMAGES, PARITY_TOLERANCE
from export.formats import needs_accuracy_guard, needs_calibration
from export.guard import DEFAULT_AUROC_DROP_POINTS, DEFAULT_MAX_SCORE_CHANGE, compare
from export.onnx_graph import INPUT_NAME, OUTPUT_NAMES, export_onnx
from export.quantize import (
    DEFAULT_CALIB_COUNT,
    calibration_set,
    quantize_onnx_int8,
    quantize_openvino_int8,
    save_openvino_ir,
)
from training.families.registry import family_of, load_run

log = logging.getLogger(__name__)

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
    family = family_of(run_dir)
    if map_stride is not None:
        family.set_map_stride(model, run, map_stride)
    # The config the graph is made from (runs saved before a field existed get its default).
    run = {**run, "config": model.config.to_dict()}
    spec = InputSpec.from_dict(run["input_spec"])
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    derived: Path | None = None
    try:
        graph_name = "model.onnx"
        started = time.perf_counter()
        export_onnx(model, spec.height, spec.width, staging / graph_name, dynamic_batch=spec.resize == "tile")
        export_seconds = time.perf_counter() - started
        train_manifest = _write_train_manifest(staging, run)
        manifest = _bundle_manifest(run, spec, graph_name, train_manifest,
                                    _hash_files(staging, [graph_name, train_manifest]),
                                    ExportRecord(seconds=round(export_seconds, 2), created=_now()),
                                    ModelInfo(**family.describe(model, run)), family.map_meaning(run["config"]),
                                    family.score_meaning(run["config"]))
        write_bundle_yaml(staging, manifest)
        parity = check_parity(model, staging, run, parity_images)
        assert manifest.export is not None
        manifest.export.parity = ParityRecord(
            **parity, tolerance=tolerance,
            tolerance_rule="|score_torch - score_graph| <= tolerance * max(1, |score_torch|)")
        write_selftest(staging, manifest, run, tolerance)
        if parity["max_rel_score_diff"] > tolerance:
            raise ExportError(
                f"parity check failed: torch and onnx scores differ by up to "
                f"{parity['max_abs_score_diff']:.3g} (relative {parity['max_rel_score_diff']:.3g} > tolerance {tolerance:g})"
            )
        final = staging
        if (graph_format, prec) != (GraphFormat.ONNX, Precision.FP32):
            derived = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
            derive_bundle(staging, derived, run, spec, graph_format, prec, manifest, reduced)
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
                  prec: Precision, reference_manifest: BundleManifest, reduced: ReducedPrecisionOptions) -> None:
    """Write the ``graph_format``/``prec`` graph of the FP32 ``reference`` bundle into ``target``, guarded."""
    info = FORMATS[graph_format]
    graph_name = "model" + info.suffix
    source = reference / reference_manifest.graph.file
    started = time.perf_counter()
    assert reference_manifest.selftest is not None  # build_bundle wrote it before deriving
    manifest = reference_manifest.model_copy(deep=True)
    assert manifest.export is not None and manifest.training is not None and manifest.training.train_manifest
    if needs_calibration(prec):
        calib = calibration_set(run, spec, reduced.calib_dir, reduced.calib_count)
        manifest.export.calibration = calib.record
        if graph_format is GraphFormat.OPENVINO:
            manifest.export.quantization = quantize_openvino_int8(source, target / graph_name, calib)
        else:
            manifest.export.quantization = quantize_onnx_int8(source, target / graph_name, INPUT_NAME, calib)
    else:
        save_openvino_ir(source, target / graph_name, fp16=prec is Precision.FP16)
    seconds = time.perf_counter() - started
    train_manifest = manifest.training.train_manifest
    shutil.copy2(reference / train_manifest, target / train_manifest)
    shutil.copy2(reference / SELFTEST_IMAGE, target / SELFTEST_IMAGE)
    weights = "model" + info.weights_suffix if info.weights_suffix else None
    manifest.graph = GraphSpec.model_validate({**reference_manifest.graph.model_dump(), "file": graph_name,
                                               "format": graph_format, "precision": prec, "weights": weights})
    manifest.files = _hash_files(target, [*manifest.graph.files(), train_manifest, SELFTEST_IMAGE])
    manifest.bundle_id = _bundle_id(manifest)
    manifest.tools = tool_versions()
    manifest.export.derived = DerivedRecord(from_="FP32 ONNX graph checked by the parity record",
                                            seconds=round(seconds, 2))
    write_bundle_yaml(target, manifest)
    record_selftest(target, manifest, reference_manifest.selftest.tolerance)
    if needs_accuracy_guard(prec):
        good = [Path(p) for p in run.get("validation_images") or []]
        measured = compare(reference, target, good, reduced.val_dir, reduced.max_auroc_drop, reduced.max_score_change)
        guard = AccuracyGuardRecord.model_validate({**measured, "forced": bool(reduced.force and not measured["passed"])})
        manifest.export.accuracy_guard = guard
        write_bundle_yaml(target, manifest)
        if not guard.passed and not reduced.force:
            raise ExportError(f"accuracy guard refused the {graph_format.value}/{prec.value} graph: "
                              f"{'; '.join(guard.failures)} (measured: {guard_summary(guard)}); "
                              "pass --force to write it anyway")
        if guard.forced:
            log.warning("accuracy guard failed but --force given: %s", "; ".join(guard.failures))


def guard_summary(guard: AccuracyGuardRecord) -> str:
    """The guard's figures on one line."""
    text = (f"median relative score change {guard.median_rel_score_change_good:.3f} (limit "
            f"{guard.max_score_change} without --val), max {guard.max_rel_score_change_good:.3f}, score rank "
            f"correlation {guard.score_rank_correlation_good:.3f}, map rank correlation "
            f"{guard.map_rank_correlation_good.mean:.3f} on {guard.good_images.count} held-out good images")
    if guard.labelled is not None:
        lab = guard.labelled
        text += (f"; image AUROC {lab.image_auroc:.4f} vs FP32 {lab.image_auroc_fp32:.4f} "
                 f"(drop {lab.auroc_drop_points:.2f} points, tolerance {guard.max_auroc_drop_points})")
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
        prepared = prepare(image, bundle.spec)
        with torch.no_grad():
            torch_maps, torch_scores = model(torch.from_numpy(prepared.tensor))
        maps = torch_maps.numpy()[:, 0]
        if prepared.layout.is_identity_crop:
            torch_map, torch_score_f = maps[0], float(torch_scores.reshape(-1)[0])
        else:  # the frame's map and score, as the Inspector makes them from the windows
            stitched = stitch(maps, prepared.layout)
            stride = bundle.spec.height // maps.shape[1]
            torch_map, torch_score_f = cover_frame(stitched, prepared.layout, stride), float(stitched.max())
        raw = inspector.run(image)
        diff = abs(torch_score_f - raw.score)
        abs_diffs.append(diff)
        rel_diffs.append(diff / max(1.0, abs(torch_score_f)))
        map_diffs.append(float(np.abs(torch_map - raw.anomaly_map).max()))
    return {
        "n_images": len(paths),
        "images": "validation split" if run.get("validation_images") else "training images",
        "max_abs_score_diff": float(max(abs_diffs)),
        "max_rel_score_diff": float(max(rel_diffs)),
        "max_abs_map_diff": float(max(map_diffs)),
    }


def write_selftest(staging: Path, manifest: BundleManifest, run: dict[str, Any], tolerance: float) -> None:
    """Put a probe image in the bundle with the score this graph gives it, for the edge's load-time self-test.

    The probe is the first held-out image, resized to the input size (a few kB). The edge runs it
    before a (re)loaded bundle may decide anything: a graph that a different engine version,
    corrupt weights or a wrong preprocessing would make score differently is refused there.
    """
    paths = list(run.get("validation_images") or []) or list(run["train_images"])
    image = read_image(paths[0])
    probe = cv2.resize(image, (manifest.input.width, manifest.input.height), interpolation=cv2.INTER_AREA)
    if not cv2.imwrite(str(staging / SELFTEST_IMAGE), probe):
        raise ExportError(f"cannot write {staging / SELFTEST_IMAGE}")
    manifest.files = _hash_files(staging, [*manifest.files, SELFTEST_IMAGE])
    record_selftest(staging, manifest, tolerance)


def record_selftest(bundle_dir: Path, manifest: BundleManifest, tolerance: float) -> None:
    """Score the probe through ``edge`` with this bundle's graph and record it in ``bundle.yaml``."""
    manifest.selftest = None
    write_bundle_yaml(bundle_dir, manifest)
    raw = Inspector(load_bundle(bundle_dir, require_thresholds=False)).run(read_image(bundle_dir / SELFTEST_IMAGE))
    manifest.selftest = SelfTest(image=SELFTEST_IMAGE, score=float(raw.score), tolerance=float(tolerance),
                                 rule="|score - selftest.score| <= tolerance * max(1, |selftest.score|)")
    write_bundle_yaml(bundle_dir, manifest)


def _hash_files(staging: Path, names: list[str]) -> dict[str, FileEntry]:
    """The sha256 and size of each bundle file, for ``files`` in ``bundle.yaml``."""
    return {name: FileEntry(sha256=sha256_file(staging / name), bytes=(staging / name).stat().st_size)
            for name in names}


def _bundle_id(manifest: BundleManifest) -> str:
    """``family-backbone-precision-<first 12 hex digits of the graph's sha256>``."""
    graph_sha = manifest.files[manifest.graph.file].sha256
    return f"{manifest.model.family}-{manifest.model.backbone}-{manifest.graph.precision.value}-{graph_sha[:12]}"


def _write_train_manifest(staging: Path, run: dict[str, Any]) -> str:
    """sha256 of every training image, so calibration can refuse images the model was fitted on."""
    lines = [f"{sha256_file(Path(p))}  {Path(p).name}" for p in run["train_images"]]
    (staging / TRAIN_MANIFEST).write_text("\n".join(lines) + "\n")
    return TRAIN_MANIFEST


def _bundle_manifest(run: dict[str, Any], spec: InputSpec, graph_name: str, train_manifest: str,
                     files: dict[str, FileEntry], export: ExportRecord, model: ModelInfo, map_meaning: str,
                     score_meaning: str) -> BundleManifest:
    """The manifest of the FP32 ONNX bundle, not yet calibrated (no thresholds) nor self-tested.

    ``model`` and the two meanings come from the run's family (:mod:`training.families.registry`).
    """
    config = run["config"]
    map_stride = int(config.get("map_stride", 1))
    manifest = BundleManifest(
        schema_version=SCHEMA_VERSION,
        bundle_id="-",  # replaced below: it is derived from the graph's sha256
        model=model,
        graph=GraphSpec(file=graph_name, format=GraphFormat.ONNX, precision=Precision.FP32, opset=18,
                        input_name=INPUT_NAME),
        input=spec,
        outputs=Outputs(
            anomaly_map=AnomalyMapOutput(
                name=OUTPUT_NAMES[0],
                shape=(1, 1, spec.height // map_stride, spec.width // map_stride),
                meaning=map_meaning,
            ),
            score=ScoreOutput(
                name=OUTPUT_NAMES[1],
                shape=[1],
                meaning=score_meaning,
            ),
        ),
        normalization=Normalization(
            method="threshold_ratio",
            formula="normalized = clip(0.5 * score / thresholds.image, 0, 1)",
            meaning="0.5 is the decision boundary; 1.0 is twice the threshold or more",
        ),
        thresholds=None,
        training=TrainingRecord(
            dataset=run.get("dataset"),
            n_train_images=run.get("n_train_images"),
            n_validation_images=run.get("n_validation_images"),
            validation_images=run.get("validation_images"),
            train_manifest=train_manifest,
            seed=run.get("seed"),
            device=run.get("device"),
            resources=run.get("resources"),
            preset=run.get("preset"),
        ),
        tools=tool_versions(),
        files=files,
        export=export,
    )
    manifest.bundle_id = _bundle_id(manifest)
    return manifest


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
