"""Finding the good training images and turning them into exactly the tensors the edge will see.

Training reads ``DIR/train/good`` of an MVTec-style folder. A seeded split puts a validation
fraction aside first; those images never enter the memory bank, so calibration can measure the
score distribution of good parts the model has not memorised. Pixels go through
:func:`edge.model.imageio.read_image` and :func:`edge.model.preprocess.preprocess` and nothing else, so the
bank is built from the same arrays the deployed daemon computes for a camera frame.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.model.imageio import ImageReadError, list_images, read_image
from edge.model.preprocess import InputSpec, preprocess

log = logging.getLogger(__name__)


class DatasetError(ValueError):
    """The training folder is missing, empty, or holds an unreadable image."""


@dataclass(frozen=True)
class TrainSplit:
    """Images for the memory bank and images set aside for validation; disjoint, sorted."""

    train: list[Path]
    validation: list[Path]


def list_train_images(data_dir: str | Path) -> list[Path]:
    """Absolute paths of the images in ``data_dir/train/good``, sorted."""
    good = Path(data_dir).expanduser().resolve() / "train" / "good"
    if not good.is_dir():
        raise DatasetError(f"{good}: no train/good folder (expected an MVTec-style dataset folder)")
    images = list_images(good)
    if not images:
        raise DatasetError(f"{good}: no images (.png, .jpg, .jpeg, .bmp) found")
    return images


def split_train_validation(images: Sequence[Path], val_fraction: float = 0.1, seed: int = 0) -> TrainSplit:
    """Seeded split leaving ``val_fraction`` (at least one image) out of the memory bank.

    The result depends only on the set of paths and ``seed``, not on their order.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f"validation fraction must be in (0, 1), got {val_fraction}")
    ordered = sorted(set(images))
    if len(ordered) < 2:
        raise DatasetError(f"need at least 2 good images to set one aside for validation, got {len(ordered)}")
    n_val = min(len(ordered) - 1, max(1, round(len(ordered) * val_fraction)))
    shuffled = list(ordered)
    random.Random(seed).shuffle(shuffled)
    validation = sorted(shuffled[:n_val])
    train = sorted(shuffled[n_val:])
    log.info("split: %s training, %s validation images (seed %s)", len(train), len(validation), seed)
    return TrainSplit(train=train, validation=validation)


def load_input(path: Path, spec: InputSpec) -> np.ndarray:
    """The ``Nx3xHxW`` float32 graph input for the image file ``path`` (N = 1 except for tiles)."""
    try:
        image = read_image(path)
    except ImageReadError as exc:
        raise DatasetError(f"cannot use training image {path}: {exc}") from exc
    return preprocess(image, spec)


def load_windows(path: Path, spec: InputSpec) -> tuple[np.ndarray, float, float]:
    """The ``Nx3xHxW`` graph inputs of ``path`` (N windows under the spec's resize rule) and the
    seconds spent decoding and preprocessing it."""
    started = time.perf_counter()
    try:
        image = read_image(path)
    except ImageReadError as exc:
        raise DatasetError(f"cannot use training image {path}: {exc}") from exc
    decoded = time.perf_counter()
    windows = preprocess(image, spec)
    return windows, decoded - started, time.perf_counter() - decoded


def iter_batches(paths: Sequence[Path], spec: InputSpec, batch_size: int) -> Iterator[np.ndarray]:
    """Preprocessed ``Bx3xHxW`` batches of ``paths`` in order (the last one may be smaller)."""
    if batch_size < 1:
        raise DatasetError(f"batch size must be >= 1, got {batch_size}")
    for start in range(0, len(paths), batch_size):
        yield np.concatenate([load_input(p, spec) for p in paths[start : start + batch_size]])
