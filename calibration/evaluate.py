"""Evaluating a bundle on a labelled test set, through ``edge``'s own inference path.

The figures are those of the deployed artefact: the exported graph run by
:class:`edge.model.inspector.Inspector` with the thresholds in ``bundle.yaml``. Image AUROC comes from
the image scores, pixel AUROC from the anomaly maps resized to each mask's size, and F1, false-
reject and escape rates from the calibrated decision, per defect type and overall.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from calibration.metrics import decision_rates
from edge.model.bundle import load_bundle
from edge.model.imageio import ImageReadError, read_image
from edge.model.inspector import Inspector
from edge.ops.latency import percentiles
from export.heldout import GOOD, LabelledImage, labelled_test_images, roc_auc

log = logging.getLogger(__name__)


def evaluate(bundle_dir: str | Path, data_dir: str | Path, threads: int | None = None,
             backend: str | None = None) -> dict[str, Any]:
    """Run the bundle on ``data_dir/test`` and return overall, per-type and per-image results."""
    bundle = load_bundle(bundle_dir)
    assert bundle.thresholds is not None
    inspector = Inspector(bundle, threads=threads, backend=backend)
    items = labelled_test_images(data_dir)
    records: list[dict[str, Any]] = []
    pixel_scores: list[np.ndarray] = []
    pixel_labels: list[np.ndarray] = []
    unreadable = []
    timings: list[dict[str, float]] = []
    for item in tqdm(items, desc="eval", unit="img"):
        try:
            image = read_image(item.path)
        except ImageReadError as exc:
            log.warning("skipping %s", exc)
            unreadable.append(str(item.path))
            continue
        result = inspector.inspect(image)
        timings.append(result.timings_ms)
        records.append({
            "path": str(item.path), "defect_type": item.defect_type, "score": result.score,
            "verdict": result.verdict, "n_regions": len(result.regions),
        })
        mask = _mask_for(item, image.shape[:2])
        if mask is not None:
            pixel_labels.append(mask.ravel())
            pixel_scores.append(cv2.resize(result.anomaly_map, (mask.shape[1], mask.shape[0]),
                                           interpolation=cv2.INTER_LINEAR).ravel())
        else:
            pixel_labels.append(np.zeros(0, bool))
            pixel_scores.append(np.zeros(0, np.float32))
    threshold = bundle.thresholds.image
    types = sorted({r["defect_type"] for r in records} - {GOOD})
    overall = _metrics(records, pixel_scores, pixel_labels, range(len(records)), threshold)
    per_type = {}
    for defect_type in types:
        index = [i for i, r in enumerate(records) if r["defect_type"] in (defect_type, GOOD)]
        per_type[defect_type] = _metrics(records, pixel_scores, pixel_labels, index, threshold)
    return {
        "bundle": str(bundle.root), "bundle_id": bundle.bundle_id, "data": str(Path(data_dir).resolve()),
        "threshold": threshold, "strategy": bundle.thresholds.strategy,
        "backend": inspector.backend.name, **overall, "latency_ms": latency_summary(timings),
        "per_defect_type": per_type, "unreadable": unreadable, "images": records,
    }


def latency_summary(timings: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """p50/p95/p99 per stage and in total (decode excluded), as ``edge-inspect bench`` reports them."""
    if not timings:
        return {}
    stages = {stage: np.array([t[stage] for t in timings]) for stage in timings[0]}
    stages["total"] = np.sum(list(stages.values()), axis=0)
    return {stage: percentiles(list(v)) for stage, v in stages.items()}


def _mask_for(item: LabelledImage, shape: tuple[int, int]) -> np.ndarray | None:
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


def _metrics(records: list[dict[str, Any]], pixel_scores: list[np.ndarray], pixel_labels: list[np.ndarray],
             index: Any, threshold: float) -> dict[str, Any]:
    index = list(index)
    labels = np.array([records[i]["defect_type"] != GOOD for i in index])
    scores = np.array([records[i]["score"] for i in index])
    rates = decision_rates(labels, scores, threshold)
    has_pixels = [i for i in index if pixel_labels[i].size]
    pixel_auroc = float("nan")
    if has_pixels:
        pixel_auroc = roc_auc(np.concatenate([pixel_labels[i] for i in has_pixels]),
                              np.concatenate([pixel_scores[i] for i in has_pixels]))
    return {
        "image_auroc": roc_auc(labels, scores),
        "pixel_auroc": pixel_auroc,
        **rates,
        "n_images": len(index),
        "n_good": int((~labels).sum()),
        "n_defect": int(labels.sum()),
    }
