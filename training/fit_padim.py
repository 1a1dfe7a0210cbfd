"""Fitting PaDiM: one pass of feature extraction, then a Gaussian per grid cell.

The loop is apart from the model (:mod:`training.families.padim`) as PatchCore's is. Features of
the training images (the seeded validation split stays out, for calibration) are accumulated as
float64 sums and sums of outer products per grid cell on the fitting device, so memory does not
grow with the number of images; the covariances are regularised by ``epsilon * I``, inverted
and Cholesky-factored in float64, and stored as float32. Feature extraction is batched and runs
on CUDA when present.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from edge.model.preprocess import InputSpec
from training.backbones import BACKBONES
from training.data import iter_batches, list_train_images, split_train_validation
from training.families.padim import Padim, PadimConfig
from training.runs import TrainRequest, run_record, save_checkpoint_model
from training.train import resolve_device, write_run_yaml

log = logging.getLogger(__name__)

FAMILY = "padim"
DEFAULT_BATCH_SIZE = 8
CONFIG_KEYS: tuple[str, ...] = tuple(PadimConfig.__dataclass_fields__)


def input_spec_for(config: PadimConfig) -> InputSpec:
    info = BACKBONES[config.backbone]
    spec = InputSpec(height=config.input_size[0], width=config.input_size[1], mean=info.mean, std=info.std)
    spec.check()
    return spec


def choose_channels(total: int, count: int, seed: int) -> torch.Tensor:
    """A seeded random subset of ``count`` of ``total`` channel indices, sorted (all if ``count >= total``)."""
    if count >= total:
        return torch.arange(total)
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(total, generator=generator)[:count].sort().values


def gaussians(sums: torch.Tensor, outer: torch.Tensor, count: int, epsilon: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Means (P, d) and Cholesky factors L of the inverse covariances (P, d, d) from float64 sums.

    ``sums`` is (P, d), ``outer`` (P, d, d) the sum of ``f f^T`` over ``count`` samples. The
    covariance is the unbiased estimate plus ``epsilon * I``; ``inverse = L L^T``.
    """
    if count < 2:
        raise ValueError(f"PaDiM needs at least 2 training images, got {count}")
    mean = sums / count
    covariance = (outer - count * mean.unsqueeze(2) * mean.unsqueeze(1)) / (count - 1)
    covariance = covariance + epsilon * torch.eye(covariance.shape[-1], dtype=covariance.dtype,
                                                  device=covariance.device)
    precision = torch.linalg.inv(covariance)
    precision = 0.5 * (precision + precision.transpose(1, 2))  # exact symmetry for the factorisation
    return mean, torch.linalg.cholesky(precision)


def fit(request: TrainRequest) -> Path:
    """Fit PaDiM on ``request.data_dir/train/good`` and write ``model.pt`` and ``run.yaml``."""
    if request.train:
        raise ValueError(f"padim has no trainer settings; got {sorted(request.train)}")
    config = PadimConfig.from_dict(request.config).resolved()
    device = resolve_device(request.device)
    batch_size = request.batch_size or DEFAULT_BATCH_SIZE
    timings: dict[str, float] = {}
    started = time.perf_counter()

    data_root = Path(request.data_dir).expanduser().resolve()
    split = split_train_validation(list_train_images(data_root), request.val_fraction, request.seed)
    train_images = split.train[: request.max_images] if request.max_images else split.train
    if len(train_images) < 2:
        raise ValueError(f"PaDiM needs at least 2 training images, got {len(train_images)}")
    spec = input_spec_for(config)
    model = Padim(config).to(device).eval()
    with torch.no_grad():
        probe = model.feature_extractor(torch.zeros(1, 3, *config.input_size, device=device))
    channels = sum(int(f.shape[1]) for f in probe)
    model.set_channel_index(choose_channels(channels, config.n_features, config.feature_seed))
    dim = int(model.channel_index.numel())
    cells = config.grid_size[0] * config.grid_size[1]
    timings["setup"] = time.perf_counter() - started

    tick = time.perf_counter()
    sums = torch.zeros(cells, dim, dtype=torch.float64, device=device)
    outer = torch.zeros(cells, dim, dim, dtype=torch.float64, device=device)
    total = math.ceil(len(train_images) / batch_size)
    with torch.no_grad():
        for batch in tqdm(iter_batches(train_images, spec, batch_size), total=total, desc="padim features",
                          unit="batch", disable=not request.progress):
            features = model.embed(torch.from_numpy(batch).to(device)).permute(2, 0, 1).to(torch.float64)  # (P, B, d)
            sums += features.sum(dim=1)
            outer += torch.bmm(features.transpose(1, 2), features)
    timings["features"] = time.perf_counter() - tick

    tick = time.perf_counter()
    mean, factor = gaussians(sums, outer, len(train_images), config.epsilon)
    model.set_gaussians(mean, factor)
    timings["gaussians"] = time.perf_counter() - tick
    log.info("padim: %s cells x %s features from %s images", cells, dim, len(train_images))

    out = Path(request.out_dir).expanduser().resolve()
    tick = time.perf_counter()
    save_checkpoint_model(out, FAMILY, config.to_dict(), spec, model)
    timings["save"] = time.perf_counter() - tick
    run = run_record(FAMILY, config.to_dict(), spec, data_root, train_images, split, request.seed, device)
    run["gaussians"] = {"cells": cells, "features": dim, "channels_available": channels,
                        "channel_index": [int(v) for v in model.channel_index.cpu()]}
    run["seconds"] = {k: round(v, 3) for k, v in timings.items()}
    write_run_yaml(out, run)
    return out


def build(config: Mapping[str, Any]) -> Padim:
    """The architecture of a saved run (no pretrained weights: the state dict holds them)."""
    return Padim(PadimConfig.from_dict(config), pretrained=False)
