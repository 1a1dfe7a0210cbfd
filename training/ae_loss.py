"""The autoencoder's combined training loss: MSE, L1, SSIM, perceptual and Sobel-edge terms.

Pixel losses alone (MSE, L1) let an autoencoder get away with blurry reconstructions, whose error
then lights up every sharp edge of a good part; SSIM compares local structure and the
perceptual term compares pretrained features, both of which punish blur. The weights are
configurable (:class:`LossWeights`); a zero weight skips its term, so an unused perceptual
backbone is never built.

The perceptual backbone is VGG16 up to relu3_3 when its ImageNet weights are in the torch cache,
else the MobileNet_V2 trunk this project ships offline (its stride-4 and stride-8 blocks).
Nothing is ever downloaded; which one was used is returned by :func:`build_perceptual` and
recorded in ``run.yaml``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from training.backbones import IMAGENET_MEAN, IMAGENET_STD, build_feature_extractor, torchvision_weights_path
from training.similarity import gaussian_kernel1d, sobel_magnitude, ssim_map

log = logging.getLogger(__name__)

VGG16_FILE = "vgg16-397923af.pth"
VGG16_RELU3_3 = 16  # torchvision vgg16.features[:16] ends with relu3_3
MOBILENET_TAPS = ("features.3", "features.6")
PERCEPTUAL_CHOICES = ("auto", "vgg16", "mobilenet_v2")


@dataclass(frozen=True)
class LossWeights:
    """Weights of the combined loss terms; 0 turns a term off."""

    mse: float = 1.0
    l1: float = 0.0
    ssim: float = 0.5
    perceptual: float = 0.1
    edge: float = 0.0

    def __post_init__(self) -> None:
        values = asdict(self)
        if min(values.values()) < 0 or not any(values.values()):
            raise ValueError(f"loss weights must be >= 0 and not all 0, got {values}")


class PerceptualDistance(nn.Module):
    """Mean squared distance between frozen pretrained features of two images in [-1, 1]."""

    def __init__(self, layers: nn.Module) -> None:
        super().__init__()
        self.layers = layers.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> PerceptualDistance:
        super().train(mode)
        self.layers.eval()  # frozen batch-norm statistics whatever the trainer does
        return self

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = ((x + 1.0) * 0.5 - self.mean) / self.std
        out = self.layers(x)
        return list(out) if isinstance(out, (list, tuple)) else [out]

    def forward(self, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            wanted = self.features(target)
        got = self.features(reconstruction)
        return torch.stack([F.mse_loss(g, w) for g, w in zip(got, wanted, strict=True)]).mean()


def build_perceptual(choice: str = "auto") -> tuple[PerceptualDistance, dict[str, Any]]:
    """The perceptual distance and the record of what it uses (``backbone``, ``layers``, ``why``)."""
    if choice not in PERCEPTUAL_CHOICES:
        raise ValueError(f"perceptual backbone must be one of {', '.join(PERCEPTUAL_CHOICES)}, got {choice!r}")
    vgg_path = torchvision_weights_path(VGG16_FILE)
    if choice == "vgg16" or (choice == "auto" and vgg_path.is_file()):
        if not vgg_path.is_file():
            raise ValueError(f"perceptual backbone vgg16: weights not found at {vgg_path}; copy {VGG16_FILE} there "
                             "or use --set perceptual_backbone=mobilenet_v2")
        import torchvision.models as tvm

        vgg = tvm.vgg16(weights=None)
        vgg.load_state_dict(torch.load(vgg_path, map_location="cpu", weights_only=True))
        layers: nn.Module = vgg.features[:VGG16_RELU3_3]
        record = {"backbone": "vgg16", "layers": ["relu3_3"], "weights": str(vgg_path),
                  "why": "requested" if choice == "vgg16" else "vgg16 weights found in the torch cache"}
    else:
        layers = build_feature_extractor("mobilenet_v2", MOBILENET_TAPS, pretrained=True)
        why = "requested" if choice == "mobilenet_v2" else f"vgg16 weights not in the torch cache ({vgg_path})"
        record = {"backbone": "mobilenet_v2", "layers": list(MOBILENET_TAPS), "why": why}
    log.info("perceptual loss: %s %s (%s)", record["backbone"], record["layers"], record["why"])
    return PerceptualDistance(layers), record


class CombinedLoss(nn.Module):
    """``forward(reconstruction, target)`` -> (weighted total, each term's value) for images in [-1, 1].

    The terms are computed in float32 even under mixed precision: SSIM subtracts squared means,
    which half precision cannot resolve.
    """

    ssim_window: torch.Tensor

    def __init__(self, weights: LossWeights, perceptual: PerceptualDistance | None = None) -> None:
        super().__init__()
        if weights.perceptual and perceptual is None:
            raise ValueError("a perceptual weight needs a perceptual backbone")
        self.weights = weights
        self.perceptual = perceptual if weights.perceptual else None
        self.register_buffer("ssim_window", gaussian_kernel1d(1.5, radius=5), persistent=False)

    def forward(self, reconstruction: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        device_type = reconstruction.device.type
        with torch.autocast(device_type=device_type, enabled=False):
            reconstruction = reconstruction.float()
            target = target.float()
            terms: dict[str, torch.Tensor] = {}
            if self.weights.mse:
                terms["mse"] = F.mse_loss(reconstruction, target)
            if self.weights.l1:
                terms["l1"] = F.l1_loss(reconstruction, target)
            if self.weights.ssim:
                terms["ssim"] = 1.0 - ssim_map(reconstruction, target, self.ssim_window).mean()
            if self.weights.edge:
                terms["edge"] = F.l1_loss(sobel_magnitude(reconstruction), sobel_magnitude(target))
            if self.perceptual is not None:
                terms["perceptual"] = self.perceptual(reconstruction, target)
            total = sum(getattr(self.weights, name) * value for name, value in terms.items())
        assert isinstance(total, torch.Tensor)
        return total, {name: float(value.detach()) for name, value in terms.items()}
