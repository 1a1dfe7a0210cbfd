"""The chunked nearest-neighbour search gives the brute-force answer for any chunk size."""

from __future__ import annotations

import pytest
import torch

from training.patchcore import gaussian_kernel1d, nearest_distance


@pytest.mark.parametrize("chunk_size", [7, 50, 128, 350, 4096])  # 7 and 128 do not divide 350; 50 does
def test_chunked_nearest_distance_equals_brute_force_cdist(chunk_size: int) -> None:
    generator = torch.Generator().manual_seed(0)
    queries = torch.randn(200, 32, generator=generator)
    bank = torch.randn(350, 32, generator=generator) * 2.0
    expected = torch.cdist(queries, bank).min(dim=1).values
    got = nearest_distance(queries, bank, (bank * bank).sum(dim=1), chunk_size)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_a_query_that_is_in_the_bank_has_distance_zero_not_nan() -> None:
    bank = torch.randn(64, 128, generator=torch.Generator().manual_seed(1))
    got = nearest_distance(bank[:5].clone(), bank, (bank * bank).sum(dim=1), 16)
    assert torch.isfinite(got).all()
    assert got.max() < 1e-2


def test_gaussian_kernel_for_sigma_4_has_33_taps_and_sums_to_one() -> None:
    kernel = gaussian_kernel1d(4.0)
    assert kernel.shape == (33,)
    assert kernel.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert int(kernel.argmax()) == 16
