"""Evaluating bundles on a labelled test set, through ``edge``'s own inference path.

The figures are those of the deployed artefact: the exported graph run by
:class:`edge.model.inspector.Inspector` with the thresholds in ``bundle.yaml``. Image AUROC comes
from the image scores; pixel AUROC and AUPRO from the anomaly maps resized to each mask's full
resolution and binned as they go (:mod:`calibration.pixelmetrics`), so memory stays flat however
many pixels the masks hold; F1, false-reject and escape rates from the calibrated decision, per
defect type and overall. Several bundles are run image by image in turn (not one after the
other), so their latencies are measured under the same load and each mask is read once.

:func:`evaluate_bundles` keeps what a report needs besides the figures (per-image maps at model
resolution, regions, curves); :func:`evaluate` is the figures of one bundle, as JSON-ready data.
"""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from calibration.metrics import decision_rates
from calibration.pixelmetrics import DEFAULT_BINS, PixelCurves, PixelHistogram, exact_curves
from edge.model.bundle import Bundle, load_bundle
from edge.model.imageio import ImageReadError, read_image
from edge.model.inspector import Inspector, Region
from edge.ops.latency import percentiles
from export.heldout import GOOD, LabelledImage, labelled_test_images, roc_auc

log = logging.getLogger(__name__)

OVERALL = "overall"


@dataclass
class ImageResult:
    """One test image as one bundle saw it."""

    item: LabelledImage
    shape: tuple[int, int]
    score: float
    normalized_score: float
    verdict: str
    regions: list[Region]
    anomaly_map: np.ndarray  # model resolution, raw units

    @property
    def is_defect(self) -> bool:
        """Whether the image is of a defect (not in test/good)."""
        return self.item.is_defect


@dataclass
class Evaluation:
    """One bundle's evaluation: per-image results, pixel curves and the JSON-ready figures."""

    bundle: Bundle
    backend: str
    results: list[ImageResult]
    timings: list[dict[str, float]]
    pixels: dict[str, PixelCurves] = field(default_factory=dict)  # OVERALL and each defect type
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def threshold(self) -> float:
        """The bundle's calibrated image threshold."""
        assert self.bundle.thresholds is not None
        return self.bundle.thresholds.image

    @property
    def labels(self) -> np.ndarray:
        """True for each defect image, in result order."""
        return np.array([r.is_defect for r in self.results], bool)

    @property
    def scores(self) -> np.ndarray:
        """The image scores, in result order."""
        return np.array([r.score for r in self.results])


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def evaluate(bundle_dir: str | Path, data_dir: str | Path, threads: int | None = None,
             backend: str | None = None) -> dict[str, Any]:
    """Run one bundle on ``data_dir/test`` and return overall, per-type and per-image figures."""
    return evaluate_bundles([bundle_dir], data_dir, threads, backend)[0].figures


def evaluate_bundles(bundle_dirs: Sequence[str | Path], data_dir: str | Path, threads: int | None = None,
                     backend: str | None = None, bins: int = DEFAULT_BINS,
                     progress: bool = True) -> list[Evaluation]:
    """Run each bundle on every test image (interleaved), then the pixel metrics; figures in each ``.figures``."""
    bundles = [load_bundle(d) for d in bundle_dirs]
    inspectors = [Inspector(b, threads=threads, backend=backend) for b in bundles]
    items = labelled_test_images(data_dir)
    t0 = time.perf_counter()
    evaluations = [Evaluation(b, i.backend.name, [], []) for b, i in zip(bundles, inspectors, strict=True)]
    unreadable = _infer(inspectors, evaluations, items, progress)
    t1, c1 = time.perf_counter(), time.process_time()
    _pixel_metrics(evaluations, bins, progress)
    t2, c2 = time.perf_counter(), time.process_time()
    for evaluation in evaluations:
        evaluation.figures = _figures(evaluation, data_dir, unreadable)
        evaluation.figures["timing"] = {"inference_s": round(t1 - t0, 2), "pixel_metrics_s": round(t2 - t1, 2),
                                        "pixel_metrics_cpu_s": round(c2 - c1, 2),
                                        "bundles_in_run": len(bundles), "peak_rss_mb": round(peak_rss_mb(), 1)}
    return evaluations


def _infer(inspectors: list[Inspector], evaluations: list[Evaluation], items: list[LabelledImage],
           progress: bool) -> list[str]:
    """Each image decoded once and inspected by every bundle, the order rotating so none always goes first."""
    unreadable = []
    for index, item in enumerate(tqdm(items, desc="inspect", unit="img", disable=not progress)):
        try:
            image = read_image(item.path)
        except ImageReadError as exc:
            log.warning("skipping %s", exc)
            unreadable.append(str(item.path))
            continue
        order = list(range(len(inspectors)))
        order = order[index % len(order):] + order[: index % len(order)]
        for k in order:
            found = inspectors[k].inspect(image)
            evaluations[k].timings.append(found.timings_ms)
            evaluations[k].results.append(ImageResult(
                item=item, shape=image.shape[:2], score=found.score, normalized_score=found.normalized_score,
                verdict=found.verdict, regions=found.regions, anomaly_map=found.anomaly_map))
    return unreadable


def read_mask(item: LabelledImage, shape: tuple[int, int]) -> np.ndarray | None:
    """Boolean defect mask of ``shape``: all False for good images, None if a defect has no mask."""
    if not item.is_defect:
        return np.zeros(shape, bool)
    if item.mask is None:
        return None
    mask = read_image(item.mask)
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    if mask.shape != shape:
        mask = cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return mask > 127


def full_resolution(anomaly_map: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The map resized (bilinear) to an image's height and width, as its mask is compared with it."""
    return cv2.resize(anomaly_map, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def _pixel_metrics(evaluations: list[Evaluation], bins: int, progress: bool) -> None:
    """One histogram per bundle and defect type (good images in their own), each mask read once."""
    histograms: list[dict[str, PixelHistogram]] = []
    for evaluation in evaluations:
        lo = min(float(r.anomaly_map.min()) for r in evaluation.results)
        hi = max(float(r.anomaly_map.max()) for r in evaluation.results)
        histograms.append({t: PixelHistogram(lo, hi, bins) for t in {r.item.defect_type for r in evaluation.results}})
    if not evaluations or not evaluations[0].results:
        return
    n = len(evaluations[0].results)
    for index in tqdm(range(n), desc="pixels", unit="img", disable=not progress):
        first = evaluations[0].results[index]
        mask = read_mask(first.item, first.shape)
        if mask is None:
            continue  # a defect without a mask file: image-level figures only
        for evaluation, per_type in zip(evaluations, histograms, strict=True):
            result = evaluation.results[index]
            per_type[result.item.defect_type].add(full_resolution(result.anomaly_map, result.shape), mask)
    for evaluation, per_type in zip(evaluations, histograms, strict=True):
        good = per_type.get(GOOD)
        total = None
        for defect_type, histogram in per_type.items():
            total = histogram if total is None else total + histogram
            if defect_type != GOOD:
                evaluation.pixels[defect_type] = (histogram + good if good else histogram).curves()
        if total is not None:
            evaluation.pixels[OVERALL] = total.curves()


def _figures(evaluation: Evaluation, data_dir: str | Path, unreadable: list[str]) -> dict[str, Any]:
    bundle, threshold = evaluation.bundle, evaluation.threshold
    assert bundle.thresholds is not None
    results = evaluation.results
    types = sorted({r.item.defect_type for r in results} - {GOOD})
    per_type = {}
    for defect_type in types:
        index = [i for i, r in enumerate(results) if r.item.defect_type in (defect_type, GOOD)]
        per_type[defect_type] = _group_figures(evaluation, index, evaluation.pixels.get(defect_type), defect_type)
    good_index = [i for i, r in enumerate(results) if not r.is_defect]
    labels, scores = evaluation.labels, evaluation.scores
    ng = scores > threshold
    return {
        "bundle": str(bundle.root), "bundle_id": bundle.bundle_id, "data": str(Path(data_dir).resolve()),
        "threshold": threshold, "pixel_threshold": bundle.thresholds.pixel, "strategy": bundle.thresholds.strategy,
        "backend": evaluation.backend,
        **_group_figures(evaluation, range(len(results)), evaluation.pixels.get(OVERALL), None),
        "good": {"n_images": len(good_index), "false_rejects": int(np.sum(ng & ~labels)),
                 "mean_regions": _mean([len(results[i].regions) for i in good_index])},
        "confusion": {"true_ng": int(np.sum(ng & labels)), "escapes": int(np.sum(~ng & labels)),
                      "false_rejects": int(np.sum(ng & ~labels)), "true_ok": int(np.sum(~ng & ~labels))},
        "latency_ms": latency_summary(evaluation.timings), "bundle_info": bundle_info(evaluation),
        "per_defect_type": per_type, "unreadable": unreadable,
        "images": [{"path": str(r.item.path), "defect_type": r.item.defect_type, "score": r.score,
                    "verdict": r.verdict, "n_regions": len(r.regions)} for r in results],
    }


def _group_figures(evaluation: Evaluation, index: Any, pixels: PixelCurves | None,
                   defect_type: str | None) -> dict[str, Any]:
    index = list(index)
    results = [evaluation.results[i] for i in index]
    labels = np.array([r.is_defect for r in results], bool)
    scores = np.array([r.score for r in results])
    defects = [r for r in results if r.is_defect and (defect_type is None or r.item.defect_type == defect_type)]
    return {
        "image_auroc": roc_auc(labels, scores),
        "pixel_auroc": pixels.auroc if pixels else float("nan"),
        "aupro": pixels.aupro if pixels else float("nan"),
        **decision_rates(labels, scores, evaluation.threshold),
        "escapes": sum(r.verdict == "OK" for r in defects),
        "mean_regions": _mean([len(r.regions) for r in defects]),
        "n_images": len(index), "n_good": int((~labels).sum()), "n_defect": int(labels.sum()),
        "n_regions_gt": pixels.n_regions if pixels else 0,
    }


def _mean(values: list[int]) -> float:
    return float(np.mean(values)) if values else float("nan")


def bundle_info(evaluation: Evaluation) -> dict[str, Any]:
    """What the report's summary says about the bundle: model, precision, engine, training, calibration, versions."""
    manifest = evaluation.bundle.manifest
    thresholds = manifest.thresholds
    calibration = thresholds.calibration if thresholds else None
    training = manifest.training
    tools = dict(manifest.tools) if manifest.tools else {}
    return {
        "family": manifest.model.family, "backbone": manifest.model.backbone,
        "format": manifest.graph.format.value, "precision": manifest.graph.precision.value,
        "engine": evaluation.backend,
        "training_data": training.dataset if training else None,
        "n_train_images": training.n_train_images if training else None,
        "calibration_strategy": thresholds.strategy if thresholds else None,
        "calibration_params": thresholds.params if thresholds else {},
        "calibration_images": calibration.n_good if calibration else None,
        "calibrated": calibration.created if calibration else None,
        "memory_bank": manifest.model.memory_bank,
        "size_mb": round(sum((evaluation.bundle.root / n).stat().st_size for n in manifest.files) / 1e6, 2),
        "versions": {k: tools[k] for k in ("edge", "onnxruntime", "openvino", "torch", "python") if k in tools},
    }


def latency_summary(timings: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """p50/p95/p99 per stage and in total (decode excluded), as ``edge-inspect bench`` reports them."""
    if not timings:
        return {}
    stages = {stage: np.array([t[stage] for t in timings]) for stage in timings[0]}
    stages["total"] = np.sum(list(stages.values()), axis=0)
    return {stage: percentiles(list(v)) for stage, v in stages.items()}


def pixel_check(evaluation: Evaluation, n_images: int, bins: int = DEFAULT_BINS) -> dict[str, Any]:
    """Binned vs exact pixel AUROC and AUPRO on ``n_images`` evenly spaced test images at full resolution.

    The times exclude reading the masks and resizing the maps (done once for both); with every
    image, the exact computation is the cost of not binning: all pixels in memory and one sort.
    """
    with_masks = [r for r in evaluation.results if not r.is_defect or r.item.mask is not None]
    picked = [with_masks[round(i)] for i in np.linspace(0, len(with_masks) - 1, min(n_images, len(with_masks)))]
    maps = [full_resolution(r.anomaly_map, r.shape) for r in picked]
    masks = [m for m in (read_mask(r.item, r.shape) for r in picked) if m is not None]  # all have one
    lo = min(float(r.anomaly_map.min()) for r in evaluation.results)
    hi = max(float(r.anomaly_map.max()) for r in evaluation.results)
    t0 = time.perf_counter()
    histogram = PixelHistogram(lo, hi, bins)
    for scores, mask in zip(maps, masks, strict=True):
        histogram.add(scores, mask)
    binned = histogram.curves()
    t1 = time.perf_counter()
    exact = exact_curves(maps, masks)
    t2 = time.perf_counter()
    return {"images": len(picked), "pixels": int(sum(m.size for m in maps)), "bins": bins,
            "auroc_binned": binned.auroc, "auroc_exact": exact.auroc,
            "aupro_binned": binned.aupro, "aupro_exact": exact.aupro,
            "binned_s": round(t1 - t0, 3), "exact_s": round(t2 - t1, 3), "peak_rss_mb": round(peak_rss_mb(), 1)}
