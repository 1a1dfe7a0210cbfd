"""Scoring a fitted torch PatchCore on a labelled test set the way ``edge-eval`` scores a bundle.

A sweep over dozens of settings cannot export, calibrate and benchmark every point, so the studies
score the torch model directly, through the edge's own geometry: :func:`edge.model.preprocess.prepare`
makes the windows, the model's fast embedding path and its own post-processing make the maps,
:func:`edge.model.layout.stitch` and :func:`~edge.model.layout.map_to_frame` put them on the frame,
and the AUROCs are :mod:`calibration.metrics`' over the same masks :mod:`calibration.evaluate` reads.
Export's parity check holds the graph to the torch model, so the figures carry over to the bundle
(the chosen settings are then confirmed through the real pipeline). Test images are decoded once
and kept in memory for all the points of a sweep.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from calibration.dataset import GOOD, labelled_test_images
from calibration.evaluate import mask_for
from calibration.metrics import roc_auc
from edge.model.imageio import read_image
from edge.model.layout import map_to_frame, stitch
from edge.model.preprocess import InputSpec, prepare
from training.embedding import embedder_for
from training.patchcore import PatchCore


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
    masks = [mask_for(item, image.shape[:2]) for item, image in zip(chosen, images)]
    return TestSet(images, [item.defect_type for item in chosen], masks, [item.path for item in chosen])


class TorchScorer:
    """Frame score and frame-pixel map of an image, as the Inspector computes them, from the torch model."""

    def __init__(self, model: PatchCore, spec: InputSpec) -> None:
        self.model = model.eval()
        self.spec = spec
        self._embed: Callable[[torch.Tensor], torch.Tensor] | None = None
        self._grid: tuple[int, int] = (0, 0)

    def __call__(self, image: np.ndarray) -> tuple[float, np.ndarray]:
        prepared = prepare(image, self.spec)
        x = torch.from_numpy(prepared.tensor)
        with torch.no_grad():
            if self._embed is None:
                self._embed = embedder_for(self.model, x[:1])
                self._grid = tuple(self.model.patch_features(x[:1]).shape[-2:])  # type: ignore[assignment]
            rows = self._embed(x)
            features = rows.reshape(x.shape[0], *self._grid, rows.shape[-1]).permute(0, 3, 1, 2)
            maps, scores = self.model.score_patches(features, (self.spec.height, self.spec.width))
        maps_np = maps.numpy()[:, 0]
        layout = prepared.layout
        stride = self.spec.height // maps_np.shape[1]
        if layout.is_identity_crop:
            frame, score = maps_np[0], float(scores[0])
        else:
            frame = stitch(maps_np, layout)
            score = float(frame.max())
        return score, map_to_frame(frame, layout, stride)


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
    result: dict[str, Any] = {"image_auroc": roc_auc(labels, np.array(scores)),
                              "pixel_auroc": _pixel_auroc(test, maps, range(len(maps))),
                              "ms_per_image": 1e3 * seconds / max(1, len(maps)), "per_type": {}}
    for defect in sorted(set(test.types) - {GOOD}):
        index = [i for i, t in enumerate(test.types) if t in (defect, GOOD)]
        result["per_type"][defect] = {
            "image_auroc": roc_auc(labels[index], np.array(scores)[index]),
            "pixel_auroc": _pixel_auroc(test, maps, index),
        }
    result["scores"] = scores
    return result


def _pixel_auroc(test: TestSet, maps: list[np.ndarray], index: Any) -> float:
    chosen = [i for i in index if test.masks[i] is not None]
    if not chosen:
        return float("nan")
    labels = np.concatenate([test.masks[i].ravel() for i in chosen])  # type: ignore[union-attr]
    values = np.concatenate([maps[i].ravel() for i in chosen])
    return roc_auc(labels, values)
