"""Greedy k-center coreset: distinct, covering and reproducible selections."""

from __future__ import annotations

import torch

from training.coreset import coreset_size, greedy_coreset_indices, subsample


def test_coreset_picks_distinct_rows_even_when_rows_repeat() -> None:
    rows = torch.randn(50, 16, generator=torch.Generator().manual_seed(1))
    features = torch.cat([rows, rows, rows])  # every row three times
    indices = greedy_coreset_indices(features, 120, progress=False)
    assert len(set(indices.tolist())) == 120


def test_coreset_takes_one_point_from_each_spread_out_cluster() -> None:
    generator = torch.Generator().manual_seed(2)
    centers = torch.eye(6, 200) * 100.0  # six far-apart clusters in 200 dimensions
    labels = torch.arange(6).repeat_interleave(40)
    features = centers[labels] + torch.randn(240, 200, generator=generator)
    indices = greedy_coreset_indices(features, 6, seed=3, progress=False)
    assert sorted(labels[indices].tolist()) == [0, 1, 2, 3, 4, 5]


def test_coreset_is_reproducible_for_a_seed_and_varies_across_seeds() -> None:
    features = torch.randn(500, 300, generator=torch.Generator().manual_seed(4))
    first = greedy_coreset_indices(features, 40, seed=7, progress=False)
    again = greedy_coreset_indices(features, 40, seed=7, progress=False)
    other = greedy_coreset_indices(features, 40, seed=8, progress=False)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_subsample_keeps_the_ratio_of_rows_and_everything_at_ratio_one() -> None:
    features = torch.randn(1000, 8, generator=torch.Generator().manual_seed(5))
    assert subsample(features, 0.05, progress=False).shape == (coreset_size(1000, 0.05), 8) == (50, 8)
    assert subsample(features, 1.0, progress=False) is features
