"""Scoring a fitted torch PatchCore on a labelled test set the way ``edge-eval`` scores a bundle.

A sweep over dozens of settings cannot export, calibrate and benchmark every point, so the studies
score the torch model directly through :class:`training.scorer.TorchScorer` (the edge's own
geometry around the torch model), and the AUROCs are over the same masks :mod:`calibration.evaluate` reads (image AUROC exact by
:mod:`calibration.metrics`; pixel AUROC from score histograms, within 1e-4 of the exact figure).
Export's parity check holds the graph to the torch model, so the figures carry over to the bundle
(the chosen settings are then confirmed through the real pipeline). Test images are decoded once
and kept in memory for all the points of a sweep.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from calibration.evaluate import read_mask
from edge.model.imageio import read_image
from edge.model.preprocess import InputSpec
from export.heldout import GOOD, labelled_test_images, roc_auc
from training.patchcore import PatchCore
from training.scorer import TorchScorer


@dataclass
class TestSet:
    """Decoded test images with their defect type and frame-sized boolean mask (None: no mask)."""

    images: list[np.ndarray]
    types: list[str]
    masks: list[np.ndarray | None]
    paths: list[Path] = field(default_factory=list)


def load_test_set(data_dir: Path, every: int = 1) -> TestSet:
    """The labelled test set of ``data_dir`` (every ``every``-th image of each type)."""
    items = labelled_test_images(data_dir)
    by_type: dict[str, int] = {}
    chosen = []
    for item in items:
        index = by_type.get(item.defect_type, 0)
        by_type[item.defect_type] = index + 1
        if index % every == 0:
            chosen.append(item)
    images = [read_image(item.path) for item in chosen]
    masks = [read_mask(item, image.shape[:2]) for item, image in zip(chosen, images)]
    return TestSet(images, [item.defect_type for item in chosen], masks, [item.path for item in chosen])


def score_model(model: PatchCore, spec: InputSpec, test: TestSet, progress: bool = False) -> dict[str, Any]:
    """Image and pixel AUROC overall and per defect type, and the torch scoring time per image."""
    scorer = TorchScorer(model, spec)
    scores: list[float] = []
    maps: list[np.ndarray] = []
    started = time.perf_counter()
    for image in tqdm(test.images, desc="score", unit="img", disable=not progress, leave=False):
        score, frame_map = scorer(image)
        scores.append(score)
        maps.append(frame_map)
    seconds = time.perf_counter() - started
    labels = np.array([t != GOOD for t in test.types])
    pixels = PixelHistograms(test, maps)
    result: dict[str, Any] = {"image_auroc": roc_auc(labels, np.array(scores)),
                              "pixel_auroc": pixels.auroc(range(len(maps))),
                              "ms_per_image": 1e3 * seconds / max(1, len(maps)), "per_type": {}}
    for defect in sorted(set(test.types) - {GOOD}):
        index = [i for i, t in enumerate(test.types) if t in (defect, GOOD)]
        result["per_type"][defect] = {
            "image_auroc": roc_auc(labels[index], np.array(scores)[index]),
            "pixel_auroc": pixels.auroc(index),
        }
    result["scores"] = scores
    return result


PIXEL_BINS = 1 << 16


def binned_auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """ROC AUC from per-bin counts of positives and negatives (ties within a bin count half)."""
    n_pos, n_neg = positive.sum(), negative.sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    neg_below = np.concatenate(([0], np.cumsum(negative)[:-1]))
    return float(np.sum(positive * (neg_below + 0.5 * negative)) / (float(n_pos) * float(n_neg)))


class PixelHistograms:
    """Per image, the counts of defect and good pixels per score bin (one pass; subsets add up).

    Sorting 50 million pixels once per defect type was most of a sweep point's time; with the
    scores in 65536 bins between the global minimum and maximum, AUROC over any subset of images is
    a sum of histograms and differs from the exact one by less than 1e-4.
    """

    def __init__(self, test: TestSet, maps: list[np.ndarray]) -> None:
        low = min(float(m.min()) for m in maps)
        high = max(float(m.max()) for m in maps)
        scale = (PIXEL_BINS - 1) / max(high - low, 1e-12)
        self.positive: list[np.ndarray | None] = []
        self.negative: list[np.ndarray | None] = []
        for frame_map, mask in zip(maps, test.masks):
            if mask is None:
                self.positive.append(None)
                self.negative.append(None)
                continue
            bins = ((frame_map.ravel() - low) * scale).astype(np.int64)
            labels = mask.ravel()
            self.positive.append(np.bincount(bins[labels], minlength=PIXEL_BINS))
            self.negative.append(np.bincount(bins[~labels], minlength=PIXEL_BINS))

    def auroc(self, index: Any) -> float:
        chosen = [i for i in index if self.positive[i] is not None]
        if not chosen:
            return float("nan")
        return binned_auroc(sum(self.positive[i] for i in chosen),  # type: ignore[arg-type, misc]
                            sum(self.negative[i] for i in chosen))  # type: ignore[arg-type, misc]
