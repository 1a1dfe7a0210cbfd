"""A loss-curve PNG for the run directory, drawn with OpenCV so training needs no plotting library.

An engineer judging a training run first looks at its curves: does the validation loss still
fall, did early stopping cut at the right place, did the learning-rate schedule do what it
should. The picture is written after every epoch (atomically), so a run in progress or one that
crashed can be inspected too. The y axis is logarithmic: reconstruction losses fall by orders of
magnitude.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from edge.ops.atomicfile import write_atomic

WIDTH, HEIGHT = 800, 480
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 80, 20, 40, 50
COLOURS = {"train": (200, 90, 30), "validation": (30, 120, 230)}  # BGR
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _positive(values: Sequence[float]) -> list[float]:
    return [v for v in values if v > 0 and math.isfinite(v)]


def render_loss_curve(curves: Mapping[str, Sequence[float]], title: str, best_epoch: int | None = None) -> np.ndarray:
    """A BGR image of the loss curves (one value per epoch, epochs numbered from 1) on a log axis."""
    image = np.full((HEIGHT, WIDTH, 3), 255, np.uint8)
    x0, x1 = MARGIN_LEFT, WIDTH - MARGIN_RIGHT
    y0, y1 = MARGIN_TOP, HEIGHT - MARGIN_BOTTOM
    cv2.rectangle(image, (x0, y0), (x1, y1), (0, 0, 0), 1)
    cv2.putText(image, title, (x0, 25), FONT, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    values = _positive([v for curve in curves.values() for v in curve])
    epochs = max((len(c) for c in curves.values()), default=0)
    if not values or epochs == 0:
        cv2.putText(image, "no epochs yet", (x0 + 20, (y0 + y1) // 2), FONT, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
        return image
    low, high = math.log10(min(values)), math.log10(max(values))
    if high - low < 1e-6:
        low, high = low - 0.5, high + 0.5

    def point(epoch: int, value: float) -> tuple[int, int]:
        x = x0 + (x1 - x0) * ((epoch - 1) / max(1, epochs - 1))
        y = y1 - (y1 - y0) * ((math.log10(value) - low) / (high - low))
        return int(round(x)), int(round(y))

    for tick in range(math.floor(low), math.ceil(high) + 1):
        if low <= tick <= high:
            _, y = point(1, 10.0**tick)
            cv2.line(image, (x0, y), (x1, y), (225, 225, 225), 1)
            cv2.putText(image, f"1e{tick}", (8, y + 4), FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for label, value in (("min", 10**low), ("max", 10**high)):
        _, y = point(1, value)
        cv2.putText(image, f"{value:.3g}", (8, y + (14 if label == "min" else -4)), FONT, 0.4, (90, 90, 90), 1)
    step = max(1, epochs // 10)
    for epoch in range(1, epochs + 1, step):
        x, _ = point(epoch, 10**low)
        cv2.putText(image, str(epoch), (x - 6, y1 + 18), FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, "epoch", ((x0 + x1) // 2 - 20, HEIGHT - 10), FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    if best_epoch:
        x, _ = point(best_epoch, 10**low)
        cv2.line(image, (x, y0), (x, y1), (120, 120, 120), 1, cv2.LINE_AA)
        cv2.putText(image, f"best {best_epoch}", (x + 4, y0 + 14), FONT, 0.45, (90, 90, 90), 1, cv2.LINE_AA)
    for row, (name, curve) in enumerate(curves.items()):
        colour = COLOURS.get(name, (0, 150, 0))
        points = [point(i + 1, v) for i, v in enumerate(curve) if v > 0 and math.isfinite(v)]
        if len(points) > 1:
            cv2.polylines(image, [np.array(points, np.int32)], False, colour, 2, cv2.LINE_AA)
        for p in points:
            cv2.circle(image, p, 2, colour, -1, cv2.LINE_AA)
        cv2.putText(image, name, (x1 - 120, y0 + 20 + 18 * row), FONT, 0.5, colour, 1, cv2.LINE_AA)
    return image


def write_loss_curve(path: Path, curves: Mapping[str, Sequence[float]], title: str,
                     best_epoch: int | None = None) -> Path:
    """Render the curves and write them to ``path`` as PNG, atomically."""
    ok, encoded = cv2.imencode(".png", render_loss_curve(curves, title, best_epoch))
    if not ok:
        raise OSError(f"{path}: cannot encode the loss curve")
    return write_atomic(path, encoded.tobytes())
