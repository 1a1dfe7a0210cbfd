"""The fast embedding path agrees with the model, and the input is chosen from the images' sizes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edge.model.preprocess import InputSpec
from training.embedding import EmbeddingTimes, embedder_for, iter_window_batches
from training.inputs import InputRule, choose, shaped_size
from training.patchcore import PatchCore, PatchCoreConfig
from training.train import input_spec_for


def test_the_traced_channels_last_embedding_matches_the_eager_model(torch_home: Path) -> None:
    model = PatchCore(PatchCoreConfig(input_size=(96, 128))).eval()
    x = torch.randn(3, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    fast = embedder_for(model, x[:1])
    with torch.no_grad():
        eager = model.embed_per_image(x)
        traced = fast(x)  # another batch size than the one traced
    assert traced.shape == eager.shape == (3, 12 * 16, 96)
    torch.testing.assert_close(traced, eager, rtol=1e-4, atol=1e-4)
    assert next(model.parameters()).is_contiguous()  # the model itself is left in its own layout


def _write(folder: Path, shapes: list[tuple[int, int]]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (height, width) in enumerate(shapes):
        path = folder / f"{index:03d}.png"
        cv2.imwrite(str(path), np.full((height, width), 100 + index, np.uint8))
        paths.append(path)
    return paths


def test_windows_of_several_images_are_batched_in_order(tmp_path: Path) -> None:
    paths = _write(tmp_path, [(64, 200), (64, 64), (64, 330)])
    spec = InputSpec(height=64, width=64, resize="tile", tile_overlap=16)
    times = EmbeddingTimes()
    batches = list(iter_window_batches(paths, spec, 4, times))
    assert [len(b) for b in batches[:-1]] == [4] * (len(batches) - 1)
    assert sum(len(b) for b in batches) == times.windows and times.images == 3
    # Windows of 64 sharing >= 16 pixels, starts multiples of 16: 200 px -> 4, 64 px -> 1, 330 px -> 7.
    assert times.windows == 4 + 1 + 7


@pytest.mark.parametrize("shapes,resize,size", [
    ([(512, 512)] * 3, "stretch", (256, 256)),
    ([(100, 300)] * 3, "letterbox", shaped_size(3.0)),
    ([(300, 250), (400, 120), (240, 610)], "stretch", (256, 256)),  # varying sizes: square, as measured best
])
def test_the_input_follows_the_training_images(tmp_path: Path, shapes: list[tuple[int, int]], resize: str,
                                               size: tuple[int, int] | None) -> None:
    config = PatchCoreConfig()
    chosen_config, spec, record = choose(_write(tmp_path, shapes), config, input_spec_for(config), InputRule())
    assert spec.resize == resize == record["resize"]
    assert (spec.height, spec.width) == chosen_config.input_size
    if size is not None:
        assert chosen_config.input_size == size
    if resize == "letterbox":
        assert spec.width / spec.height == pytest.approx(3.0, rel=0.15)
    if len(set(shapes)) > 1:  # frames of varying size are stretched, never tiled unasked
        assert record["survey"]["uniform"] is False and spec.tile_scale is None and "varying" in record["why"]


def test_explicit_choices_win_over_the_automatic_ones(tmp_path: Path) -> None:
    config = PatchCoreConfig()
    paths = _write(tmp_path, [(300, 250), (400, 120)])
    chosen, spec, record = choose(paths, config, input_spec_for(config), InputRule(size=(128, 160), resize="stretch"))
    assert chosen.input_size == (128, 160) and spec.resize == "stretch" and record["why"] == "given"
