"""The report's charts (matplotlib, PNG): image ROC and PR, pixel ROC and PRO, score histograms, overlays of bundles.

matplotlib is the optional ``report`` extra (``pip install 'edge-inspect[report]'``): the edge
install and ``edge-eval`` without ``--report`` never import this module. :func:`require_matplotlib`
turns its absence into one line saying what to install. The Agg backend draws without a display.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from calibration.evaluate import OVERALL, Evaluation
from calibration.metrics import pr_points, roc_points
from calibration.pixelmetrics import FPR_LIMIT, PixelCurves
from export.heldout import GOOD

DPI = 110


class MissingExtra(RuntimeError):
    """The report needs a package of the ``report`` extra that is not installed."""


def require_matplotlib() -> None:
    """Raise :class:`MissingExtra` (one line: what to install) unless matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingExtra("--report needs matplotlib: pip install 'edge-inspect[report]'") from None


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def colours(evaluation: Evaluation) -> dict[str, str]:
    """One colour per defect type (and black for the overall curve), the same in every chart of a report."""
    types = sorted({r.item.defect_type for r in evaluation.results} - {GOOD})
    return {OVERALL: "black", GOOD: "#8fbf8f"} | {name: f"C{i % 10}" for i, name in enumerate(types)}


def thin(x: np.ndarray, y: np.ndarray, points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """At most about ``points`` points spread evenly along the curve's length (a binned curve has 65 k)."""
    if x.size <= points:
        return x, y
    length = np.concatenate(([0.0], np.cumsum(np.abs(np.diff(x)) + np.abs(np.diff(y)))))
    keep = np.unique(np.concatenate(([0, x.size - 1], np.searchsorted(length, np.linspace(0, length[-1], points)))))
    keep = keep[keep < x.size]
    return x[keep], y[keep]


def image_curves(path: Path, evaluation: Evaluation) -> None:
    """Image-level ROC (false-reject rate vs detection rate) and precision-recall, operating point marked."""
    plt = _pyplot()
    labels, scores, figures = evaluation.labels, evaluation.scores, evaluation.figures
    fig, (roc, pr) = plt.subplots(1, 2, figsize=(11, 4.6))
    fpr, tpr = roc_points(labels, scores)
    roc.plot(fpr, tpr, drawstyle="default", lw=2, label=f"AUROC {figures['image_auroc']:.4f}")
    frr, escape = figures["false_reject_rate"], figures["escape_rate"]
    roc.plot([frr], [1 - escape], "o", ms=9, mfc="none", mew=2, color="red",
             label=f"threshold {evaluation.threshold:.4g}: FRR {frr:.3f}, escape {escape:.3f}")
    roc.plot([0, 1], [0, 1], ":", color="grey", lw=1)
    roc.set(xlabel="false-reject rate (good parts called NG)", ylabel="detection rate (1 - escape rate)",
            title="Image ROC", xlim=(-0.01, 1.01), ylim=(-0.01, 1.01))
    recall, precision = pr_points(labels, scores)
    pr.plot(recall, precision, lw=2, label="precision-recall")
    ng = scores > evaluation.threshold
    tp = int(np.sum(ng & labels))
    pr.plot([tp / max(labels.sum(), 1)], [tp / max(ng.sum(), 1)], "o", ms=9, mfc="none", mew=2, color="red",
            label=f"threshold: F1 {figures['f1']:.3f}")
    pr.set(xlabel="recall (defects called NG)", ylabel="precision (NG calls that are defects)",
           title="Image precision-recall", xlim=(-0.01, 1.01), ylim=(-0.01, 1.01))
    for ax in (roc, pr):
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right" if ax is roc else "lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def pixel_curves(path: Path, evaluation: Evaluation) -> None:
    """Pixel-level ROC, and the PRO curve up to its FPR limit, overall and per defect type."""
    plt = _pyplot()
    fig, (roc, pro) = plt.subplots(1, 2, figsize=(11, 4.6))
    palette = colours(evaluation)
    for name, curves in sorted(evaluation.pixels.items(), key=lambda kv: (kv[0] != OVERALL, kv[0])):
        style = {"lw": 2.2 if name == OVERALL else 1.2, "color": palette[name]}
        x, y = thin(curves.fpr, curves.tpr)
        roc.plot(x, y, label=f"{name} {curves.auroc:.4f}", **style)
        x, y = _pro_to_limit(curves)
        pro.plot(x, y, label=f"{name} {curves.aupro:.4f}", **style)
    roc.set(xlabel="pixel FPR", ylabel="pixel TPR", title="Pixel ROC (AUROC)", xlim=(-0.01, 1.01), ylim=(-0.01, 1.01))
    limit = next(iter(evaluation.pixels.values())).fpr_limit if evaluation.pixels else FPR_LIMIT
    pro.set(xlabel="pixel FPR", ylabel="per-region overlap (PRO)", title=f"PRO to FPR {limit} (AUPRO)",
            xlim=(0, limit), ylim=(-0.01, 1.01))
    for ax in (roc, pro):
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _pro_to_limit(curves: PixelCurves) -> tuple[np.ndarray, np.ndarray]:
    cut = int(np.searchsorted(curves.fpr, curves.fpr_limit, side="left"))
    x, y = curves.fpr[: cut + 1], curves.pro[: cut + 1]
    return thin(x, y)


def score_histogram(path: Path, evaluation: Evaluation) -> None:
    """Score histogram of good images and of each defect type, the threshold, and the normalised scale on top."""
    plt = _pyplot()
    threshold = evaluation.threshold
    groups: dict[str, list[float]] = {}
    for result in evaluation.results:
        groups.setdefault(result.item.defect_type, []).append(result.score)
    scores = evaluation.scores
    edges = np.linspace(min(scores.min(), threshold) * 0.97, max(scores.max(), threshold) * 1.03, 41)
    fig, ax = plt.subplots(figsize=(11, 4.6))
    palette = colours(evaluation)
    if GOOD in groups:
        ax.hist(groups[GOOD], bins=edges, color=palette[GOOD], alpha=0.8, label=f"good ({len(groups[GOOD])})")
    for name in sorted(set(groups) - {GOOD}):
        ax.hist(groups[name], bins=edges, histtype="step", lw=2, color=palette[name],
                label=f"{name} ({len(groups[name])})")
    ax.axvline(threshold, color="red", ls="--", lw=2, label=f"threshold {threshold:.4g} (normalised 0.5)")
    ax.set(xlabel="image score (raw units)", ylabel="images", title="Where the threshold sits")
    top = ax.secondary_xaxis("top", functions=(lambda s: 0.5 * s / threshold, lambda n: 2.0 * n * threshold))
    top.set_xlabel("normalised score (0.5 = threshold, 1 = twice it; the daemon clips at 1)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def compare_curves(path: Path, evaluations: Sequence[Evaluation], names: Sequence[str]) -> None:
    """Image ROC, pixel ROC and PRO of several bundles overlaid, operating points marked."""
    plt = _pyplot()
    fig, (image, pixel, pro) = plt.subplots(1, 3, figsize=(15, 4.8))
    dashes = ("-", "--", ":", "-.")  # identical curves (FP32 and FP16) stay visible on top of each other
    for index, (evaluation, name) in enumerate(zip(evaluations, names, strict=True)):
        figures = evaluation.figures
        style = dashes[index % len(dashes)]
        fpr, tpr = roc_points(evaluation.labels, evaluation.scores)
        (line,) = image.plot(fpr, tpr, style, lw=1.8, label=f"{name} {figures['image_auroc']:.4f}")
        image.plot([figures["false_reject_rate"]], [1 - figures["escape_rate"]], "o", mfc="none", mew=2,
                   ms=9, color=line.get_color())
        curves = evaluation.pixels.get(OVERALL)
        if curves is not None:
            pixel.plot(*thin(curves.fpr, curves.tpr), style, lw=1.5, color=line.get_color(),
                       label=f"{name} {curves.auroc:.4f}")
            pro.plot(*_pro_to_limit(curves), style, lw=1.5, color=line.get_color(),
                     label=f"{name} {curves.aupro:.4f}")
    image.set(title="Image ROC (o: each bundle's threshold)", xlabel="false-reject rate", ylabel="detection rate")
    pixel.set(title="Pixel ROC", xlabel="pixel FPR", ylabel="pixel TPR")
    pro.set(title=f"PRO to FPR {FPR_LIMIT}", xlabel="pixel FPR", ylabel="PRO", xlim=(0, FPR_LIMIT))
    for ax in (image, pixel, pro):
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=7)
        ax.set_ylim(-0.01, 1.01)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
