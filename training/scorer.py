"""Scoring images with the torch model exactly as the Inspector scores them with the exported graph.

Tuning (``edge-train --tune``) and the studies compare many settings without exporting each one,
so they need the bundle's figures from the torch model: the same windows
(:func:`edge.model.preprocess.prepare`), the same stitching and frame mapping
(:mod:`edge.model.layout`), the model's own post-processing, and the fast embedding path of
:mod:`training.embedding` for the features. Export's parity check holds the graph to this model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from edge.model.imageio import read_image
from edge.model.layout import FrameLayout, cover_frame, stitch
from edge.model.preprocess import InputSpec, prepare
from training.embedding import embedder_for
from training.patchcore import PatchCore


class TorchScorer:
    """Frame score and frame-pixel map of an image, as the Inspector computes them, from the torch model."""

    def __init__(self, model: PatchCore, spec: InputSpec) -> None:
        self.model = model.eval()
        self.spec = spec
        self._embed: Callable[[torch.Tensor], torch.Tensor] | None = None
        self._grid: tuple[int, int] = (0, 0)

    def __call__(self, image: np.ndarray) -> tuple[float, np.ndarray]:
        return self.finish(*self.distances(image))

    def distances(self, image: np.ndarray) -> tuple[torch.Tensor, FrameLayout]:
        """The windows' unsmoothed distance maps ``(N, 1, h, w)`` and the frame's layout: what
        :meth:`finish` needs, so that smoothing settings can be compared without new features."""
        prepared = prepare(image, self.spec)
        x = torch.from_numpy(prepared.tensor).to(self.model.blur_kernel.device)
        with torch.no_grad():
            if self._embed is None:
                self._embed = embedder_for(self.model, x[:1])
                self._grid = tuple(self.model.patch_features(x[:1]).shape[-2:])  # type: ignore[assignment]
            rows = self._embed(x)
            features = rows.reshape(x.shape[0], *self._grid, rows.shape[-1]).permute(0, 3, 1, 2)
            return self.model.distance_map(features, (self.spec.height, self.spec.width)), prepared.layout

    def finish(self, distances: torch.Tensor, layout: FrameLayout) -> tuple[float, np.ndarray]:
        """Frame score and frame-pixel map from :meth:`distances`, with the model's current smoothing."""
        with torch.no_grad():
            maps = self.model.post_process(distances)
        maps_np = maps.cpu().numpy()[:, 0]
        stride = self.spec.height // maps_np.shape[1]
        if layout.is_identity_crop:
            frame, score = maps_np[0], float(maps_np[0].max())
        else:
            stitched = stitch(maps_np, layout)
            frame, score = cover_frame(stitched, layout, stride), float(stitched.max())
        height, width = layout.frame
        return score, cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)


def fit_map_scale(model: PatchCore, spec: InputSpec, images: Sequence[Path]) -> int:
    """Fit ``model``'s map scale (:meth:`PatchCore.fit_map_scale`) on held-out good ``images``, seen as
    the Inspector sees them (every window of every frame). Returns how many images were used (0
    when the model has no wide map)."""
    if model.config.wide_sigma <= 0:
        return 0
    if not images:
        raise ValueError("the wide map's scale needs at least one held-out good image")
    scorer = TorchScorer(model, spec)
    model.fit_map_scale(torch.cat([scorer.distances(read_image(path))[0] for path in images]))
    return len(images)
