"""PaDiM: its config and the plain torch model that gets exported.

PaDiM (Defard et al., 2020) models every patch position of a normal image as a multivariate
Gaussian of mid-level backbone features and scores a patch by its Mahalanobis distance to the
Gaussian of its position. It needs no memory-bank search, only one small matrix product per
position, which makes it the usual light baseline beside PatchCore. The inverse covariance is
computed once at fitting (:mod:`training.fit_padim`) and stored in the graph as its Cholesky
factor ``L`` (``inverse = L L^T``), so the edge computes ``|delta L|^2``: a batched MatMul and a sum
of squares that can never go negative through rounding.

Features come from the same offline backbones as PatchCore (:mod:`training.backbones`), are
resampled to one grid (``grid_stride`` input pixels per cell: finer maps average-pooled, coarser
ones bilinearly upsampled) and reduced to a seeded random subset of ``n_features`` channels, as in
the paper. The grid stride sets the graph's size: the factors are (cells x d x d) floats.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from training.backbones import BACKBONES, build_feature_extractor
from training.configdict import known_keys, plain
from training.similarity import gaussian_kernel1d, separable_filter

# Stride-4, -8 and -16 taps (the paper's layer1..layer3 of ResNet18) for the offline backbones.
DEFAULT_LAYERS: dict[str, tuple[str, ...]] = {
    "mobilenet_v2": ("features.3", "features.6", "features.10"),
    "efficientnet_lite0": ("blocks.1", "blocks.2", "blocks.4"),
    "resnet18": ("layer1", "layer2", "layer3"),
    "wide_resnet50_2": ("layer1", "layer2", "layer3"),
}


@dataclass(frozen=True)
class PadimConfig:
    """What defines a PaDiM model; stored under ``config:`` in ``run.yaml`` and ``bundle.yaml``.

    ``layers`` empty means :data:`DEFAULT_LAYERS` of the backbone. ``n_features`` is the size of
    the random channel subset (all channels if the layers have fewer), drawn with
    ``feature_seed``. ``epsilon`` is added to each covariance's diagonal before inversion.
    ``sigma`` is the Gaussian smoothing in input pixels, ``map_stride`` the input pixels per map
    pixel.
    """

    backbone: str = "mobilenet_v2"
    layers: tuple[str, ...] = ()
    input_size: tuple[int, int] = (256, 256)
    grid_stride: int = 8
    n_features: int = 100
    feature_seed: int = 0
    epsilon: float = 0.01
    sigma: float = 4.0
    map_stride: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(str(v) for v in self.layers))
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        if self.backbone not in BACKBONES:
            raise ValueError(f"config: unknown backbone {self.backbone!r}; supported: {', '.join(BACKBONES)}")
        if len(self.input_size) != 2 or min(self.input_size) < 32:
            raise ValueError(f"config: input_size must be (height, width) >= 32, got {self.input_size}")
        for name in ("grid_stride", "map_stride"):
            stride = getattr(self, name)
            if stride < 1 or any(side % stride for side in self.input_size):
                raise ValueError(f"config: {name} must be >= 1 and divide input_size {self.input_size}, got {stride}")
        if self.n_features < 1 or self.epsilon <= 0 or self.sigma <= 0:
            raise ValueError("config: n_features must be >= 1, epsilon and sigma > 0")

    @property
    def grid_size(self) -> tuple[int, int]:
        return self.input_size[0] // self.grid_stride, self.input_size[1] // self.grid_stride

    @property
    def map_size(self) -> tuple[int, int]:
        return self.input_size[0] // self.map_stride, self.input_size[1] // self.map_stride

    def resolved(self) -> PadimConfig:
        """This config with ``layers`` filled in from the backbone's defaults."""
        return self if self.layers else replace(self, layers=DEFAULT_LAYERS[self.backbone])

    def to_dict(self) -> dict[str, Any]:
        return plain(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PadimConfig:
        return cls(**known_keys(data, cls, "padim config"))


def resample(feature: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``feature`` (B, C, h, w) on the ``size`` grid: average-pooled if finer, bilinear if coarser."""
    height, width = int(feature.shape[-2]), int(feature.shape[-1])
    if (height, width) == size:
        return feature
    if height > size[0] and height % size[0] == 0 and width % size[1] == 0:
        return F.avg_pool2d(feature, kernel_size=(height // size[0], width // size[1]))
    return F.interpolate(feature, size=size, mode="bilinear", align_corners=False)


class Padim(nn.Module):
    """``forward(x)``: preprocessed ``Bx3xHxW`` -> (anomaly map ``(B, 1, h, w)``, score ``(B,)`` = its max).

    Buffers (set by :meth:`set_gaussians`): ``channel_index`` (d,), ``mean`` (P, d) and
    ``precision_factor`` (P, d, d) for the P grid cells in row-major order.
    """

    channel_index: torch.Tensor
    mean: torch.Tensor
    precision_factor: torch.Tensor
    blur_kernel: torch.Tensor

    def __init__(self, config: PadimConfig, *, pretrained: bool = True) -> None:
        super().__init__()
        self.config = config.resolved()
        self.feature_extractor = build_feature_extractor(self.config.backbone, self.config.layers,
                                                         pretrained=pretrained)
        self.register_buffer("channel_index", torch.empty(0, dtype=torch.long))
        self.register_buffer("mean", torch.empty(0, 0))
        self.register_buffer("precision_factor", torch.empty(0, 0, 0))
        self.register_buffer("blur_kernel", gaussian_kernel1d(self.config.sigma / self.config.map_stride),
                             persistent=False)

    def set_map_stride(self, map_stride: int) -> None:
        """Change the anomaly map's resolution (post-processing only: the Gaussians are unchanged)."""
        self.config = replace(self.config, map_stride=map_stride)
        self.blur_kernel = gaussian_kernel1d(self.config.sigma / map_stride).to(self.blur_kernel.device)

    def set_channel_index(self, index: torch.Tensor) -> None:
        self.channel_index = index.to(device=self.blur_kernel.device, dtype=torch.long)

    def set_gaussians(self, mean: torch.Tensor, precision_factor: torch.Tensor) -> None:
        """Store the per-cell means (P, d) and Cholesky factors of the inverse covariances (P, d, d)."""
        cells = self.config.grid_size[0] * self.config.grid_size[1]
        dim = int(self.channel_index.numel())
        if tuple(mean.shape) != (cells, dim) or tuple(precision_factor.shape) != (cells, dim, dim):
            raise ValueError(f"expected mean ({cells}, {dim}) and factors ({cells}, {dim}, {dim}), got "
                             f"{tuple(mean.shape)} and {tuple(precision_factor.shape)}")
        device = self.blur_kernel.device
        self.mean = mean.detach().to(device=device, dtype=torch.float32).contiguous()
        self.precision_factor = precision_factor.detach().to(device=device, dtype=torch.float32).contiguous()

    def _load_from_state_dict(self, state_dict: Mapping[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # The buffers' sizes are only known once fitted: take them from the state dict.
        for name in ("channel_index", "mean", "precision_factor"):
            value = state_dict.get(prefix + name)
            if isinstance(value, torch.Tensor) and value.shape != getattr(self, name).shape:
                setattr(self, name, torch.empty_like(value, device=self.blur_kernel.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)  # type: ignore[arg-type]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The selected features of a batch on the grid, ``(B, d, P)``."""
        grid = self.config.grid_size
        features = torch.cat([resample(f, grid) for f in self.feature_extractor(x)], dim=1)
        features = features.index_select(1, self.channel_index)
        return features.flatten(2)

    def blur(self, scores: torch.Tensor) -> torch.Tensor:
        return separable_filter(scores, self.blur_kernel)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mean.numel() == 0:
            raise RuntimeError("PaDiM has no Gaussians: fit the model first")
        features = self.embed(x)  # (B, d, P)
        batch = features.shape[0]
        delta = features.permute(2, 0, 1) - self.mean.unsqueeze(1)  # (P, B, d)
        whitened = torch.bmm(delta, self.precision_factor)  # (P, B, d): delta^T L
        distance = (whitened * whitened).sum(dim=2).clamp(min=0.0).sqrt()  # (P, B)
        height, width = self.config.grid_size
        anomaly_map = distance.T.reshape(batch, 1, height, width)
        anomaly_map = F.interpolate(anomaly_map, size=self.config.map_size, mode="bilinear", align_corners=False)
        anomaly_map = self.blur(anomaly_map)
        return anomaly_map, anomaly_map.amax(dim=(1, 2, 3))
