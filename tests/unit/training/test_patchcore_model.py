"""The PatchCore module: output shapes, and an ONNX graph that scores like the torch model."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from training.backbones import BACKBONES
from training.patchcore import PatchCore, PatchCoreConfig


def _fitted_model(chunk_size: int) -> PatchCore:
    model = PatchCore(PatchCoreConfig(input_size=(96, 128), chunk_size=chunk_size, map_stride=1)).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        bank = model.embed(torch.randn(2, 3, 96, 128, generator=generator))
    model.set_memory_bank(bank[::3])  # 2 * 12 * 16 / 3 = 128 rows
    return model


def test_forward_returns_a_full_size_map_and_its_maximum_as_score(torch_home: Path) -> None:
    model = _fitted_model(chunk_size=50)
    with torch.no_grad():
        anomaly_map, score = model(torch.randn(2, 3, 96, 128))
    assert anomaly_map.shape == (2, 1, 96, 128) and anomaly_map.dtype == torch.float32
    assert score.shape == (2,) and torch.equal(score, anomaly_map.amax(dim=(1, 2, 3)))
    assert (anomaly_map >= 0).all()


def test_chunk_size_does_not_change_the_scores(torch_home: Path) -> None:
    x = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    model = _fitted_model(chunk_size=50)
    with torch.no_grad():
        chunked = model(x)[0]
        model.config = replace(model.config, chunk_size=4096)
        reference = model(x)[0]
    torch.testing.assert_close(chunked, reference, rtol=1e-4, atol=1e-4)


def test_onnx_export_matches_torch_score(torch_home: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    model = _fitted_model(chunk_size=50)  # 128 rows: chunks of 50, 50 and 28
    x = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(2))
    path = tmp_path / "patchcore.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["image"], output_names=["anomaly_map", "score"],
                      opset_version=18, dynamo=True, external_data=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_map, onnx_score = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        torch_map, torch_score = model(x)
    np.testing.assert_allclose(onnx_score, torch_score.numpy(), rtol=1e-4)
    np.testing.assert_allclose(onnx_map, torch_map.numpy(), rtol=1e-3, atol=1e-3 * float(torch_score))


def test_config_round_trips_through_its_dict_and_refuses_unknown_keys() -> None:
    config = PatchCoreConfig(backbone="efficientnet_lite0", input_size=(224, 320), coreset_ratio=0.05).resolved()
    assert PatchCoreConfig.from_dict(config.to_dict()) == config
    assert config.layers == BACKBONES["efficientnet_lite0"].default_layers
    with pytest.raises(ValueError, match="unknown keys"):
        PatchCoreConfig.from_dict({**config.to_dict(), "k": 3})


@pytest.mark.parametrize("stride", [2, 4, 8])
def test_map_stride_outputs_a_smaller_map_and_onnx_still_matches_torch(torch_home: Path, tmp_path: Path,
                                                                       stride: int) -> None:
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    model = _fitted_model(chunk_size=50)
    model.set_map_stride(stride)
    x = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch_map, torch_score = model(x)
    assert torch_map.shape == (1, 1, 96 // stride, 128 // stride) == (1, 1, *model.config.map_size)
    assert torch.equal(torch_score, torch_map.amax(dim=(1, 2, 3)))
    path = tmp_path / "patchcore.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["image"], output_names=["anomaly_map", "score"],
                      opset_version=18, dynamo=True, external_data=False)
    onnx_map, onnx_score = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"image": x.numpy()})
    assert onnx_map.shape == tuple(torch_map.shape)
    np.testing.assert_allclose(onnx_score, torch_score.numpy(), rtol=1e-4)
    np.testing.assert_allclose(onnx_map, torch_map.numpy(), rtol=1e-3, atol=1e-3 * float(torch_score))


def test_a_coarser_map_keeps_the_same_smoothing_in_input_pixels(torch_home: Path) -> None:
    """The stride-4 map is close to the full map sampled every 4 pixels: sigma is scaled, not kept."""
    model = _fitted_model(chunk_size=4096)
    x = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        full = model(x)[0][0, 0]
        model.set_map_stride(4)
        coarse = model(x)[0][0, 0]
    sampled = full[1::4, 1::4]  # pixel centres of the coarse map, to within half a fine pixel
    interior = (slice(2, -2), slice(2, -2))  # away from the reflect padding
    relative = (coarse[interior] - sampled[interior]).abs().max() / full.max()
    assert relative < 0.05


def test_map_stride_must_divide_the_input_size() -> None:
    with pytest.raises(ValueError, match="map_stride"):
        PatchCoreConfig(input_size=(96, 128), map_stride=5)
    with pytest.raises(ValueError, match="map_stride"):
        PatchCoreConfig(map_stride=0)


def test_a_state_dict_saved_with_the_blur_kernel_still_loads_at_another_stride(torch_home: Path) -> None:
    """Runs saved before map_stride existed hold a 33-tap ``blur_kernel``; it is derived now, not loaded."""
    model = _fitted_model(chunk_size=4096)
    state = {**model.state_dict(), "blur_kernel": torch.ones(33) / 33}
    other = PatchCore(replace(model.config, map_stride=8), pretrained=False)
    other.load_state_dict(state, strict=True)
    assert torch.equal(other.memory_bank, model.memory_bank)
    assert other.blur_kernel.shape[0] < 33 and "blur_kernel" not in other.state_dict()


def test_smoothing_wider_than_the_map_keeps_its_shape_and_a_flat_map_flat() -> None:
    """A sigma whose kernel outgrows a small map (a wide-smoothing candidate on a strip) pads by
    replication instead of failing in reflection, and smoothing leaves a constant map unchanged."""
    model = PatchCore(PatchCoreConfig(input_size=(64, 256), sigma=64.0, map_stride=4), pretrained=False).eval()
    assert model.blur_kernel.shape[0] // 2 >= 16  # the kernel's radius reaches past the 16-row map
    flat = torch.full((2, 1, 16, 64), 3.0)
    torch.testing.assert_close(model.blur(flat), flat)
    bump = torch.zeros(1, 1, 16, 64)
    bump[0, 0, 8, 32] = 1.0
    smoothed = model.blur(bump)
    assert smoothed.shape == bump.shape and smoothed.argmax() == bump.argmax()


def _good_distances(seed: int, count: int = 8, side: int = 64) -> torch.Tensor:
    """Distance maps of good images: positive noise around 1, correlated over about 4 cells as
    neighbouring patches' distances are."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand((count, 1, side // 4, side // 4), generator=generator)
    smooth = torch.nn.functional.interpolate(coarse, size=(side, side), mode="bilinear", align_corners=False)
    return 1.0 + 0.3 * smooth + 0.05 * torch.rand((count, 1, side, side), generator=generator)


def test_the_wide_map_lifts_a_broad_mild_rise_and_leaves_a_strong_spot_to_the_fine_map() -> None:
    """The fine map misses a band of mildly raised distances that the clipped wide map lifts above the
    good images' 99th percentile; a strong small spot stays the fine map's (clipped, it spreads little)."""
    model = PatchCore(PatchCoreConfig(input_size=(256, 256), map_stride=4), pretrained=False).eval()
    assert not model.combines_maps  # not fitted yet: the fine map alone
    model.fit_map_scale(_good_distances(0))
    assert model.combines_maps and model.map_scale.shape == (5,)
    with torch.no_grad():
        fresh = _good_distances(1)  # other good images: each map on its own scale puts them at 0 .. 1
        fine_good = (model.blur(fresh) - model.map_scale[1]) / model.map_scale[2]
        assert abs(float(fine_good.median())) < 0.1 and 0.8 < float(torch.quantile(fine_good.reshape(-1), 0.99)) < 1.2
        good = model.post_process(fresh)  # the larger of two such maps
        assert 0.0 < float(good.median()) < 0.5 and 0.9 < float(torch.quantile(good.reshape(-1), 0.99)) < 1.5
        band = _good_distances(2, 1)
        band[..., :24, :] += 0.06  # a mild rise over the top 24 rows: within the good range patch by patch
        fine_only = (model.blur(band) - model.map_scale[1]) / model.map_scale[2]
        combined = model.post_process(band)
        assert float(fine_only[..., 4:20, :].mean()) < 1.0 < float(combined[..., 4:20, :].mean())
        spot = _good_distances(3, 1)
        spot[..., 30:33, 30:33] += 2.0
        combined = model.post_process(spot)
        fine_only = (model.blur(spot) - model.map_scale[1]) / model.map_scale[2]
        assert float(combined.max()) == float(fine_only.max()) > 5.0  # the peak is the fine map's
        assert float(combined[..., :10, :].max()) < 1.5  # far from the spot: good levels


def test_changing_the_smoothing_drops_the_fitted_scale_and_wide_sigma_0_is_the_fine_map() -> None:
    model = PatchCore(PatchCoreConfig(input_size=(128, 128)), pretrained=False).eval()
    model.fit_map_scale(_good_distances(0, 2, 32))
    model.set_sigma(8.0)
    assert not model.combines_maps
    off = PatchCore(PatchCoreConfig(input_size=(128, 128), wide_sigma=0.0), pretrained=False).eval()
    off.fit_map_scale(_good_distances(0, 2, 32))  # a no-op
    distances = _good_distances(1, 1, 32)
    assert not off.combines_maps and torch.equal(off.post_process(distances), off.blur(distances))
    with pytest.raises(ValueError, match="wide_sigma"):
        PatchCoreConfig(wide_sigma=-1.0)


def test_a_run_saved_before_the_wide_map_loads_with_the_fine_map_alone(torch_home: Path) -> None:
    """Such runs have no ``wide_sigma`` in their config and no ``map_scale`` in their state dict."""
    model = _fitted_model(chunk_size=4096)
    state = {k: v for k, v in model.state_dict().items() if k != "map_scale"}
    saved = {k: v for k, v in model.config.to_dict().items() if k != "wide_sigma"}
    config = PatchCoreConfig.from_saved(saved)
    assert config.wide_sigma == 0.0 and PatchCoreConfig.from_dict(saved).wide_sigma == PatchCoreConfig().wide_sigma
    old = PatchCore(config, pretrained=False).eval()
    old.load_state_dict(state, strict=True)
    assert not old.combines_maps
    x = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(old(x)[0], model(x)[0])  # `model` has no fitted scale either


def test_onnx_export_with_the_wide_map_matches_torch(torch_home: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    model = _fitted_model(chunk_size=4096)
    x = torch.randn(3, 3, 96, 128, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        model.fit_map_scale(model.distance_map(model.patch_features(x[:2]), (96, 128)))
    assert model.combines_maps
    reloaded = PatchCore(model.config, pretrained=False).eval()
    reloaded.load_state_dict(model.state_dict(), strict=True)  # the scale travels in the state dict
    assert torch.equal(reloaded.map_scale, model.map_scale)
    path = tmp_path / "patchcore.onnx"
    torch.onnx.export(model, (x[2:],), str(path), input_names=["image"], output_names=["anomaly_map", "score"],
                      opset_version=18, dynamo=True, external_data=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_map, onnx_score = session.run(None, {"image": x[2:].numpy()})
    with torch.no_grad():
        torch_map, torch_score = model(x[2:])
    np.testing.assert_allclose(onnx_score, torch_score.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(onnx_map, torch_map.numpy(), rtol=1e-3, atol=1e-3 * max(1.0, float(torch_score.abs())))
