"""The combined autoencoder loss: every term is zero for a perfect reconstruction and off at weight 0."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.ae_loss import CombinedLoss, LossWeights, build_perceptual
from training.similarity import sobel_magnitude


def test_identical_images_cost_nothing_and_a_blurred_one_costs_in_every_term(torch_home: Path) -> None:
    perceptual, record = build_perceptual("auto")
    loss = CombinedLoss(LossWeights(mse=1.0, l1=1.0, ssim=0.5, perceptual=0.1, edge=0.2), perceptual)
    image = torch.rand(2, 3, 64, 64) * 2 - 1
    total, terms = loss(image, image)
    assert set(terms) == {"mse", "l1", "ssim", "perceptual", "edge"}
    assert total.item() == pytest.approx(0.0, abs=1e-4)
    blurred = torch.nn.functional.avg_pool2d(image, 5, stride=1, padding=2, count_include_pad=False)
    _, blurred_terms = loss(blurred, image)
    assert all(value > 1e-3 for value in blurred_terms.values()), blurred_terms


def test_the_perceptual_backbone_falls_back_to_mobilenet_when_vgg16_is_not_cached(torch_home: Path) -> None:
    _, record = build_perceptual("auto")
    if (torch_home / "hub" / "checkpoints" / "vgg16-397923af.pth").is_file():
        assert record["backbone"] == "vgg16"
    else:
        assert record["backbone"] == "mobilenet_v2" and "not in the torch cache" in record["why"]
        with pytest.raises(ValueError, match="vgg16"):
            build_perceptual("vgg16")


def test_zero_weights_switch_terms_off_and_need_no_backbone() -> None:
    loss = CombinedLoss(LossWeights(mse=1.0, ssim=0.0, perceptual=0.0))
    _, terms = loss(torch.zeros(1, 3, 32, 32), torch.ones(1, 3, 32, 32))
    assert set(terms) == {"mse"} and terms["mse"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="perceptual"):
        CombinedLoss(LossWeights(perceptual=0.1))
    with pytest.raises(ValueError, match="not all 0"):
        LossWeights(mse=0, l1=0, ssim=0, perceptual=0, edge=0)


def test_sobel_magnitude_is_zero_on_flat_images_and_peaks_on_an_edge() -> None:
    flat = torch.full((1, 1, 16, 16), 0.5)
    assert sobel_magnitude(flat).max() < 1e-5
    step = torch.zeros(1, 1, 16, 16)
    step[..., 8:] = 1.0
    magnitude = sobel_magnitude(step)
    assert magnitude[0, 0, 8, 7] > 1.0 and magnitude[0, 0, 8, 2] < 1e-5
