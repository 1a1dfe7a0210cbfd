"""One point of a sweep: the settings that define it and fitting its memory bank in memory.

The studies vary the model (:class:`training.patchcore.PatchCoreConfig`) and the input rule
(:class:`edge.model.preprocess.InputSpec`) together; :class:`FitSettings` is both in one flat,
printable record, and :func:`fit_in_memory` is ``edge-train`` without the run directory (same
split, same embedding path, same coreset sampler), so a sweep point costs seconds.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edge.model.preprocess import InputSpec
from training.coreset import CoresetSampler
from training.data import list_train_images, split_train_validation
from training.embedding import memory_bank
from training.patchcore import PatchCore, PatchCoreConfig
from training.scorer import fit_map_scale
from training.train import input_spec_for


@dataclass(frozen=True)
class FitSettings:
    """Model and input settings of one sweep point (empty ``layers``: the backbone's default)."""

    backbone: str = "mobilenet_v2"
    layers: tuple[str, ...] = ()
    input_size: tuple[int, int] = (256, 256)
    resize: str = "stretch"
    pad: str = "replicate"
    tile_scale: float = 1.0
    tile_overlap: int = 32
    intensity: str = "fixed"
    pool_size: int = 3
    context: str = "none"
    sigma: float = 4.0
    coreset_ratio: float = 0.01
    map_stride: int = 4
    wide_sigma: float = 32.0
    seed: int = 0

    @classmethod
    def parse(cls, **values: Any) -> FitSettings:
        """Settings from command-line strings (``input_size`` N or HxW, ``layers`` comma-separated)."""
        if isinstance(values.get("input_size"), str):
            parts = [int(v) for v in values["input_size"].lower().split("x")]
            values["input_size"] = (parts[0], parts[-1])
        if isinstance(values.get("layers"), str):
            values["layers"] = tuple(v for v in values["layers"].split(",") if v)
        return cls(**values)

    def config(self) -> PatchCoreConfig:
        return PatchCoreConfig(backbone=self.backbone, layers=self.layers, input_size=self.input_size,
                               coreset_ratio=self.coreset_ratio, pool_size=self.pool_size, sigma=self.sigma, context=self.context,
                               map_stride=self.map_stride, wide_sigma=self.wide_sigma).resolved()

    def label(self, base: FitSettings | None = None) -> str:
        """The fields that differ from ``base`` (all when None), as ``name=value`` pairs."""
        mine, theirs = asdict(self), asdict(base) if base else {}
        changed = {k: v for k, v in mine.items() if theirs.get(k) != v}
        return ", ".join(f"{k}={_fmt(v)}" for k, v in changed.items()) or "baseline"


def _fmt(value: Any) -> str:
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}x{value[1]}"
    if isinstance(value, tuple):
        return "+".join(str(v) for v in value)
    return str(value)


def spec_for(config: PatchCoreConfig, settings: FitSettings) -> InputSpec:
    """The input spec of a sweep point: the backbone's normalisation and the settings' resize rule."""
    return input_spec_for(config).with_values(resize=settings.resize, pad=settings.pad, tile_scale=settings.tile_scale,
                                              tile_overlap=settings.tile_overlap,
                                              intensity=None if settings.intensity == "fixed" else settings.intensity)


def fit_in_memory(settings: FitSettings, data_dir: Path,
                  train_paths: list[Path] | None = None) -> tuple[PatchCore, InputSpec, dict[str, Any]]:
    """Fit the model of ``settings`` on ``data_dir``'s training split (or ``train_paths``), its map
    scale on the validation split, as ``edge-train`` does."""
    started = time.perf_counter()
    config = settings.config()
    spec = spec_for(config, settings)
    split = split_train_validation(list_train_images(data_dir), 0.1, settings.seed)
    paths = train_paths or split.train
    model = PatchCore(config).eval()
    sampler = CoresetSampler(config.coreset_ratio, seed=settings.seed)
    bank, seconds = memory_bank(model, paths, spec, sampler, progress=False)
    model.set_memory_bank(bank)
    fit_map_scale(model, spec, split.validation)
    seconds["total"] = time.perf_counter() - started
    seconds["bank_rows"] = int(bank.shape[0])
    return model, spec, seconds
