"""Area under the ROC curve, the one implementation every package scores with.

Tuning (:mod:`training.tune`) ranks candidates by AUROC on synthetic defects, and export's guard,
calibration's evaluation and the studies report it on real ones; all must count ties the same way.
It lives in ``training`` (the first package of the chain, numpy only) so that training never has to
import ``export``; :mod:`export.heldout` re-exports it.
"""

from __future__ import annotations

import numpy as np


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve; tied scores count as half, as in the Mann-Whitney statistic."""
    labels = np.asarray(labels, dtype=bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    sorted_labels = labels[order]
    # Group equal scores; each group's negatives below it count fully, those within it count half.
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate(([0], boundaries))
    pos_per_group = np.add.reduceat(sorted_labels.astype(np.int64), starts)
    size_per_group = np.diff(np.concatenate((starts, [labels.size])))
    neg_per_group = size_per_group - pos_per_group
    neg_below = np.concatenate(([0], np.cumsum(neg_per_group)[:-1]))
    wins = np.sum(pos_per_group * (neg_below + 0.5 * neg_per_group))
    return float(wins / (n_pos * n_neg))
