"""Greedy k-center coreset, single and two-stage: distinct, covering, bounded and reproducible selections."""

from __future__ import annotations

import math

import torch

from training.coreset import (
    CoresetSampler,
    coreset_size,
    coverage,
    greedy_coreset_indices,
    greedy_per_chunk,
    subsample,
)


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


def _clustered(generator: torch.Generator, clusters: int = 6, per: int = 400, dim: int = 96) -> tuple[torch.Tensor,
                                                                                                       torch.Tensor]:
    centers = torch.eye(clusters, dim) * 100.0
    labels = torch.arange(clusters).repeat_interleave(per)
    return centers[labels] + torch.randn(clusters * per, dim, generator=generator), labels


def test_per_chunk_greedy_picks_distinct_rows_in_every_chunk_at_once() -> None:
    points = torch.randn(5, 200, 16, generator=torch.Generator().manual_seed(6))
    index = greedy_per_chunk(points, 30, torch.Generator().manual_seed(0))
    assert index.shape == (5, 30)
    assert all(len(set(row.tolist())) == 30 for row in index)
    # Each chunk's selection is its own greedy run: the same as selecting that chunk alone.
    alone = greedy_per_chunk(points[2:3].clone(), 30, torch.Generator().manual_seed(0))
    assert set(alone[0, 1:].tolist()) <= set(range(200))


def test_two_stage_sampler_keeps_the_ratio_and_covers_every_cluster() -> None:
    features, labels = _clustered(torch.Generator().manual_seed(7))
    order = torch.randperm(features.shape[0], generator=torch.Generator().manual_seed(8))
    features, labels = features[order], labels[order]
    sampler = CoresetSampler(0.005, seed=1, oversample=10.0)
    for start in range(0, features.shape[0], 400):  # six "images" of 400 patches, fed as 2 chunks each
        sampler.add(features[start : start + 400].reshape(2, 200, -1))
    bank = sampler.finish(progress=False)
    assert bank.shape == (coreset_size(2400, 0.005), 96) == (12, 96)
    assert sampler.candidates_seen == 12 * math.ceil(200 * 0.05)  # oversample 10 x ratio per chunk
    nearest = torch.cdist(bank, features).argmin(dim=1)
    assert set(labels[nearest].tolist()) == set(range(6))
    assert coverage(features, bank)["max"] < coverage(features, features[:12])["max"]


def test_sampler_memory_stays_bounded_by_compaction() -> None:
    sampler = CoresetSampler(0.5, seed=0, oversample=None, max_rows=300)
    for seed in range(5):
        sampler.add(torch.randn(2, 100, 8, generator=torch.Generator().manual_seed(seed)))
        assert sampler.rows_kept <= 300
    bank = sampler.finish(progress=False)
    assert sampler.rows_seen == 1000 and bank.shape[0] <= 300


def test_sampler_is_reproducible_for_a_seed() -> None:
    chunks = [torch.randn(3, 128, 40, generator=torch.Generator().manual_seed(s)) for s in range(3)]

    def bank(seed: int) -> torch.Tensor:
        sampler = CoresetSampler(0.02, seed=seed)
        for chunk in chunks:
            sampler.add(chunk)
        return sampler.finish(progress=False)

    assert torch.equal(bank(3), bank(3))
    assert not torch.equal(bank(3), bank(4))


def test_coverage_of_a_bank_holding_every_row_is_zero() -> None:
    features = torch.randn(300, 12, generator=torch.Generator().manual_seed(9))
    # FP32 |a|^2 - 2ab + |b|^2 leaves a rounding residue far below the 4.9 typical distance between rows.
    assert coverage(features, features)["max"] < 0.01 * torch.cdist(features[:50], features[50:100]).mean()
