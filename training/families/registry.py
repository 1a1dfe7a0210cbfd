"""The model families ``edge-train --model`` can fit, in one explicit registry.

Each family has one module in :mod:`training.families` holding its config and its plain torch
model (what export turns into the graph) and a fitting loop elsewhere in :mod:`training`;
:data:`FAMILIES` names them all, and nothing fills it by import side effects. Every family's
run directory and exported graph obey the same contract (``model.pt`` + ``run.yaml``; one graph
from the preprocessed ``1x3xHxW`` image to ``anomaly_map`` ``[1, 1, h, w]`` and ``score``
``[1]``), so export, calibration and the edge need no family-specific code: export asks the
family only for the ``model:`` section of ``bundle.yaml``, what the map and score mean, and to
change a run's map resolution.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from training import fit_autoencoder, fit_padim
from training.families import patchcore
from training.runs import Resources, TrainRequest, load_checkpoint_model, measure, record_in_run
from training.train import RunError, read_run_yaml

MAX_SCORE = "image anomaly score = max of anomaly_map (raw units); higher is more anomalous"


@dataclass(frozen=True)
class Family:
    """What the rest of the project needs to know about one model family.

    ``fit`` trains a run directory from a request; ``load`` reads one back as (CPU model in eval
    mode, ``run.yaml`` dict); ``describe`` gives the ``model:`` section of ``bundle.yaml`` and
    ``map_meaning`` the sentence ``outputs.anomaly_map.meaning`` carries. ``config_keys`` and
    ``train_keys`` are what ``--set`` and presets may override. ``set_map_stride`` changes a loaded
    run's map resolution for export (the model's own method, unless the family fitted something at
    the old resolution that must be fitted again).
    """

    name: str
    summary: str
    fit: Callable[[TrainRequest], Path]
    load: Callable[[Path], tuple[torch.nn.Module, dict[str, Any]]]
    describe: Callable[[torch.nn.Module, Mapping[str, Any]], dict[str, Any]]
    map_meaning: Callable[[Mapping[str, Any]], str]
    config_keys: tuple[str, ...]
    train_keys: tuple[str, ...] = ()
    score_meaning: Callable[[Mapping[str, Any]], str] = lambda config: MAX_SCORE
    set_map_stride: Callable[[torch.nn.Module, Mapping[str, Any], int], None] = (
        lambda model, run, map_stride: model.set_map_stride(map_stride))


def _describe_padim(model: torch.nn.Module, run: Mapping[str, Any]) -> dict[str, Any]:
    gaussians = run.get("gaussians") or {}
    return {"family": "padim", "backbone": run["config"]["backbone"], "config": dict(run["config"]),
            "gaussians": {"cells": gaussians.get("cells"), "features": gaussians.get("features")}}


def _padim_map(config: Mapping[str, Any]) -> str:
    stride = int(config.get("map_stride", 1))
    return (f"anomaly score per {stride}x{stride} input pixels (map_stride {stride}): Mahalanobis distance of the "
            f"patch features to the Gaussian of their grid cell ({config.get('grid_stride')} px cells), upsampled "
            "bilinearly and Gaussian-smoothed (raw units, not normalised); region boxes are scaled to image pixels")


def _describe_autoencoder(model: torch.nn.Module, run: Mapping[str, Any]) -> dict[str, Any]:
    return {"family": "autoencoder", "backbone": fit_autoencoder.ARCHITECTURE, "config": dict(run["config"]),
            "parameters": run.get("parameters"), "trainer": run.get("trainer")}


def _autoencoder_map(config: Mapping[str, Any]) -> str:
    stride = int(config.get("map_stride", 1))
    cells = list(config.get("inpaint_cells") or [])
    how = (f"each pixel inpainted from passes that hid it ({cells} px cells, {config.get('inpaint_sets')} sets)"
           if cells else "one plain pass")
    norm = (f", divided by the training images' mean map at each pixel plus {config.get('map_norm_floor')} x its "
            "overall mean" if config.get("map_norm") == "position" else " (raw units, not normalised)")
    return (f"anomaly score per {stride}x{stride} input pixels: per-pixel reconstruction error of the U-Net "
            f"autoencoder ({how}), {config.get('gms_weight', 0.0)} x (1 - multi-scale gradient magnitude similarity "
            f"over {config.get('gms_scales', 4)} scales) + {config.get('ssim_weight')} x (1 - SSIM) + "
            f"{config.get('l2_weight')} x squared error (channel mean, images in [-1, 1]), Gaussian-smoothed{norm}; "
            "region boxes are scaled to image pixels")


def _autoencoder_score(config: Mapping[str, Any]) -> str:
    if config.get("score") == "topk_mean":
        return (f"image anomaly score = mean of the {config.get('topk')} largest anomaly_map values (raw units); "
                "higher is more anomalous")
    return MAX_SCORE


FAMILIES: dict[str, Family] = {
    "patchcore": Family(
        name="patchcore",
        summary="nearest-neighbour distance of pretrained patch features to a coreset memory bank",
        fit=patchcore.fit,
        load=patchcore.load,
        describe=patchcore.describe,
        map_meaning=patchcore.map_meaning,
        config_keys=patchcore.CONFIG_KEYS,
        set_map_stride=patchcore.set_map_stride,
    ),
    "padim": Family(
        name="padim",
        summary="Mahalanobis distance of pretrained patch features to a Gaussian per patch position",
        fit=fit_padim.fit,
        load=lambda run_dir: load_checkpoint_model(run_dir, "padim", fit_padim.build),
        describe=_describe_padim,
        map_meaning=_padim_map,
        config_keys=fit_padim.CONFIG_KEYS,
    ),
    "autoencoder": Family(
        name="autoencoder",
        summary="U-Net autoencoder trained on good images to inpaint hidden cells; gradient/SSIM/L2 reconstruction error",
        fit=fit_autoencoder.fit,
        load=lambda run_dir: load_checkpoint_model(run_dir, "autoencoder", fit_autoencoder.build),
        describe=_describe_autoencoder,
        map_meaning=_autoencoder_map,
        config_keys=fit_autoencoder.CONFIG_KEYS,
        train_keys=fit_autoencoder.TRAIN_KEYS,
        score_meaning=_autoencoder_score,
    ),
}
DEFAULT_FAMILY = "patchcore"


def get_family(name: str) -> Family:
    """The registry entry for ``name``; ``ValueError`` listing the families otherwise."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; supported: {', '.join(FAMILIES)}") from None


def train(name: str, request: TrainRequest) -> tuple[Path, Resources]:
    """Fit ``name`` for ``request``; record the family and the cost of the fit in ``run.yaml``."""
    family = get_family(name)
    with measure() as cost:
        out = family.fit(request)
    record_in_run(out, {"family": family.name, "resources": cost.to_dict(), "preset": request.preset})
    return out, cost


def family_of(run_dir: str | Path) -> Family:
    """The family a run directory was trained as (runs written before the registry are PatchCore)."""
    run = read_run_yaml(Path(run_dir).expanduser().resolve())
    return get_family(str(run.get("family", DEFAULT_FAMILY)))


def load_run(run_dir: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The fitted model (CPU, eval mode) and ``run.yaml`` of ``run_dir``, whatever its family."""
    path = Path(run_dir).expanduser().resolve()
    if not path.is_dir():
        raise RunError(f"{path}: run directory does not exist")
    try:
        family = family_of(path)
    except ValueError as exc:
        raise RunError(f"{path}: {exc}") from exc
    return family.load(path)
