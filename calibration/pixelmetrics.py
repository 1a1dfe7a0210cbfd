"""Pixel AUROC and AUPRO at the masks' full resolution, in flat memory: one histogram per class.

A bottle test set is 83 masks of 900x900: 67 M pixels. Concatenating and sorting them costs
gigabytes and tens of seconds, so :class:`PixelHistogram` bins each image's scores as it is seen
(``DEFAULT_BINS`` equal bins over the range of all maps, known before the masks are read because
maps are kept at model resolution and bilinear resizing never leaves their range) and keeps
three arrays: good pixels, defect pixels, and each ground-truth region's pixels weighted by one
over its area. Every curve point is then a threshold at a bin edge; pixels in one bin count as
tied, as tied scores do in the Mann-Whitney statistic. :func:`exact_curves` is the same
computation with one bin per distinct score: the definition itself, for tests and for checking
the binned figure on a subsample (``edge-eval --pixel-check``).

AUPRO follows its published definition (Bergmann et al., MVTec AD, IJCV 2021): ground-truth
regions are the 8-connected components of each mask; at each threshold the PRO is the mean over
all regions of the fraction of the region's pixels above it, the FPR the fraction of all
defect-free pixels (good images included) above it; the area under PRO(FPR) from 0 to
``FPR_LIMIT`` (0.3), interpolated linearly at the cut, divided by the limit. The curve always
runs from (0, 0) (threshold above every score) to (1, 1) (below every score), so the cut is
always inside it, even when the FPR jumps from below 0.3 to 1 in one step (many tied scores):
dividing by the last FPR reached instead of the limit is the mistake that gave values above 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

FPR_LIMIT = 0.3
DEFAULT_BINS = 65536


@dataclass(frozen=True)
class PixelCurves:
    """ROC and PRO curves (ascending FPR, from (0, 0) to (1, 1)) and their areas."""

    fpr: np.ndarray
    tpr: np.ndarray
    pro: np.ndarray
    n_defect_pixels: int
    n_good_pixels: int
    n_regions: int
    fpr_limit: float

    @property
    def auroc(self) -> float:
        """Area under the pixel ROC; NaN without both defect and good pixels."""
        if not self.n_defect_pixels or not self.n_good_pixels:
            return float("nan")
        return area_to_limit(self.fpr, self.tpr, 1.0)

    @property
    def aupro(self) -> float:
        """Area under PRO(FPR) up to ``fpr_limit``, divided by it (in [0, 1]); NaN without regions or good pixels."""
        if not self.n_regions or not self.n_good_pixels:
            return float("nan")
        return area_to_limit(self.fpr, self.pro, self.fpr_limit) / self.fpr_limit


def area_to_limit(x: np.ndarray, y: np.ndarray, limit: float) -> float:
    """Trapezoid area under the piecewise-linear curve (``x`` ascending) from ``x[0]`` to ``limit``.

    The last segment is cut at ``limit`` by linear interpolation; vertical steps (equal ``x``)
    add nothing. ``limit`` must lie within ``x``'s range.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if not x[0] <= limit <= x[-1]:
        raise ValueError(f"limit {limit} outside the curve's range {x[0]}..{x[-1]}")
    inside = int(np.searchsorted(x, limit, side="left"))  # x[:inside] < limit <= x[inside]
    xs, ys = x[:inside], y[:inside]
    if inside < x.size:
        if inside == 0:
            return 0.0
        x0, x1, y0, y1 = x[inside - 1], x[inside], y[inside - 1], y[inside]
        y_cut = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
        xs, ys = np.append(xs, limit), np.append(ys, y_cut)
    return float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1]) / 2.0))


def regions_of(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels of the 8-connected components of ``mask`` (0 = background) and how many there are."""
    count, labels = cv2.connectedComponents(np.asarray(mask, dtype=bool).astype(np.uint8), connectivity=8)
    return labels, count - 1


def _region_weights(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Per defect pixel (in ``mask[mask]`` order), one over the area of its region; and the region count."""
    labels, count = regions_of(mask)
    if not count:
        return np.zeros(0), 0
    areas = np.bincount(labels.ravel(), minlength=count + 1).astype(np.float64)
    areas[0] = np.inf  # background: never read
    return 1.0 / areas[labels[mask]], count


def _curves(good: np.ndarray, defect: np.ndarray, region: np.ndarray, n_regions: int,
            fpr_limit: float) -> PixelCurves:
    """Curves from counts per score group in ascending score order; thresholds walk down from the top."""
    fp = np.concatenate(([0.0], np.cumsum(good[::-1], dtype=np.float64)))
    tp = np.concatenate(([0.0], np.cumsum(defect[::-1], dtype=np.float64)))
    covered = np.concatenate(([0.0], np.cumsum(region[::-1], dtype=np.float64)))
    n_good, n_defect = float(fp[-1]), float(tp[-1])
    fpr = fp / n_good if n_good else np.linspace(0.0, 1.0, fp.size)
    tpr = tp / n_defect if n_defect else np.linspace(0.0, 1.0, tp.size)
    pro = covered / n_regions if n_regions else np.zeros_like(fpr)
    return PixelCurves(fpr=fpr, tpr=tpr, pro=np.minimum(pro, 1.0), n_defect_pixels=int(n_defect),
                       n_good_pixels=int(n_good), n_regions=n_regions, fpr_limit=fpr_limit)


class PixelHistogram:
    """Binned pixel counts over ``[lo, hi]``; add image by image, merge with ``+``, read :meth:`curves`."""

    def __init__(self, lo: float, hi: float, bins: int = DEFAULT_BINS) -> None:
        if not np.isfinite(lo) or not np.isfinite(hi):
            raise ValueError(f"score range {lo}..{hi} is not finite")
        self.lo, self.hi, self.bins = float(lo), float(max(hi, lo + 1e-12)), int(bins)
        self.good = np.zeros(self.bins, np.int64)
        self.defect = np.zeros(self.bins, np.int64)
        self.region = np.zeros(self.bins, np.float64)
        self.n_regions = 0

    def bin_index(self, scores: np.ndarray) -> np.ndarray:
        """The bin of each score (scores outside the range go to the end bins)."""
        scaled = (np.asarray(scores, dtype=np.float64) - self.lo) * (self.bins / (self.hi - self.lo))
        return np.clip(scaled, 0, self.bins - 1).astype(np.intp)

    def add(self, scores: np.ndarray, mask: np.ndarray) -> None:
        """One image: the anomaly map at the mask's resolution and the boolean mask (all False: good)."""
        if scores.shape != mask.shape:
            raise ValueError(f"scores {scores.shape} and mask {mask.shape} differ in shape")
        index = self.bin_index(scores)
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            self.good += np.bincount(index.ravel(), minlength=self.bins)
            return
        self.good += np.bincount(index[~mask], minlength=self.bins)
        self.defect += np.bincount(index[mask], minlength=self.bins)
        weights, count = _region_weights(mask)
        self.region += np.bincount(index[mask], weights=weights, minlength=self.bins)
        self.n_regions += count

    def __add__(self, other: PixelHistogram) -> PixelHistogram:
        """The histogram of both sets of images (same bins required)."""
        if (self.lo, self.hi, self.bins) != (other.lo, other.hi, other.bins):
            raise ValueError("histograms with different bins cannot be merged")
        merged = PixelHistogram(self.lo, self.hi, self.bins)
        merged.good, merged.defect = self.good + other.good, self.defect + other.defect
        merged.region, merged.n_regions = self.region + other.region, self.n_regions + other.n_regions
        return merged

    def curves(self, fpr_limit: float = FPR_LIMIT) -> PixelCurves:
        """ROC and PRO curves with a threshold at every bin edge."""
        return _curves(self.good, self.defect, self.region, self.n_regions, fpr_limit)


def exact_curves(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], fpr_limit: float = FPR_LIMIT) -> PixelCurves:
    """The same curves with one group per distinct score: the definition, no binning (memory: all pixels)."""
    scores = np.concatenate([np.asarray(m, dtype=np.float64).ravel() for m in maps])
    labels = np.concatenate([np.asarray(m, dtype=bool).ravel() for m in masks])
    weights = np.zeros(scores.size)
    n_regions, offset = 0, 0
    for mask in masks:
        mask = np.asarray(mask, dtype=bool)
        w, count = _region_weights(mask)
        flat = np.zeros(mask.size)
        flat[mask.ravel()] = w
        weights[offset : offset + mask.size] = flat
        n_regions += count
        offset += mask.size
    distinct, group = np.unique(scores, return_inverse=True)
    good = np.bincount(group[~labels], minlength=distinct.size)
    defect = np.bincount(group[labels], minlength=distinct.size)
    region = np.bincount(group, weights=weights, minlength=distinct.size)
    return _curves(good, defect, region, n_regions, fpr_limit)
