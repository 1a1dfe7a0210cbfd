"""PaDiM fits one Gaussian per grid cell and scores patches by their Mahalanobis distance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edge.model.preprocess import InputSpec
from training.data import load_input
from training.families.padim import DEFAULT_LAYERS, Padim, PadimConfig, resample
from training.families.registry import load_run, train
from training.fit_padim import choose_channels, gaussians
from training.runs import TrainRequest


def test_gaussians_give_the_mahalanobis_distance_of_the_regularised_sample_covariance() -> None:
    generator = torch.Generator().manual_seed(0)
    samples = torch.randn(40, 3, 5, generator=generator, dtype=torch.float64)  # 40 images, 3 cells, 5 features
    cells = samples.permute(1, 0, 2)  # (P, N, d)
    mean, factor = gaussians(cells.sum(1), torch.bmm(cells.transpose(1, 2), cells), 40, epsilon=0.01)
    query = torch.randn(3, 5, generator=generator, dtype=torch.float64)
    for cell in range(3):
        data = cells[cell].numpy()
        covariance = np.cov(data, rowvar=False) + 0.01 * np.eye(5)
        delta = query[cell].numpy() - data.mean(axis=0)
        expected = float(delta @ np.linalg.inv(covariance) @ delta)
        whitened = (query[cell] - mean[cell]) @ factor[cell]
        assert float(whitened @ whitened) == pytest.approx(expected, rel=1e-9)


def test_channel_subset_is_seeded_sorted_and_all_channels_when_fewer() -> None:
    first = choose_channels(120, 50, seed=3)
    assert torch.equal(first, choose_channels(120, 50, seed=3))
    assert not torch.equal(first, choose_channels(120, 50, seed=4))
    assert first.unique().numel() == 50 and torch.equal(first, first.sort().values)
    assert torch.equal(choose_channels(40, 100, seed=0), torch.arange(40))


def test_finer_maps_are_average_pooled_and_coarser_ones_upsampled_onto_the_grid() -> None:
    fine = torch.arange(16.0).view(1, 1, 4, 4)
    assert torch.equal(resample(fine, (2, 2)), torch.nn.functional.avg_pool2d(fine, 2))
    assert resample(torch.ones(1, 2, 1, 1), (2, 2)).shape == (1, 2, 2, 2)


def test_config_refuses_strides_that_do_not_divide_the_input() -> None:
    with pytest.raises(ValueError, match="grid_stride"):
        PadimConfig(input_size=(100, 100), grid_stride=8)
    assert PadimConfig().resolved().layers == DEFAULT_LAYERS["mobilenet_v2"]


def test_fit_on_real_bottle_images_scores_a_broken_bottle_above_a_good_one(
    bottle: Path, torch_home: Path, tmp_path: Path
) -> None:
    config = {"input_size": [128, 128], "n_features": 40}
    out, cost = train("padim", TrainRequest(data_dir=bottle, out_dir=tmp_path / "run", config=config,
                                            device="cpu", max_images=12, progress=False))
    model, run = load_run(out)
    assert isinstance(model, Padim) and run["family"] == "padim" and run["n_train_images"] == 12
    assert run["gaussians"]["cells"] == 16 * 16 and run["gaussians"]["features"] == 40
    assert tuple(model.precision_factor.shape) == (256, 40, 40)
    assert run["resources"]["cpu_s"] > 0 and run["resources"]["peak_rss_mb"] > 0 and cost.wall_s > 0
    spec = InputSpec.from_dict(run["input_spec"])
    good = torch.from_numpy(load_input(Path(run["validation_images"][0]), spec))
    broken = torch.from_numpy(load_input(bottle / "test" / "broken_large" / "000.png", spec))
    with torch.no_grad():
        good_map, good_score = model(good)
        _, broken_score = model(broken)
    assert good_map.shape == (1, 1, 32, 32) and good_score.shape == (1,)
    assert broken_score.item() > good_score.item()
