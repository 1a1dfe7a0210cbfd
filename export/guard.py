"""The accuracy guard: a reduced-precision graph must still find what the FP32 graph finds.

Both graphs run through ``edge``'s own :class:`~edge.model.inspector.Inspector` (each on the backend its
bundle calls for) on held-out images: the run's validation split, never the calibration images.
With labelled defects (``--val DIR`` in MVTec layout) the criterion is the drop of image AUROC,
at most the tolerance in AUROC points. Without labels it is the median relative change of the
good images' scores, at most a limit. The rank correlations of the good images' scores and of
their anomaly maps (Spearman) are measured and recorded, but they are not criteria: good parts
score within a few per cent of each other and their maps are flat, so their order is set by noise.
Measured on bottle: an INT8 graph that keeps image AUROC at 1.0 has score rank correlation 0.01 and
map rank correlation 0.10 against FP32, no better than a saturated one with AUROC 0.53, while the
median relative score change separates them (below 0.5 against several times the score).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from edge.model.bundle import load_bundle
from edge.model.imageio import read_image
from edge.model.inspector import Inspector
from export.heldout import labelled_test_images, roc_auc

log = logging.getLogger(__name__)

DEFAULT_AUROC_DROP_POINTS = 0.5
DEFAULT_MAX_SCORE_CHANGE = 0.5  # median |score - score_fp32| / score_fp32 on held-out good images
MAP_STRIDE = 4  # maps are compared on every 4th pixel in each direction: smooth maps, 16x less sorting


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (ties broken by order; maps are continuous); 0 when one side is constant."""
    ra = np.argsort(np.argsort(np.asarray(a).ravel(), kind="stable"), kind="stable").astype(np.float64)
    rb = np.argsort(np.argsort(np.asarray(b).ravel(), kind="stable"), kind="stable").astype(np.float64)
    if np.ptp(np.asarray(a)) == 0 or np.ptp(np.asarray(b)) == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def compare(reference_dir: Path, candidate_dir: Path, good_images: list[Path], val_dir: Path | None,
            max_auroc_drop: float = DEFAULT_AUROC_DROP_POINTS,
            max_score_change: float = DEFAULT_MAX_SCORE_CHANGE) -> dict[str, Any]:
    """Measure the candidate bundle against the FP32 reference; ``passed`` says whether it may be written."""
    if not good_images:
        raise ValueError("accuracy guard: no held-out good images (the run has no validation split)")
    reference = Inspector(load_bundle(reference_dir, require_thresholds=False))
    candidate = Inspector(load_bundle(candidate_dir, require_thresholds=False))
    ref_scores, cand_scores, map_corr = [], [], []
    for path in tqdm(good_images, desc="guard", unit="img", leave=False):
        image = read_image(path)
        ref, cand = reference.run(image), candidate.run(image)
        ref_scores.append(ref.score)
        cand_scores.append(cand.score)
        s = MAP_STRIDE
        map_corr.append(rank_correlation(ref.anomaly_map[::s, ::s], cand.anomaly_map[::s, ::s]))
    ref_arr, cand_arr = np.asarray(ref_scores), np.asarray(cand_scores)
    record: dict[str, Any] = {
        "reference": "FP32 ONNX graph of the same run, on onnxruntime",
        "candidate_backend": candidate.backend.name,
        "good_images": {"source": "validation split of the run", "count": len(good_images)},
        "score_rank_correlation_good": round(rank_correlation(ref_arr, cand_arr), 4),
        "median_rel_score_change_good": round(float(np.median(np.abs(cand_arr - ref_arr) / np.abs(ref_arr))), 4),
        "max_rel_score_change_good": round(float(np.max(np.abs(cand_arr - ref_arr) / np.abs(ref_arr))), 4),
        "map_rank_correlation_good": {"mean": round(float(np.mean(map_corr)), 4),
                                      "min": round(float(np.min(map_corr)), 4)},
        "max_score_change": max_score_change,
        "max_auroc_drop_points": max_auroc_drop,
    }
    failures = []
    if val_dir is None and record["median_rel_score_change_good"] > max_score_change:
        failures.append(f"median relative score change on good images {record['median_rel_score_change_good']:.3f} "
                        f"> limit {max_score_change}")
    if val_dir is not None:
        items = labelled_test_images(val_dir)
        labels = np.array([item.is_defect for item in items])
        ref_val, cand_val = [], []
        for item in tqdm(items, desc="guard val", unit="img", leave=False):
            image = read_image(item.path)
            ref_val.append(reference.run(image).score)
            cand_val.append(candidate.run(image).score)
        auroc_ref, auroc_cand = roc_auc(labels, np.asarray(ref_val)), roc_auc(labels, np.asarray(cand_val))
        drop = (auroc_ref - auroc_cand) * 100.0
        record["labelled"] = {"source": str(Path(val_dir).resolve()), "n_images": len(items),
                              "n_defect": int(labels.sum()), "image_auroc_fp32": round(auroc_ref, 4),
                              "image_auroc": round(auroc_cand, 4), "auroc_drop_points": round(drop, 2)}
        if drop > max_auroc_drop:
            failures.append(f"image AUROC {auroc_cand:.4f} vs FP32 {auroc_ref:.4f}: drop {drop:.2f} points "
                            f"> tolerance {max_auroc_drop}")
    record["passed"] = not failures
    record["failures"] = failures
    return record
