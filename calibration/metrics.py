"""Decision metrics in plain numpy: F1, false-reject and escape rates at a threshold, and the F1-optimal one.

Written here rather than taken from scikit-learn so that evaluation runs on an edge-only install.
The threshold-free ranking figure (ROC AUC) lives with the labelled test set in
:mod:`export.heldout`, since export's accuracy guard needs it too. Convention throughout: label 1
/ ``True`` is a defect (NG), a score above the threshold is NG.
"""

from __future__ import annotations

import numpy as np


def decision_rates(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """F1 (NG as positive), false-reject rate (good called NG) and escape rate (defect called OK)."""
    labels = np.asarray(labels, dtype=bool).ravel()
    predicted_ng = np.asarray(scores, dtype=np.float64).ravel() > threshold
    tp = int(np.sum(predicted_ng & labels))
    fp = int(np.sum(predicted_ng & ~labels))
    fn = int(np.sum(~predicted_ng & labels))
    n_good = int(np.sum(~labels))
    n_bad = int(np.sum(labels))
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else float("nan")
    return {
        "f1": float(f1),
        "false_reject_rate": fp / n_good if n_good else float("nan"),
        "escape_rate": fn / n_bad if n_bad else float("nan"),
    }


def f1_optimal_threshold(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """Threshold maximising F1, placed midway between the two scores that bracket the best cut."""
    labels = np.asarray(labels, dtype=bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.all() or not labels.any():
        raise ValueError("F1-optimal threshold needs both good and defect scores")
    cuts = np.unique(scores)
    # NG iff score > cut: for each cut, count positives/negatives strictly above it.
    order = np.sort(scores)
    pos_sorted = np.sort(scores[labels])
    neg_sorted = np.sort(scores[~labels])
    tp = pos_sorted.size - np.searchsorted(pos_sorted, cuts, side="right")
    fp = neg_sorted.size - np.searchsorted(neg_sorted, cuts, side="right")
    fn = pos_sorted.size - tp
    f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    best = int(np.argmax(f1))
    above = order[order > cuts[best]]
    threshold = (cuts[best] + above[0]) / 2 if above.size else cuts[best]
    return float(threshold), float(f1[best])
