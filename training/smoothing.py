"""Choosing the anomaly map's smoothing from good images alone (``edge-train --sigma auto``).

No one smoothing suits every part. A broad defect (magnetic_tile's "uneven": a band of wrong
brightness and texture) is only slightly off patch by patch, and its whole area rises above the
good texture only under a wide Gaussian; a small one (a bottle's contamination, a crack) keeps its
peak only under a narrow one. Measured with ``python -m studies.features --vary sigma=...``
(docs/accuracy.md): on bottle pixel AUROC falls from 0.986 at sigma 4 to 0.969 at 32, on
magnetic_tile it rises from 0.78 to 0.83.

The smoothing is post-processing only (the memory bank does not depend on it), so it can be chosen
cheaply after the bank is built: the validation split (never in the bank) is scored as it is and
with one synthetic defect of every kind drawn on each image (:mod:`training.synthetic_defects`),
the features and nearest-neighbour distances once, then each candidate sigma's smoothing. The
sigma with the best mean of synthetic image and pixel AUROC wins; ties go to the narrower. What
was measured and chosen goes into ``run.yaml`` under ``smoothing``.

It is opt-in (``edge-train --sigma auto``), not the default, because ``python -m studies.smoothing``
showed the synthetic defects to be the wrong guide on magnetic_tile: they favour sigma 4 there
while the real defects favour 16 to 32 (the broad "uneven" type looks like none of the synthetic
kinds); on bottle it picks 8 where 4 is best, by a difference within noise (docs/accuracy.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.model.preprocess import InputSpec
from training.auroc import roc_auc
from training.patchcore import PatchCore
from training.scorer import TorchScorer
from training.tune import synthetic_set

log = logging.getLogger(__name__)

SIGMA_CANDIDATES = (4.0, 8.0, 16.0, 32.0)  # input pixels
MIN_IMAGES = 4
PIXELS_PER_SIGMA = 2_000_000  # pixel AUROC on a regular subsample of about this many frame pixels


def choose_sigma(model: PatchCore, spec: InputSpec, images: Sequence[Path], seed: int = 0,
                 candidates: Sequence[float] = SIGMA_CANDIDATES) -> tuple[float, dict[str, Any]]:
    """Set the model's sigma to the best of ``candidates`` on ``images`` with synthetic defects.

    Returns the sigma and the ``run.yaml`` record. With fewer than ``MIN_IMAGES`` images the
    model's own sigma is kept (and the record says why).
    """
    started = time.perf_counter()
    if len(images) < MIN_IMAGES:
        return model.config.sigma, {"chosen": model.config.sigma,
                                    "why": f"kept: fewer than {MIN_IMAGES} validation images"}
    synthetic = synthetic_set(images, seed)
    frames = [(image, None) for image in synthetic.good] + [(image, mask) for _, image, mask in synthetic.defects]
    scorer = TorchScorer(model, spec)
    distances = [scorer.distances(image) for image, _ in frames]
    total = sum(image.shape[0] * image.shape[1] for image, _ in frames)
    step = max(1, int(np.ceil(np.sqrt(total / PIXELS_PER_SIGMA))))
    rows = []
    for sigma in candidates:
        model.set_sigma(float(sigma))
        scores, labels, pixel_scores, pixel_labels = [], [], [], []
        for (image, mask), (dist, layout) in zip(frames, distances, strict=True):
            score, frame_map = scorer.finish(dist, layout)
            scores.append(score)
            labels.append(mask is not None)
            pixel_scores.append(frame_map[::step, ::step].ravel())
            pixel_labels.append((mask[::step, ::step] > 127).ravel() if mask is not None
                                else np.zeros(pixel_scores[-1].shape, bool))
        image_auroc = roc_auc(np.array(labels), np.array(scores))
        pixel_auroc = roc_auc(np.concatenate(pixel_labels), np.concatenate(pixel_scores))
        rows.append({"sigma": float(sigma), "image_auroc": round(image_auroc, 4), "pixel_auroc": round(pixel_auroc, 4),
                     "key": round((image_auroc + pixel_auroc) / 2, 4)})
    best = max(rows, key=lambda r: (r["key"], -r["sigma"]))
    model.set_sigma(best["sigma"])
    for row in rows:
        log.info("smoothing sigma %-5g synthetic image %.4f pixel %.4f", row["sigma"], row["image_auroc"],
                 row["pixel_auroc"])
    record = {"images": len(synthetic.good), "synthetic_defects": len(synthetic.defects),
              "ranking": "mean of synthetic image and pixel AUROC on the validation split; ties to the narrower",
              "candidates": rows, "chosen": best["sigma"], "seconds": round(time.perf_counter() - started, 2)}
    return best["sigma"], record
