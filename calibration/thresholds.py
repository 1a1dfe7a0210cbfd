"""Threshold strategies: how held-out scores become the image threshold a bundle decides with.

Each is what users bring from reconstruction-model and anomaly-detection projects, and each has
its place (docs/calibration.md says when to use which):

- ``quantile`` (default) needs only good images: the threshold is the score that a target
  fraction of good parts exceeds, i.e. it sets the false-reject rate directly, which is what a
  plant can state up front. It needs at least ``1 / target`` good images: a 1 % quantile of
  fewer than 100 scores is the largest score, not a 1 % false-reject rate.
- ``mean_std``: mean + k standard deviations of the good scores (k = 3 by default); assumes
  roughly normal scores, and a long upper tail makes it loose.
- ``iqr``: Q3 + k times the interquartile range of the good scores (Tukey's fence, k = 1.5 by
  default); robust to a few odd good images, which would inflate a standard deviation.
- ``f1`` needs labelled defects and picks the threshold that maximises F1 on them.

A threshold set by hand (``edge-calibrate --set-threshold``) is recorded as ``manual``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from calibration.metrics import f1_optimal_threshold

STRATEGIES = ("quantile", "mean_std", "iqr", "f1")
MANUAL = "manual"
DEFAULT_TARGET_FRR = 0.01
DEFAULT_K = {"mean_std": 3.0, "iqr": 1.5}
# Good images a spread-based strategy (mean_std, iqr, f1, or quantile at target 0) needs at least.
MIN_GOOD_IMAGES = 10


def default_k(strategy: str) -> float:
    """The k a strategy uses when none is given (3 for mean_std, 1.5 for iqr; unused by the others)."""
    return DEFAULT_K.get(strategy, DEFAULT_K["mean_std"])


def min_good_images(strategy: str, target_frr: float = DEFAULT_TARGET_FRR) -> int:
    """How many held-out good images ``strategy`` needs for its threshold to mean what it says."""
    if strategy == "quantile" and target_frr > 0:
        return max(MIN_GOOD_IMAGES, math.ceil(1.0 / target_frr - 1e-9))
    return MIN_GOOD_IMAGES


def image_threshold(
    strategy: str,
    good_scores: np.ndarray,
    defect_scores: np.ndarray | None = None,
    target_frr: float = DEFAULT_TARGET_FRR,
    k: float | None = None,
) -> tuple[float, dict[str, Any]]:
    """Return ``(threshold, params)`` for ``strategy``; params are recorded in ``bundle.yaml``."""
    good = np.asarray(good_scores, dtype=np.float64)
    if good.size == 0:
        raise ValueError("no good scores to calibrate on")
    k = default_k(strategy) if k is None else float(k)
    if strategy == "quantile":
        if not 0.0 <= target_frr < 1.0:
            raise ValueError(f"target false-reject rate must be in [0, 1), got {target_frr}")
        # NG iff score > threshold, so at most target_frr of these good scores lie above it.
        threshold = float(np.quantile(good, 1.0 - target_frr, method="higher"))
        return threshold, {"target_false_reject_rate": target_frr}
    if strategy == "mean_std":
        std = float(good.std(ddof=1)) if good.size > 1 else 0.0
        return float(good.mean() + k * std), {"k": k, "mean": float(good.mean()), "std": std}
    if strategy == "iqr":
        q1, q3 = (float(v) for v in np.quantile(good, [0.25, 0.75]))
        return q3 + k * (q3 - q1), {"k": k, "q1": q1, "q3": q3, "iqr": q3 - q1}
    if strategy == "f1":
        if defect_scores is None or len(defect_scores) == 0:
            raise ValueError("strategy f1 needs labelled defect images (--defects DIR)")
        scores = np.concatenate([good, np.asarray(defect_scores, dtype=np.float64)])
        labels = np.concatenate([np.zeros(good.size, bool), np.ones(len(defect_scores), bool)])
        threshold, best_f1 = f1_optimal_threshold(labels, scores)
        return threshold, {"f1_on_calibration_set": best_f1}
    raise ValueError(f"unknown strategy {strategy!r} (choose from {', '.join(STRATEGIES)})")


def rates_at(threshold: float, good_scores: np.ndarray, defect_scores: np.ndarray | None = None) -> dict[str, Any]:
    """False-reject rate on the good scores (and escape rate on the defects) at ``threshold``: NG iff score > it."""
    good = np.asarray(good_scores, dtype=np.float64)
    rates: dict[str, Any] = {"false_reject_rate": float(np.mean(good > threshold)) if good.size else None}
    if defect_scores is not None and len(defect_scores):
        rates["escape_rate"] = float(np.mean(np.asarray(defect_scores, dtype=np.float64) <= threshold))
    return rates
