"""PatchCore's entry in the family registry: the existing model and fit loop, wrapped, not rewritten.

PatchCore predates the registry: its config and torch model are :mod:`training.patchcore`, its fit
loop and run reader :mod:`training.train`. This module only adapts them to the registry's shape
(a :class:`~training.runs.TrainRequest` in, the ``model:`` section of ``bundle.yaml`` out), so
their internals can change without touching the registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from edge.model.preprocess import InputSpec
from training import train
from training.patchcore import PatchCore, PatchCoreConfig
from training.runs import TrainRequest
from training.scorer import fit_map_scale

CONFIG_KEYS: tuple[str, ...] = tuple(PatchCoreConfig.__dataclass_fields__)
DEFAULT_BATCH_SIZE = 8


def fit(request: TrainRequest) -> Path:
    """Fit PatchCore as ``edge-train`` always has, from the request's config overrides."""
    if request.train:
        raise ValueError(f"patchcore has no trainer settings; got {sorted(request.train)}")
    config = PatchCoreConfig.from_dict(request.config)
    return train.fit(request.data_dir, request.out_dir, config, val_fraction=request.val_fraction,
                     seed=request.seed, device=request.device, batch_size=request.batch_size or DEFAULT_BATCH_SIZE,
                     max_images=request.max_images, progress=request.progress)


def load(run_dir: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    return train.load_run(run_dir)


def describe(model: torch.nn.Module, run: Mapping[str, Any]) -> dict[str, Any]:
    config = run["config"]
    return {"family": "patchcore", "backbone": config["backbone"], "config": dict(config),
            "memory_bank": run.get("memory_bank_shape")}


def set_map_stride(model: torch.nn.Module, run: Mapping[str, Any], map_stride: int) -> None:
    """Change the map's resolution; the wide map's scale, fitted at the old one, is fitted again on
    the run's validation images (a no-op without the wide map)."""
    assert isinstance(model, PatchCore)
    model.set_map_stride(map_stride)
    fit_map_scale(model, InputSpec.from_dict(run["input_spec"]), [Path(p) for p in run.get("validation_images") or []])


def map_meaning(config: Mapping[str, Any]) -> str:
    stride = int(config.get("map_stride", 1))
    head = (f"anomaly score per {stride}x{stride} input pixels (map_stride {stride}): nearest-neighbour patch "
            "distance to the memory bank, upsampled bilinearly and Gaussian-smoothed")
    if float(config.get("wide_sigma", 0.0)) > 0:
        return (f"{head}, and the maximum of that fine map and a wide one (the distances clipped at the held-out "
                f"good images' 99th percentile, smoothed at sigma {config['wide_sigma']:g}), each in units of "
                "the good images' scale (0: their median, 1: their 99th percentile); region boxes are scaled to "
                "image pixels")
    return f"{head} (raw units, not normalised); region boxes are scaled to image pixels"
