"""Threshold strategies: how held-out scores become the image threshold a bundle decides with.

``quantile`` (default) needs only good images: the threshold is the score that a target fraction
of good parts exceeds, i.e. it sets the false-reject rate directly, which is what a plant can
state up front. ``mean_std`` is the classic mean + k standard deviations of good scores.
``f1`` needs labelled defects and picks the threshold that maximises F1 on them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from calibration.metrics import f1_optimal_threshold

STRATEGIES = ("quantile", "mean_std", "f1")
DEFAULT_TARGET_FRR = 0.01
DEFAULT_K = 3.0


def image_threshold(
    strategy: str,
    good_scores: np.ndarray,
    defect_scores: np.ndarray | None = None,
    target_frr: float = DEFAULT_TARGET_FRR,
    k: float = DEFAULT_K,
) -> tuple[float, dict[str, Any]]:
    """Return ``(threshold, params)`` for ``strategy``; params are recorded in ``bundle.yaml``."""
    good = np.asarray(good_scores, dtype=np.float64)
    if good.size == 0:
        raise ValueError("no good scores to calibrate on")
    if strategy == "quantile":
        if not 0.0 <= target_frr < 1.0:
            raise ValueError(f"target false-reject rate must be in [0, 1), got {target_frr}")
        # NG iff score > threshold, so at most target_frr of these good scores lie above it.
        threshold = float(np.quantile(good, 1.0 - target_frr, method="higher"))
        return threshold, {"target_false_reject_rate": target_frr}
    if strategy == "mean_std":
        std = float(good.std(ddof=1)) if good.size > 1 else 0.0
        return float(good.mean() + k * std), {"k": k, "mean": float(good.mean()), "std": std}
    if strategy == "f1":
        if defect_scores is None or len(defect_scores) == 0:
            raise ValueError("strategy f1 needs labelled defect images (--defects DIR)")
        scores = np.concatenate([good, np.asarray(defect_scores, dtype=np.float64)])
        labels = np.concatenate([np.zeros(good.size, bool), np.ones(len(defect_scores), bool)])
        threshold, best_f1 = f1_optimal_threshold(labels, scores)
        return threshold, {"f1_on_calibration_set": best_f1}
    raise ValueError(f"unknown strategy {strategy!r} (choose from {', '.join(STRATEGIES)})")
