"""Training images: a seeded split that keeps validation out of the bank, and clear data errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.model.preprocess import InputSpec
from training.data import DatasetError, iter_batches, list_train_images, split_train_validation


def test_split_is_disjoint_complete_and_keeps_at_least_one_validation_image(bottle: Path) -> None:
    images = list_train_images(bottle)
    split = split_train_validation(images, 0.1, seed=0)
    assert not set(split.train) & set(split.validation)
    assert sorted(split.train + split.validation) == images
    assert len(split.validation) == round(len(images) * 0.1)
    tiny = split_train_validation(images[:3], 0.1, seed=0)
    assert len(tiny.validation) == 1 and len(tiny.train) == 2


def test_split_depends_only_on_seed_not_on_listing_order(bottle: Path) -> None:
    images = list_train_images(bottle)
    first = split_train_validation(images, 0.2, seed=5)
    assert split_train_validation(list(reversed(images)), 0.2, seed=5) == first
    assert split_train_validation(images, 0.2, seed=6).validation != first.validation


def test_missing_train_good_folder_is_reported_with_its_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=str(tmp_path / "train" / "good")):
        list_train_images(tmp_path)


def test_empty_train_good_folder_is_reported(tmp_path: Path) -> None:
    (tmp_path / "train" / "good").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no images"):
        list_train_images(tmp_path)


def test_corrupt_training_image_is_named_in_the_error(tmp_path: Path) -> None:
    good = tmp_path / "train" / "good"
    good.mkdir(parents=True)
    broken = good / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(DatasetError, match="broken.png"):
        list(iter_batches(list_train_images(tmp_path), InputSpec(), batch_size=2))


def test_grayscale_images_become_three_channel_batches(magnetic_tile: Path) -> None:
    images = list_train_images(magnetic_tile)[:3]
    (batch,) = iter_batches(images, InputSpec(height=64, width=96), batch_size=4)
    assert batch.shape == (3, 3, 64, 96)
