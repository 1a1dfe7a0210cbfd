"""Choosing the graph input for a data set: its size and resize rule, from the training images.

A user who brings a new data set gets these choices untuned, so they follow the images rather
than one fixed square: the image sizes are read from the file headers (nothing is decoded) and

* frames that all have one size and a square shape get ``DEFAULT_SIDE`` x ``DEFAULT_SIDE``,
  ``stretch`` (which, for them, changes no aspect ratio; bottle keeps exactly its former input);
* frames that all have one non-square shape get a non-square ``HxW`` input of about the same
  number of pixels with their aspect ratio (sides multiples of 32), ``letterbox``;
* frames of varying sizes (cropped parts, magnetic_tile) are stretched to ``DEFAULT_SIDE`` x
  ``DEFAULT_SIDE``: on magnetic_tile (``edge-eval``, docs/accuracy.md) that beat both an input of
  the median frame's aspect ratio (288x224: image AUROC 0.910 against 0.941, pixel 0.777 against
  0.791) and tiles.

``tile`` is never chosen automatically. It keeps a texture's scale across frames and is the rule for
frames much larger than the input, but on the one variable-size data set measured, magnetic_tile,
tiles at the median frame's scale were less accurate and three times slower than stretching
(``edge-eval``: image AUROC 0.912 against 0.946, pixel 0.791 against 0.796, p50 214 ms against 69 ms;
docs/accuracy.md). ``--resize tile --tile-scale S`` asks for it (the window is then the median
frame's shape at that scale).

Explicit ``--input-size``/``--resize``/``--tile-scale`` override each part; what was chosen and
why is recorded in ``run.yaml`` under ``input_choice``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge.model.preprocess import InputSpec
from training.patchcore import PatchCoreConfig

log = logging.getLogger(__name__)

DEFAULT_SIDE = 256
SIDE_MULTIPLE = 32
SAME_ASPECT = 0.02  # relative spread of aspect ratios still called one shape


@dataclass(frozen=True)
class InputRule:
    """What the user asked for; None / ``auto`` parts are chosen from the images."""

    size: tuple[int, int] | None = None
    resize: str = "auto"
    tile_scale: float | None = None
    tile_overlap: int | None = None
    pad: str | None = None


@dataclass(frozen=True)
class SizeSurvey:
    """The training images' sizes, summarised."""

    count: int
    median: tuple[int, int]
    uniform: bool
    aspect_spread: float

    @property
    def aspect(self) -> float:
        """Median width / height."""
        return self.median[1] / self.median[0]

    def to_dict(self) -> dict[str, Any]:
        return {"images": self.count, "median_height": self.median[0], "median_width": self.median[1],
                "uniform": self.uniform, "aspect_spread": round(self.aspect_spread, 3)}


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file from its header."""
    from PIL import Image  # a torchvision dependency; reads the header only

    with Image.open(path) as image:
        width, height = image.size
    return int(height), int(width)


def survey(paths: Sequence[Path]) -> SizeSurvey:
    """Sizes of ``paths`` (headers only)."""
    sizes = np.array([image_size(p) for p in paths], dtype=np.float64)
    aspects = sizes[:, 1] / sizes[:, 0]
    median = (int(np.median(sizes[:, 0])), int(np.median(sizes[:, 1])))
    uniform = bool((sizes == sizes[0]).all())
    spread = float((aspects.max() - aspects.min()) / np.median(aspects))
    return SizeSurvey(len(paths), median, uniform, spread)


def _side(value: float) -> int:
    return max(SIDE_MULTIPLE, round(value / SIDE_MULTIPLE) * SIDE_MULTIPLE)


def shaped_size(aspect: float, side: int = DEFAULT_SIDE) -> tuple[int, int]:
    """(height, width) with about ``side * side`` pixels and the aspect ratio ``aspect`` (w / h)."""
    return _side(side / math.sqrt(aspect)), _side(side * math.sqrt(aspect))


def choose(paths: Sequence[Path], config: PatchCoreConfig, spec: InputSpec, rule: InputRule,
           side: int = DEFAULT_SIDE) -> tuple[PatchCoreConfig, InputSpec, dict[str, Any]]:
    """The config (input size) and spec (resize rule) for ``paths`` under ``rule``, and the record."""
    sizes = survey(paths)
    same_shape = sizes.uniform or sizes.aspect_spread <= SAME_ASPECT
    square = same_shape and abs(sizes.aspect - 1.0) <= SAME_ASPECT
    resize = rule.resize
    if resize == "auto":
        resize = "letterbox" if same_shape and not square else "stretch"
    values: dict[str, Any] = {"resize": resize}
    if rule.size is not None:
        size = rule.size
        why = "given"
    elif resize == "tile":
        scale = rule.tile_scale or side / max(sizes.median)
        size = (_side(sizes.median[0] * scale), _side(sizes.median[1] * scale))
        why = f"median frame {sizes.median[0]}x{sizes.median[1]} at tile scale {scale:.3f}"
    elif square or resize == "stretch":
        size = (side, side)
        why = "square frames" if square else "stretch" if same_shape else "frames of varying size"
    else:
        size = shaped_size(sizes.aspect, side)
        why = f"median aspect ratio {sizes.aspect:.3f} at about {side}x{side} pixels"
    if resize == "tile":
        values["tile_scale"] = round(rule.tile_scale or side / max(sizes.median), 4)
        values["tile_overlap"] = rule.tile_overlap
    if resize != "stretch":
        values["pad"] = rule.pad or "replicate"
    chosen = spec.with_values(height=size[0], width=size[1], **values)
    record = {"survey": sizes.to_dict(), "rule": {k: v for k, v in vars(rule).items() if v is not None},
              "resize": resize, "input_size": list(size), "why": why}
    log.info("input: %sx%s, %s (%s)", size[0], size[1], resize, why)
    return replace(config, input_size=size), chosen, record
