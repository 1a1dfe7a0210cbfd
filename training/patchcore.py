"""The plain PatchCore torch model: what export turns into the ONNX graph the edge runs.

It holds the truncated backbone, the memory bank of nominal patch embeddings and the fixed
post-processing (nearest-neighbour distance, upsampling, Gaussian smoothing, max), and nothing of
the fitting loop, which lives in :mod:`training.train`. Everything in ``forward`` is static for a
given bank, so the nearest-neighbour search is a python loop over fixed slices of the bank: the
exported graph is a fixed chain of matmul/min blocks and never materialises the full
(patches x bank) distance matrix, which keeps edge memory flat as the bank grows.

The anomaly map comes out at ``1 / map_stride`` of the input resolution: upsampling and smoothing a
full-resolution map cost as much as a third of the graph's time for no gain in what the edge
reports (regions are scaled to image pixels, evaluation resizes maps to the masks).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from training.backbones import BACKBONES, build_feature_extractor
from training.configdict import known_keys, plain

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PatchCoreConfig:
    """What defines a PatchCore model; stored under ``config:`` in ``run.yaml`` and ``model.pt``.

    ``layers`` empty means the backbone's default stride-8 and stride-16 layers.
    ``input_size`` is (height, width) of the graph input. ``chunk_size`` is how many bank rows
    one block of the nearest-neighbour search compares at a time. ``sigma`` is the Gaussian
    smoothing in input pixels. ``map_stride`` is how many input pixels one anomaly-map pixel
    covers in each direction (1: the map has the input's resolution); it must divide the input
    size, and the smoothing is applied at the map's resolution with ``sigma / map_stride``.
    """

    backbone: str = "mobilenet_v2"
    layers: tuple[str, ...] = ()
    input_size: tuple[int, int] = (256, 256)
    # 1% of the patches: on mvtec_bottle pixel AUROC is within 0.001 of 10% at a fifth of the
    # nearest-neighbour cost (the bank size drives edge latency). `edge-tradeoff` (README "Speed"):
    # on bottle image AUROC stays 1.0 down to 0.1%, but on magnetic_tile 0.5% loses 1.7 pixel-AUROC
    # points, and 1% already meets the 10 ms goal at 256 px (7.9 ms end to end).
    coreset_ratio: float = 0.01
    chunk_size: int = 4096
    pool_size: int = 3
    context: str = "none"
    sigma: float = 4.0
    # A 64x64 map for a 256 px input. On mvtec_bottle (`edge-tradeoff`, README "Speed") the map
    # resolution leaves pixel AUROC unchanged (0.9862 at 256x256, 128x128 and 64x64) while stride 4
    # takes 1.9 ms (19%) off the 256 px end-to-end p50; stride 8 saves only 0.1 ms more.
    map_stride: int = 4
    # The broad-defect map (see PatchCore.post_process): the distances clipped at the good images'
    # 99th percentile, smoothed at this sigma, and combined with the fine map by a pixel-wise maximum
    # on the good images' scale. On magnetic_tile it lifts pixel AUROC 0.791 -> 0.846 ("uneven"
    # 0.780 -> 0.873) with image AUROC unchanged; on mvtec_bottle it changes neither (1.000 / 0.9864):
    # `python -m studies.map_mix`, docs/accuracy.md. 0 turns it off (the map of runs made before it).
    wide_sigma: float = 32.0

    def __post_init__(self) -> None:
        # Accept lists (from YAML or callers) but store tuples, so configs compare and hash.
        object.__setattr__(self, "layers", tuple(str(v) for v in self.layers))
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        if self.backbone not in BACKBONES:
            raise ValueError(f"config: unknown backbone {self.backbone!r}; supported: {', '.join(BACKBONES)}")
        if not 0.0 < self.coreset_ratio <= 1.0:
            raise ValueError(f"config: coreset_ratio must be in (0, 1], got {self.coreset_ratio}")
        if len(self.input_size) != 2 or min(self.input_size) < 32:
            raise ValueError(f"config: input_size must be (height, width) >= 32, got {self.input_size}")
        if self.chunk_size < 1 or self.sigma <= 0:
            raise ValueError("config: chunk_size must be >= 1 and sigma > 0")
        if self.wide_sigma < 0:
            raise ValueError(f"config: wide_sigma must be >= 0 (0: off), got {self.wide_sigma}")
        if self.pool_size < 1 or self.pool_size % 2 == 0:
            raise ValueError(f"config: pool_size must be an odd number >= 1, got {self.pool_size}")
        if self.map_stride < 1 or any(side % self.map_stride for side in self.input_size):
            raise ValueError(f"config: map_stride must be >= 1 and divide input_size {self.input_size}, "
                             f"got {self.map_stride}")

    @property
    def map_size(self) -> tuple[int, int]:
        """(height, width) of the anomaly map the model outputs."""
        return self.input_size[0] // self.map_stride, self.input_size[1] // self.map_stride

    def resolved(self) -> PatchCoreConfig:
        """This config with ``layers`` filled in from the backbone's defaults."""
        if self.layers:
            return self
        return replace(self, layers=BACKBONES[self.backbone].default_layers)

    def to_dict(self) -> dict[str, Any]:
        return plain(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PatchCoreConfig:
        return cls(**known_keys(data, cls, "config"))

    @classmethod
    def from_saved(cls, data: Mapping[str, Any]) -> PatchCoreConfig:
        """The config of a saved run; one saved before the wide map existed has it off, as it was made."""
        return cls.from_dict({"wide_sigma": 0.0, **data})


def gaussian_kernel1d(sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian of size ``2 * int(4 * sigma + 0.5) + 1``."""
    radius = int(4.0 * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return (kernel / kernel.sum()).to(torch.float32)


def nearest_distance(
    queries: torch.Tensor, bank: torch.Tensor, bank_sq_norms: torch.Tensor, chunk_size: int
) -> torch.Tensor:
    """Euclidean distance from each row of ``queries`` (N, D) to its nearest row of ``bank`` (M, D).

    Uses ``|a|^2 - 2 a.b + |b|^2`` on slices of ``chunk_size`` bank rows with a running minimum,
    so at most (N x chunk_size) distances exist at once. The loop bounds depend only on the bank's
    shape, so tracing unrolls it into a fixed graph. ``|a|^2`` does not change which bank row is
    nearest, so it is added after the minimum; ``-2 a.b + |b|^2`` is one matmul of the queries
    with a column of ones appended against ``[-2 b, |b|^2]`` (a constant the graph optimisers fold),
    so each chunk is a MatMul and a ReduceMin with no elementwise pass over the (N x chunk)
    distances: 1.2x (bank of 1925) to 1.45x (7014) faster on the 2-core AVX2 CPU, same scores.
    """
    augmented = F.pad(queries, (0, 1), value=1.0)
    best: torch.Tensor | None = None
    for start in range(0, int(bank.shape[0]), chunk_size):
        stop = min(start + chunk_size, int(bank.shape[0]))
        weights = torch.cat([bank[start:stop] * -2.0, bank_sq_norms[start:stop].unsqueeze(1)], dim=1)
        chunk_min = (augmented @ weights.T).min(dim=1).values
        best = chunk_min if best is None else torch.minimum(best, chunk_min)
    if best is None:
        raise RuntimeError("memory bank is empty: fit the model first")
    return (best + (queries * queries).sum(dim=1)).clamp(min=0.0).sqrt()


def _quantile(values: torch.Tensor, q: float) -> torch.Tensor:
    """The ``q`` quantile of all of ``values`` (every k-th of them past 4M: torch.quantile's limit is 16M)."""
    flat = values.reshape(-1)
    if flat.numel() > 1 << 22:
        flat = flat[:: flat.numel() // (1 << 22) + 1]
    return torch.quantile(flat, q)


class PatchCore(nn.Module):
    """PatchCore as published: locally aggregated mid-level features against a memory bank.

    ``forward(x)`` takes the preprocessed ``Bx3xHxW`` float32 batch and returns the smoothed
    anomaly map ``(B, 1, H / map_stride, W / map_stride)`` and the image score ``(B,)`` (the map's
    maximum). With ``wide_sigma`` the map is the combination of :meth:`post_process`, in units of
    the good images' scale, once :meth:`fit_map_scale` has seen held-out good images.
    """

    blur_kernel: torch.Tensor
    wide_kernel: torch.Tensor
    map_scale: torch.Tensor

    def __init__(self, config: PatchCoreConfig, *, pretrained: bool = True) -> None:
        super().__init__()
        self.config = config.resolved()
        self.feature_extractor = build_feature_extractor(
            self.config.backbone, self.config.layers, pretrained=pretrained
        )
        pool = self.config.pool_size
        self.feature_pool = nn.AvgPool2d(kernel_size=pool, stride=1, padding=pool // 2)
        self.register_buffer("memory_bank", torch.empty(0, 0))
        self.register_buffer("memory_bank_sq_norms", torch.empty(0))
        # Derived from the config, not state: runs saved with another map_stride still load.
        self.register_buffer("blur_kernel", gaussian_kernel1d(self.config.sigma / self.config.map_stride),
                             persistent=False)
        self.register_buffer("wide_kernel", self._wide_kernel(), persistent=False)
        # Fitted on good images (fit_map_scale): distance cap, fine median and span, wide median and span.
        self.register_buffer("map_scale", torch.empty(0))

    def _wide_kernel(self) -> torch.Tensor:
        sigma = self.config.wide_sigma
        return gaussian_kernel1d(sigma / self.config.map_stride) if sigma > 0 else torch.ones(1)

    def set_memory_bank(self, bank: torch.Tensor) -> None:
        """Replace the memory bank (M, D) and its precomputed squared norms."""
        if bank.ndim != 2 or bank.shape[0] == 0:
            raise ValueError(f"memory bank must be a non-empty (M, D) matrix, got {tuple(bank.shape)}")
        device = self.blur_kernel.device
        bank = bank.detach().to(device=device, dtype=torch.float32).contiguous()
        self.memory_bank = bank
        self.memory_bank_sq_norms = (bank * bank).sum(dim=1)

    def set_map_stride(self, map_stride: int) -> None:
        """Change the anomaly map's resolution (post-processing only: the bank is unchanged).

        The map scale was fitted on maps of the old resolution and is dropped: refit it."""
        self.config = replace(self.config, map_stride=map_stride)  # validated by __post_init__
        self._new_post_processing()

    def set_sigma(self, sigma: float) -> None:
        """Change the map's Gaussian smoothing (post-processing only: the bank is unchanged).

        The map scale was fitted on maps of the old smoothing and is dropped: refit it."""
        self.config = replace(self.config, sigma=sigma)  # validated by __post_init__
        self._new_post_processing()

    def _new_post_processing(self) -> None:
        device = self.blur_kernel.device
        self.blur_kernel = gaussian_kernel1d(self.config.sigma / self.config.map_stride).to(device)
        self.wide_kernel = self._wide_kernel().to(device)
        self.map_scale = torch.empty(0, device=device)

    @property
    def combines_maps(self) -> bool:
        """Whether the map is the fine and wide combination (wide map on and its scale fitted)."""
        return self.config.wide_sigma > 0 and self.map_scale.numel() == 5

    def fit_map_scale(self, distances: torch.Tensor) -> None:
        """Fit the wide map's cap and both maps' scales on unsmoothed distance maps ``(N, 1, h, w)`` of
        held-out good images (never labels). The cap is their 99th percentile; each map is then
        shifted and scaled so that the good images' median is 0 and their 99th percentile 1, which
        makes the two comparable in :meth:`post_process`. A no-op when ``wide_sigma`` is 0."""
        if self.config.wide_sigma <= 0:
            return
        if distances.numel() == 0:
            raise ValueError("fit_map_scale needs the distance maps of at least one good image")
        with torch.no_grad():
            distances = distances.to(self.blur_kernel.device, torch.float32)
            cap = _quantile(distances, 0.99)
            values = [cap]
            for smoothed in (self.blur(distances), self.blur(torch.minimum(distances, cap), self.wide_kernel)):
                median, high = _quantile(smoothed, 0.5), _quantile(smoothed, 0.99)
                values += [median, (high - median).clamp(min=1e-6)]
            self.map_scale = torch.stack(values)

    def _load_from_state_dict(self, state_dict: Mapping[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # The bank's size is only known once fitted: take its shape from the state dict.
        if isinstance(state_dict, dict):
            state_dict.pop(prefix + "blur_kernel", None)  # persistent in runs saved before map_stride
            state_dict.setdefault(prefix + "map_scale", torch.empty(0))  # runs saved before the wide map
            scale = state_dict[prefix + "map_scale"]
            if isinstance(scale, torch.Tensor) and scale.shape != self.map_scale.shape:
                self.map_scale = torch.empty_like(scale, device=self.blur_kernel.device)
        bank = state_dict.get(prefix + "memory_bank")
        if isinstance(bank, torch.Tensor) and bank.shape != self.memory_bank.shape:
            self.memory_bank = torch.empty_like(bank, device=self.blur_kernel.device)
            self.memory_bank_sq_norms = torch.empty(bank.shape[0], device=self.blur_kernel.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)  # type: ignore[arg-type]

    def patch_features(self, x: torch.Tensor) -> torch.Tensor:
        """Patch embeddings as a map ``(B, D, h, w)`` at the stride of the shallower layer."""
        features = [self.feature_pool(f) for f in self.feature_extractor(x)]
        size = features[0].shape[-2:]
        resized = [features[0]] + [
            F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in features[1:]
        ]
        joined = torch.cat(resized, dim=1)
        if self.config.context == "center":  # each input's mean feature removed: what differs from the rest
            joined = joined - joined.mean(dim=(2, 3), keepdim=True)
        elif self.config.context == "append":
            joined = torch.cat([joined, joined - joined.mean(dim=(2, 3), keepdim=True)], dim=1)
        return joined

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch embeddings of a batch as rows ``(B * h * w, D)``, as stored in the memory bank."""
        features = self.patch_features(x)
        return features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])

    def embed_per_image(self, x: torch.Tensor) -> torch.Tensor:
        """Patch embeddings of a batch as ``(B, h * w, D)``: one chunk of rows per input."""
        features = self.patch_features(x)
        return features.permute(0, 2, 3, 1).reshape(features.shape[0], -1, features.shape[1])

    def blur(self, scores: torch.Tensor, kernel: torch.Tensor | None = None) -> torch.Tensor:
        """Separable Gaussian smoothing of ``(B, 1, H, W)`` maps with reflect padding (replicate where
        the kernel is wider than the map: reflection needs a border thinner than the map; the map's
        size is fixed in a graph, so the choice is made once, at export). ``kernel``: the fine one
        unless given."""
        kernel = self.blur_kernel if kernel is None else kernel
        radius = kernel.shape[0] // 2
        mode = "reflect" if radius < min(scores.shape[-2:]) else "replicate"
        scores = F.pad(scores, (radius, radius, radius, radius), mode=mode)
        scores = F.conv2d(scores, kernel.view(1, 1, 1, -1))
        return F.conv2d(scores, kernel.view(1, 1, -1, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.score_patches(self.patch_features(x), (int(x.shape[-2]), int(x.shape[-1])))

    def score_patches(self, features: torch.Tensor, input_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Anomaly maps and scores from patch features ``(B, D, h, w)`` of inputs of ``input_size``."""
        anomaly_map = self.post_process(self.distance_map(features, input_size))
        return anomaly_map, anomaly_map.amax(dim=(1, 2, 3))

    def post_process(self, distances: torch.Tensor) -> torch.Tensor:
        """The anomaly map from unsmoothed distance maps ``(B, 1, h, w)``.

        The fine map (smoothed at ``sigma``) finds small defects. Broad ones, such as magnetic_tile's
        bands of slightly different texture, raise the distances a little over a large area, where
        the fine map is noisy. The wide map averages the distances over ``wide_sigma`` after clipping
        them at the good images' 99th percentile, so it rises only where many patches are somewhat
        unusual, not around one strong small defect (unclipped, it spread bottle's defects and cost
        0.014 pixel AUROC there). With both on the good images' scale, the map is their maximum.
        """
        fine = self.blur(distances)
        if not self.combines_maps:
            return fine
        cap, fine_median, fine_span, wide_median, wide_span = self.map_scale.unbind()
        wide = self.blur(torch.minimum(distances, cap), self.wide_kernel)
        return torch.maximum((fine - fine_median) / fine_span, (wide - wide_median) / wide_span)

    def distance_map(self, features: torch.Tensor, input_size: tuple[int, int]) -> torch.Tensor:
        """Nearest-neighbour distances of patch features ``(B, D, h, w)`` at the map's size, not yet smoothed."""
        batch, dim, height, width = features.shape
        queries = features.permute(0, 2, 3, 1).reshape(-1, dim)
        distances = nearest_distance(queries, self.memory_bank, self.memory_bank_sq_norms, self.config.chunk_size)
        anomaly_map = distances.reshape(batch, 1, height, width)
        map_size = (input_size[0] // self.config.map_stride, input_size[1] // self.config.map_stride)
        if (height, width) != map_size:
            anomaly_map = F.interpolate(anomaly_map, size=map_size, mode="bilinear", align_corners=False)
        return anomaly_map
