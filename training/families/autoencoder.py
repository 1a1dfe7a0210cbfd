"""The U-Net reconstruction autoencoder: its config and the plain torch model that gets exported.

Users of MVTec-style inspection often start from "AutoencoderUNetLite": RGB at 128x128 in
[-1, 1], three downsampling blocks of double convolutions (128 -> 64 -> 32 -> 16), a 512-channel
bottleneck at 16x16, three ``ConvTranspose2d`` upsampling blocks with skip connections and a
``Tanh`` output, about 1.9 M parameters. :class:`AutoencoderUNetLite` is that network (sizes,
widths and which skips exist are configurable); :class:`AutoencoderDetector` wraps it with the
fixed post-processing that turns a reconstruction into the bundle contract: the per-pixel
reconstruction error (gradient-similarity-, SSIM- and L2-based, weights configurable),
Gaussian-smoothed, and the image score (its maximum or the mean of its top-k pixels). The fitting loop lives in
:mod:`training.fit_autoencoder`, the loss in :mod:`training.ae_loss`.

Grayscale data sets are handled explicitly: with ``in_channels: 1`` the network reconstructs one
channel, and the graph averages the three channels the edge feeds it (a gray frame is replicated
to RGB by the bundle's input rule, so the average is the gray value, up to rounding).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from training.configdict import known_keys, plain
from training.similarity import gaussian_kernel1d, gradient_similarity, separable_filter, ssim_map

ARCHITECTURE = "unet_lite"
SCORE_RULES = ("max", "topk_mean")
MAP_NORMS = ("none", "position")
# The bundle's input rule for this family: x / 255 mapped to [-1, 1] as (x/255 - 0.5) / 0.5.
INPUT_MEAN = (0.5, 0.5, 0.5)
INPUT_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class AutoencoderConfig:
    """What defines an autoencoder model; stored under ``config:`` in ``run.yaml`` and ``bundle.yaml``.

    ``widths`` are the encoder blocks' channels (one per downsampling by 2), ``bottleneck`` the
    channels at the lowest resolution, ``skips`` which decoder levels (outermost first) get the
    encoder's features concatenated. The anomaly map is ``gms_weight * (1 - MSGMS) + ssim_weight *
    (1 - SSIM) + l2_weight * squared error`` (SSIM and L2 averaged over channels; MSGMS, RIAD's
    multi-scale gradient magnitude similarity over ``gms_scales`` halvings, on the channel mean),
    smoothed by a Gaussian of ``sigma`` input pixels and pooled by ``map_stride``; ``score`` is its
    ``max`` or the ``topk_mean`` of its ``topk`` largest pixels. The default map is MSGMS alone: on
    bottle it beat SSIM + L2 at every smoothing and normalisation measured (docs/models.md). The
    likely reason (not measured apart): an inpainted cell's brightness drifts a little everywhere,
    which L2 and SSIM count, while its edges are right wherever the part is good.

    ``inpaint_cells`` (empty: off, one plain pass) makes the model reconstruct by inpainting, as RIAD does
    (Zavrtanik et al., 2021): the image is cut into square cells of each listed size, the cells
    are split into ``inpaint_sets`` groups, and each group is hidden in turn and predicted from the
    rest, so every pixel is reconstructed from a pass that never saw it and a skip connection has
    nothing to copy a defect from. That costs ``len(inpaint_cells) * inpaint_sets`` network passes
    per frame (one batch); training hides cells the same way (:func:`training.augment.hide_cells`).

    ``map_norm: position`` divides the smoothed map by what good parts show at each position: the
    mean smoothed error of the training images there, plus ``map_norm_floor`` times its overall
    mean (so a position where good parts reconstruct perfectly cannot blow up). A reconstruction
    is least exact on a good part's own fine structure (a bottle's rim); dividing by it leaves
    what is unusual for that place. It suits parts that sit in the same place in every frame;
    the divisor is fitted after training (:meth:`AutoencoderDetector.fit_position_scale`) and
    stored with the weights.
    """

    input_size: tuple[int, int] = (128, 128)
    in_channels: int = 3
    widths: tuple[int, ...] = (32, 64, 128)
    bottleneck: int = 512
    skips: tuple[bool, ...] = (True, True, True)
    ssim_window_sigma: float = 1.5
    ssim_weight: float = 0.0
    l2_weight: float = 0.0
    gms_weight: float = 1.0
    gms_scales: int = 4
    sigma: float = 2.0
    map_stride: int = 1
    score: str = "max"
    topk: int = 64
    inpaint_cells: tuple[int, ...] = (16, 32)
    inpaint_sets: int = 3
    map_norm: str = "none"
    map_norm_floor: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "widths", tuple(int(v) for v in self.widths))
        object.__setattr__(self, "skips", tuple(bool(v) for v in self.skips))
        object.__setattr__(self, "inpaint_cells", tuple(int(v) for v in self.inpaint_cells))
        if self.in_channels not in (1, 3):
            raise ValueError(f"config: in_channels must be 1 (grayscale) or 3 (RGB), got {self.in_channels}")
        if not self.widths or min(self.widths) < 1 or self.bottleneck < 1:
            raise ValueError(f"config: widths and bottleneck must be positive, got {self.widths}, {self.bottleneck}")
        if len(self.skips) != len(self.widths):
            raise ValueError(f"config: skips needs one flag per encoder block ({len(self.widths)}), got {self.skips}")
        factor = 2 ** len(self.widths)
        if len(self.input_size) != 2 or any(side < 32 or side % factor for side in self.input_size):
            raise ValueError(f"config: input_size must be (height, width) >= 32 and divisible by {factor} "
                             f"(one halving per encoder block), got {self.input_size}")
        if self.map_stride < 1 or any(side % self.map_stride for side in self.input_size):
            raise ValueError(f"config: map_stride must be >= 1 and divide input_size {self.input_size}")
        weights = (self.ssim_weight, self.l2_weight, self.gms_weight)
        if min(weights) < 0 or sum(weights) == 0:
            raise ValueError(f"config: gms_weight, ssim_weight and l2_weight must be >= 0 and not all 0, got {weights}")
        if not 1 <= self.gms_scales <= 6 or min(self.input_size) >> (self.gms_scales - 1) < 4:
            raise ValueError(f"config: gms_scales must be 1 to 6 and leave at least 4 pixels at the coarsest scale "
                             f"of {self.input_size}, got {self.gms_scales}")
        if self.sigma <= 0 or self.ssim_window_sigma <= 0:
            raise ValueError("config: sigma and ssim_window_sigma must be > 0")
        if self.score not in SCORE_RULES:
            raise ValueError(f"config: score must be one of {', '.join(SCORE_RULES)}, got {self.score!r}")
        if any(not 1 <= cell <= min(self.input_size) for cell in self.inpaint_cells):
            raise ValueError(f"config: inpaint_cells must be between 1 and the input's shorter side "
                             f"{min(self.input_size)} pixels, got {self.inpaint_cells}")
        if self.map_norm not in MAP_NORMS or self.map_norm_floor <= 0:
            raise ValueError(f"config: map_norm must be one of {', '.join(MAP_NORMS)} and map_norm_floor > 0, "
                             f"got {self.map_norm!r}, {self.map_norm_floor}")
        if self.inpaint_sets < 2:
            raise ValueError(f"config: inpaint_sets must be >= 2 (one group hidden, the others seen), "
                             f"got {self.inpaint_sets}")
        pixels = (self.input_size[0] // self.map_stride) * (self.input_size[1] // self.map_stride)
        if not 1 <= self.topk <= pixels:
            raise ValueError(f"config: topk must be in [1, {pixels}] (map pixels), got {self.topk}")

    @property
    def map_size(self) -> tuple[int, int]:
        return self.input_size[0] // self.map_stride, self.input_size[1] // self.map_stride

    def to_dict(self) -> dict[str, Any]:
        return plain(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AutoencoderConfig:
        return cls(**known_keys(data, cls, "autoencoder config"))


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by batch norm and ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class AutoencoderUNetLite(nn.Module):
    """U-Net autoencoder: ``forward(x)`` maps ``(B, C, H, W)`` in [-1, 1] to its reconstruction in [-1, 1].

    The bottleneck is a 3x3 convolution to ``bottleneck`` channels and a 1x1 convolution mixing
    them; each decoder level is a stride-2 ``ConvTranspose2d`` then a double convolution over the
    upsampled features, concatenated with the encoder's features at that level where ``skips``
    says so.
    """

    def __init__(self, in_channels: int = 3, widths: tuple[int, ...] = (32, 64, 128), bottleneck: int = 512,
                 skips: tuple[bool, ...] = (True, True, True)) -> None:
        super().__init__()
        if len(skips) != len(widths):
            raise ValueError(f"skips needs one flag per encoder block ({len(widths)}), got {skips}")
        self.in_channels = in_channels
        self.skips = tuple(skips)
        self.encoder = nn.ModuleList()
        previous = in_channels
        for width in widths:
            self.encoder.append(DoubleConv(previous, width))
            previous = width
        self.bottleneck = nn.Sequential(
            nn.Conv2d(previous, bottleneck, 3, padding=1, bias=False),
            nn.BatchNorm2d(bottleneck),
            nn.ReLU(inplace=True),
            nn.Conv2d(bottleneck, bottleneck, 1, bias=False),
            nn.BatchNorm2d(bottleneck),
            nn.ReLU(inplace=True),
        )
        self.upsample = nn.ModuleList()
        self.decoder = nn.ModuleList()
        previous = bottleneck
        for width, skip in zip(reversed(widths), reversed(self.skips), strict=True):
            self.upsample.append(nn.ConvTranspose2d(previous, width, kernel_size=2, stride=2))
            self.decoder.append(DoubleConv(width * (2 if skip else 1), width))
            previous = width
        self.head = nn.Sequential(nn.Conv2d(previous, in_channels, 1), nn.Tanh())
        self.factor = 2 ** len(widths)

    def check_input(self, x: torch.Tensor) -> None:
        """Refuse a batch of the wrong rank, channel count or size (shapes are static when traced)."""
        if x.ndim != 4:
            raise ValueError(f"autoencoder input must be (B, C, H, W), got shape {tuple(x.shape)}")
        if int(x.shape[1]) != self.in_channels:
            raise ValueError(f"autoencoder input must have {self.in_channels} channel(s), got {int(x.shape[1])}")
        if int(x.shape[-2]) % self.factor or int(x.shape[-1]) % self.factor:
            raise ValueError(f"autoencoder input height and width must be divisible by {self.factor}, "
                             f"got {tuple(x.shape[-2:])}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        features: list[torch.Tensor] = []
        for block in self.encoder:
            x = block(x)
            features.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)
        for up, block, skip, feature in zip(self.upsample, self.decoder, reversed(self.skips), reversed(features),
                                                 strict=True):
            x = up(x)
            if skip:
                x = torch.cat([x, feature], dim=1)
            x = block(x)
        return self.head(x)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def cell_groups(height: int, width: int, cell: int, sets: int) -> torch.Tensor:
    """``(H, W)`` group index in ``[0, sets)`` of each pixel's ``cell``-sized square: ``(row + 2 col) % sets``.

    Cells sharing an edge always differ in group for ``sets >= 3``, so a hidden cell is predicted
    from all four neighbours; the pattern is fixed, so the graph and its parity are deterministic.
    """
    rows = torch.arange(height) // cell
    cols = torch.arange(width) // cell
    return (rows[:, None] + 2 * cols[None, :]) % sets


def inpaint_masks(config: AutoencoderConfig) -> torch.Tensor:
    """``(P, 1, H, W)`` float masks, 1 where pass ``p`` hides the pixel; every pixel hidden once per cell size."""
    height, width = config.input_size
    masks = [(cell_groups(height, width, cell, config.inpaint_sets) == group).float()
             for cell in config.inpaint_cells for group in range(config.inpaint_sets)]
    return torch.stack(masks).unsqueeze(1)


def position_divisor(good_mean: torch.Tensor, floor: float) -> torch.Tensor:
    """The ``map_norm: position`` divisor from the good images' mean smoothed map: itself plus ``floor`` x its mean."""
    return good_mean + floor * good_mean.mean()


class AutoencoderDetector(nn.Module):
    """The exported model: preprocessed ``Bx3xHxW`` image -> (anomaly map ``(B, 1, h, w)``, score ``(B,)``)."""

    ssim_window: torch.Tensor
    blur_kernel: torch.Tensor
    hidden: torch.Tensor
    position_scale: torch.Tensor

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        self.network = AutoencoderUNetLite(config.in_channels, config.widths, config.bottleneck, config.skips)
        self.register_buffer("ssim_window", gaussian_kernel1d(config.ssim_window_sigma, radius=5), persistent=False)
        self.register_buffer("blur_kernel", gaussian_kernel1d(config.sigma), persistent=False)
        self.register_buffer("hidden", inpaint_masks(config) if config.inpaint_cells else torch.zeros(0),
                             persistent=False)
        if config.map_norm == "position":  # fitted on good images; saved and exported with the weights
            self.register_buffer("position_scale", torch.ones(1, 1, *config.input_size))

    def set_map_stride(self, map_stride: int) -> None:
        """Change the anomaly map's resolution (post-processing only)."""
        self.config = replace(self.config, map_stride=map_stride)

    def network_input(self, x: torch.Tensor) -> torch.Tensor:
        """The tensor the network reconstructs: the 3-channel input, or its channel mean for grayscale."""
        if x.ndim != 4 or int(x.shape[1]) != 3:
            raise ValueError(f"detector input must be the preprocessed (B, 3, H, W) image, got {tuple(x.shape)}")
        if tuple(int(v) for v in x.shape[-2:]) != self.config.input_size:
            raise ValueError(f"detector input must be {self.config.input_size}, got {tuple(x.shape[-2:])}")
        return x.mean(dim=1, keepdim=True) if self.config.in_channels == 1 else x

    def reconstruct(self, target: torch.Tensor) -> torch.Tensor:
        """The network's reconstruction of ``target``: one pass, or the inpainted passes combined."""
        if not self.config.inpaint_cells:
            return self.network(target)
        passes = int(self.hidden.shape[0])
        seen = target.unsqueeze(1) * (1.0 - self.hidden.unsqueeze(0))  # (B, P, C, H, W), hidden cells at 0
        out = self.network(seen.flatten(0, 1)).unflatten(0, (-1, passes))
        combined = (out * self.hidden.unsqueeze(0)).sum(dim=1)
        return combined / float(len(self.config.inpaint_cells))

    def error_map(self, target: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
        """Per-pixel reconstruction error ``(B, 1, H, W)`` before smoothing."""
        error = torch.zeros_like(target[:, :1])
        if self.config.gms_weight:
            dissimilarity = 1.0 - gradient_similarity(target, reconstruction, self.config.gms_scales)
            error = error + self.config.gms_weight * dissimilarity
        if self.config.ssim_weight:
            dissimilarity = 1.0 - ssim_map(target, reconstruction, self.ssim_window)
            error = error + self.config.ssim_weight * dissimilarity.mean(dim=1, keepdim=True)
        if self.config.l2_weight:
            squared = (target - reconstruction) ** 2
            error = error + self.config.l2_weight * squared.mean(dim=1, keepdim=True)
        return error

    def postprocess(self, error: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Smooth and pool the error into the anomaly map; reduce it to the image score."""
        anomaly_map = separable_filter(error, self.blur_kernel)
        if self.config.map_norm == "position":
            anomaly_map = anomaly_map / self.position_scale
        if self.config.map_stride > 1:
            anomaly_map = F.avg_pool2d(anomaly_map, self.config.map_stride)
        flat = anomaly_map.flatten(1)
        if self.config.score == "max":
            score = flat.amax(dim=1)
        else:
            score = flat.topk(self.config.topk, dim=1).values.mean(dim=1)
        return anomaly_map, score

    @torch.no_grad()
    def fit_position_scale(self, good: torch.Tensor, batch_size: int = 8) -> None:
        """Set the ``map_norm: position`` divisor from good network inputs ``(N, C, H, W)``."""
        if self.config.map_norm != "position":
            raise ValueError("fit_position_scale needs map_norm: position")
        total = torch.zeros_like(self.position_scale)
        for batch in good.split(batch_size):
            error = self.error_map(batch, self.reconstruct(batch))
            total += separable_filter(error, self.blur_kernel).sum(dim=0, keepdim=True)
        mean = total / int(good.shape[0])
        self.position_scale.copy_(position_divisor(mean, self.config.map_norm_floor))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        target = self.network_input(x)
        reconstruction = self.reconstruct(target)
        return self.postprocess(self.error_map(target, reconstruction))
