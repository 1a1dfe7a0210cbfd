"""The U-Net autoencoder has the architecture users bring and turns a reconstruction into the bundle contract."""

from __future__ import annotations

import pytest
import torch

from training.families.autoencoder import (
    AutoencoderConfig,
    AutoencoderDetector,
    AutoencoderUNetLite,
    cell_groups,
    count_parameters,
    inpaint_masks,
)
from training.similarity import gaussian_kernel1d, gradient_similarity, ssim_map


def _shapes_after_each_stage(network: AutoencoderUNetLite, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [network.bottleneck.register_forward_hook(lambda m, i, o: shapes.__setitem__("bottleneck", tuple(o.shape)))]
    for index, up in enumerate(network.upsample):
        hooks.append(up.register_forward_hook(
            lambda m, i, o, index=index: shapes.__setitem__(f"up{index}", tuple(o.shape))))
    shapes["output"] = tuple(network(x).shape)
    for hook in hooks:
        hook.remove()
    return shapes


def test_default_network_is_the_unet_lite_users_bring() -> None:
    network = AutoencoderUNetLite().eval()
    with torch.no_grad():
        shapes = _shapes_after_each_stage(network, torch.zeros(1, 3, 128, 128))
    assert shapes["bottleneck"] == (1, 512, 16, 16)
    assert [shapes[f"up{i}"][-1] for i in range(3)] == [32, 64, 128]
    assert shapes["output"] == (1, 3, 128, 128)
    assert isinstance(network.head[-1], torch.nn.Tanh)
    assert all(isinstance(up, torch.nn.ConvTranspose2d) for up in network.upsample)
    assert 1.7e6 < count_parameters(network) < 2.1e6  # "about 1.9 M parameters"


def test_skips_can_be_switched_off_per_level_and_change_only_the_decoder_inputs() -> None:
    with_skips = AutoencoderUNetLite(skips=(True, True, True))
    without = AutoencoderUNetLite(skips=(False, False, False))
    assert count_parameters(without) < count_parameters(with_skips)
    assert without.decoder[0][0].in_channels == 128 and with_skips.decoder[0][0].in_channels == 256
    assert without(torch.zeros(2, 3, 64, 64)).shape == (2, 3, 64, 64)


def test_input_shape_and_channels_are_validated() -> None:
    network = AutoencoderUNetLite()
    with pytest.raises(ValueError, match="3 channel"):
        network(torch.zeros(1, 1, 128, 128))
    with pytest.raises(ValueError, match="divisible by 8"):
        network(torch.zeros(1, 3, 100, 100))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        network(torch.zeros(3, 128, 128))
    detector = AutoencoderDetector(AutoencoderConfig(input_size=(64, 64), widths=(4, 8, 16), bottleneck=16))
    with pytest.raises(ValueError, match=r"\(64, 64\)"):
        detector(torch.zeros(1, 3, 128, 128))
    with pytest.raises(ValueError, match="divisible by 8"):
        AutoencoderConfig(input_size=(100, 100))
    with pytest.raises(ValueError, match="one flag per encoder block"):
        AutoencoderConfig(skips=(True,))


def test_grayscale_model_reconstructs_one_channel_from_the_replicated_rgb_input() -> None:
    config = AutoencoderConfig(input_size=(32, 32), in_channels=1, widths=(4, 8, 16), bottleneck=8)
    detector = AutoencoderDetector(config).eval()
    gray = torch.rand(1, 1, 32, 32) * 2 - 1
    assert torch.allclose(detector.network_input(gray.expand(1, 3, 32, 32)), gray, atol=1e-6)
    with torch.no_grad():
        anomaly_map, score = detector(gray.expand(1, 3, 32, 32).contiguous())
    assert detector.network.head[0].out_channels == 1
    assert anomaly_map.shape == (1, 1, 32, 32) and score.shape == (1,)


def test_error_map_is_zero_for_a_perfect_reconstruction_and_grows_with_a_defect() -> None:
    config = AutoencoderConfig(input_size=(32, 32), widths=(4, 8, 16), bottleneck=8, sigma=1.0)
    detector = AutoencoderDetector(config)
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    assert detector.error_map(image, image).abs().max() < 1e-5
    damaged = image.clone()
    damaged[:, :, 10:14, 10:14] = 1.0
    error = detector.error_map(image, damaged)
    assert error[0, 0, 12, 12] > error[0, 0, 28, 28]
    anomaly_map, score = detector.postprocess(error)
    assert score.item() == pytest.approx(anomaly_map.max().item())


def test_topk_score_is_the_mean_of_the_largest_map_values_and_map_stride_pools() -> None:
    config = AutoencoderConfig(input_size=(32, 32), widths=(4, 8, 16), bottleneck=8, score="topk_mean", topk=4,
                               map_stride=2)
    detector = AutoencoderDetector(config)
    error = torch.rand(1, 1, 32, 32)
    anomaly_map, score = detector.postprocess(error)
    assert anomaly_map.shape == (1, 1, 16, 16)
    assert score.item() == pytest.approx(anomaly_map.flatten().topk(4).values.mean().item())
    with pytest.raises(ValueError, match="score"):
        AutoencoderConfig(score="median")


def test_ssim_of_an_image_with_itself_is_one_and_drops_for_noise() -> None:
    window = gaussian_kernel1d(1.5, radius=5)
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    assert torch.allclose(ssim_map(image, image, window), torch.ones(1, 3, 32, 32), atol=1e-5)
    noisy = image + 0.3 * torch.randn_like(image)
    assert ssim_map(image, noisy, window).mean() < 0.9


def test_gradient_similarity_ignores_a_brightness_shift_and_drops_only_where_edges_differ() -> None:
    image = torch.rand(1, 3, 64, 64) * 2 - 1
    assert torch.allclose(gradient_similarity(image, image), torch.ones(1, 1, 64, 64), atol=1e-5)
    assert torch.allclose(gradient_similarity(image, image + 0.2), torch.ones(1, 1, 64, 64), atol=1e-4)
    flat = torch.zeros(1, 3, 64, 64)
    scratched = flat.clone()
    scratched[:, :, 30:33, 8:56] = 0.8  # a thin bright line: edges where the good part has none
    dissimilarity = 1.0 - gradient_similarity(flat, scratched)
    assert dissimilarity[0, 0, 29, 32] > 0.5
    assert dissimilarity[0, 0, 5, 5] < 1e-3 < dissimilarity[0, 0, 20, 32]  # coarse scales spread it a little


def test_the_default_map_is_gradient_similarity_and_every_term_can_be_weighted() -> None:
    config = AutoencoderConfig(input_size=(32, 32), widths=(4, 8, 16), bottleneck=8)
    assert (config.gms_weight, config.ssim_weight, config.l2_weight) == (1.0, 0.0, 0.0)
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    other = image + 0.1 * torch.randn_like(image)
    window = gaussian_kernel1d(1.5, radius=5)
    expected = (0.5 * (1.0 - gradient_similarity(image, other, 3)) + 2.0 * (1.0 - ssim_map(image, other, window)).mean(
        dim=1, keepdim=True) + 3.0 * ((image - other) ** 2).mean(dim=1, keepdim=True))
    weighted = AutoencoderDetector(AutoencoderConfig(input_size=(32, 32), widths=(4, 8, 16), bottleneck=8,
                                                     gms_weight=0.5, gms_scales=3, ssim_weight=2.0, l2_weight=3.0))
    assert torch.allclose(weighted.error_map(image, other), expected, atol=1e-5)
    with pytest.raises(ValueError, match="not all 0"):
        AutoencoderConfig(gms_weight=0.0)
    with pytest.raises(ValueError, match="gms_scales"):
        AutoencoderConfig(input_size=(32, 32), widths=(4, 8, 16), gms_scales=5)


def test_inpainting_hides_every_pixel_exactly_once_per_cell_size_and_neighbours_stay_visible() -> None:
    config = AutoencoderConfig(input_size=(32, 32), widths=(4, 8, 16), bottleneck=8, inpaint_cells=(4, 8),
                               inpaint_sets=3)
    masks = inpaint_masks(config)
    assert masks.shape == (6, 1, 32, 32)
    assert torch.equal(masks.sum(dim=0), torch.full((1, 32, 32), 2.0))
    groups = cell_groups(32, 32, 4, 3)
    for row in range(0, 32, 4):
        for col in range(0, 32, 4):
            neighbours = [(row + dy, col + dx) for dy, dx in ((-4, 0), (4, 0), (0, -4), (0, 4))
                          if 0 <= row + dy < 32 and 0 <= col + dx < 32]
            assert all(groups[y, x] != groups[row, col] for y, x in neighbours)
    with pytest.raises(ValueError, match="inpaint_cells"):
        AutoencoderConfig(input_size=(32, 32), widths=(4, 8, 16), inpaint_cells=(64,))
    with pytest.raises(ValueError, match="inpaint_sets"):
        AutoencoderConfig(inpaint_cells=(8,), inpaint_sets=1)


def test_an_inpainted_pixel_is_reconstructed_from_a_pass_that_never_saw_it() -> None:
    """Changing one cell's pixels leaves that cell's reconstruction exactly as it was: a defect cannot be copied."""
    config = AutoencoderConfig(input_size=(32, 32), widths=(4, 8, 16), bottleneck=8, inpaint_cells=(8,),
                               inpaint_sets=3)
    detector = AutoencoderDetector(config).eval()
    image = torch.rand(2, 3, 32, 32) * 2 - 1
    changed = image.clone()
    changed[:, :, 8:16, 8:16] = 1.0  # exactly one cell
    with torch.no_grad():
        before, after = detector.reconstruct(image), detector.reconstruct(changed)
        anomaly_map, score = detector(changed)
    assert torch.equal(before[:, :, 8:16, 8:16], after[:, :, 8:16, 8:16])
    assert not torch.equal(before, after)  # the other cells saw the change
    assert anomaly_map.shape == (2, 1, 32, 32) and score.shape == (2,)


def test_position_norm_divides_by_what_good_images_show_there_and_travels_with_the_weights() -> None:
    config = AutoencoderConfig(input_size=(32, 32), widths=(4, 8, 16), bottleneck=8, map_norm="position",
                               map_norm_floor=0.5, sigma=1.0)
    detector = AutoencoderDetector(config).eval()
    good = torch.rand(6, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        raw = detector.postprocess(detector.error_map(good, detector.reconstruct(good)))[0]
        detector.fit_position_scale(good, batch_size=4)
        normed, _ = detector(good)
    mean = raw.mean(dim=0, keepdim=True)
    assert torch.allclose(detector.position_scale, mean + 0.5 * mean.mean(), rtol=1e-4)
    assert torch.allclose(normed, raw / detector.position_scale, rtol=1e-4)
    assert float(normed.mean(dim=0).max()) < 1.0  # the good images' mean over the divisor, floor included
    reloaded = AutoencoderDetector(config).eval()
    reloaded.load_state_dict(detector.state_dict())
    with torch.no_grad():
        assert torch.equal(reloaded(good)[0], normed)
    with pytest.raises(ValueError, match="map_norm"):
        AutoencoderConfig(map_norm="frame")
    with pytest.raises(ValueError, match="needs map_norm"):
        AutoencoderDetector(AutoencoderConfig(input_size=(32, 32), widths=(4, 8, 16))).fit_position_scale(good)


def test_a_run_written_before_inpainting_is_rebuilt_for_one_plain_pass() -> None:
    from training.fit_autoencoder import build

    current = AutoencoderConfig(input_size=(32, 32), widths=(4, 8, 16), bottleneck=8).to_dict()
    assert build(current).config.inpaint_cells == (16, 32)  # today's default, as its run.yaml records it
    older = {k: v for k, v in current.items() if k not in ("inpaint_cells", "inpaint_sets", "map_norm",
                                                             "map_norm_floor")}
    assert build(older).config.inpaint_cells == ()


def test_a_run_written_before_the_gradient_term_keeps_its_ssim_and_l2_map() -> None:
    from training.fit_autoencoder import build

    current = AutoencoderConfig(input_size=(32, 32), widths=(4, 8, 16), bottleneck=8, ssim_weight=1.0,
                                l2_weight=1.0).to_dict()
    assert build(current).config.gms_weight == 1.0
    older = {k: v for k, v in current.items() if k not in ("gms_weight", "gms_scales")}
    rebuilt = build(older).config
    assert (rebuilt.gms_weight, rebuilt.ssim_weight, rebuilt.l2_weight) == (0.0, 1.0, 1.0)
