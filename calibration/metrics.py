"""Image-level decision metrics in plain numpy: rates at a threshold, the thresholds worth asking about, curves.

Written here rather than taken from scikit-learn so that evaluation runs on an edge-only install.
The threshold-free ranking figure (ROC AUC) lives with the labelled test set in
:mod:`export.heldout`, since export's accuracy guard needs it too; pixel-level figures are in
:mod:`calibration.pixelmetrics`. Besides F1, false-reject and escape rates at one threshold, the
report asks "what if the threshold were elsewhere": the F1-optimal and zero-escape thresholds, a
what-if table, and the ROC and precision-recall points of every cut. Convention throughout:
label 1 / ``True`` is a defect (NG), a score above the threshold is NG.
"""

from __future__ import annotations

from typing import Any

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


def zero_escape_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The highest threshold that lets no defect through: just below the lowest defect score.

    With the lowest good score above it, that is what the line would pay in false rejects to
    let nothing through; the margin between it and the calibrated threshold is the headroom.
    """
    labels = np.asarray(labels, dtype=bool).ravel()
    if not labels.any():
        raise ValueError("zero-escape threshold needs defect scores")
    lowest = float(np.asarray(scores, dtype=np.float64).ravel()[labels].min())
    return float(np.nextafter(lowest, -np.inf))


def what_if(labels: np.ndarray, scores: np.ndarray, thresholds: dict[str, float]) -> list[dict[str, Any]]:
    """Counts and rates at each named threshold, in ascending threshold order."""
    labels = np.asarray(labels, dtype=bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    rows = []
    for name, threshold in sorted(thresholds.items(), key=lambda item: item[1]):
        ng = scores > threshold
        rows.append({"name": name, "threshold": float(threshold),
                     "false_rejects": int(np.sum(ng & ~labels)), "escapes": int(np.sum(~ng & labels)),
                     **decision_rates(labels, scores, threshold)})
    return rows


def roc_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) at every distinct cut, from (0, 0) to (1, 1): false-reject rate and 1 - escape rate."""
    fp, tp, _ = _cumulative(labels, scores)
    return fp / max(fp[-1], 1), tp / max(tp[-1], 1)


def pr_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) at every distinct cut, highest threshold first (the all-OK cut left out)."""
    fp, tp, _ = _cumulative(labels, scores)
    fp, tp = fp[1:], tp[1:]
    return tp / max(tp[-1], 1), tp / np.maximum(tp + fp, 1)


def _cumulative(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False and true positives when NG is "score >= each distinct score", highest first, from zero."""
    labels = np.asarray(labels, dtype=bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    distinct, group = np.unique(scores, return_inverse=True)
    pos = np.bincount(group[labels], minlength=distinct.size)[::-1]
    neg = np.bincount(group[~labels], minlength=distinct.size)[::-1]
    zero = np.zeros(1)
    return np.concatenate((zero, np.cumsum(neg))), np.concatenate((zero, np.cumsum(pos))), distinct[::-1]
