"""``edge-train --tune``: choose the settings from good images alone, under a latency budget.

A user has good images and rarely labelled defects, so the candidates are ranked on what can be
made from good images: a seeded part of the training split (``TUNE_FRACTION``, 4 to 40 images)
is held out, each candidate is fitted on the rest, and it scores the held-out images as they are
and with one synthetic defect of every kind drawn on each (:mod:`training.synthetic_defects`).
The ranking key is the mean of the synthetic image AUROC and pixel AUROC. Latency is what the
line will see: each candidate is exported, calibrated and measured by ``edge-inspect bench`` on
the data set's own frames, run as the documented commands in subprocesses (the training package
does not import export or the benchmark). The most accurate candidate whose end-to-end p50 is
within ``--max-latency-ms`` wins; the candidates, their figures and the choice go into
``run.yaml`` under ``tune``, and the final model is then fitted on the whole training split.

The candidates are few on purpose (each costs a fit and an export): the automatic choice of
:mod:`training.inputs`, a finer and a coarser input, the backbone's alternative layers, a wider
aggregation and a larger bank; the map's smoothing is chosen afterwards for every run, tuned or
not, on the validation split (:mod:`training.smoothing`). How well this synthetic ranking
predicted the real one on bottle and magnetic_tile is measured by ``python -m studies.tune_check``
(docs/accuracy.md).
"""

from __future__ import annotations

import json
import logging
import random
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from edge.model.imageio import read_image
from edge.model.preprocess import InputSpec
from training.auroc import roc_auc
from training.coreset import CoresetSampler
from training.embedding import memory_bank
from training.inputs import SIDE_MULTIPLE, InputRule, choose
from training.patchcore import PatchCore, PatchCoreConfig
from training.scorer import TorchScorer, fit_map_scale
from training.synthetic_defects import DEFECT_KINDS, make_defect

log = logging.getLogger(__name__)

TUNE_FRACTION = 0.15
MIN_HOLDOUT, MAX_HOLDOUT = 4, 40
BENCH_FRAMES, BENCH_WARMUP = 60, 10
# A second pair of taps per backbone: one stage deeper for the stride-16 map (larger receptive field).
ALTERNATIVE_LAYERS: dict[str, tuple[str, str]] = {
    "mobilenet_v2": ("features.6", "features.13"),
    "efficientnet_lite0": ("blocks.2", "blocks.5"),
    "resnet18": ("layer1", "layer2"),
    "wide_resnet50_2": ("layer1", "layer2"),
}


class TuneError(ValueError):
    """No candidate can be chosen (e.g. none meets the latency budget); the message says why."""


@dataclass(frozen=True)
class Candidate:
    """One setting to try: its name, model config and input spec."""

    name: str
    config: PatchCoreConfig
    spec: InputSpec

    def settings(self) -> dict[str, Any]:
        spec = self.spec
        out: dict[str, Any] = {"input_size": list(self.config.input_size), "resize": spec.resize,
                               "layers": list(self.config.layers), "pool_size": self.config.pool_size,
                               "coreset_ratio": self.config.coreset_ratio, "sigma": self.config.sigma}
        if spec.resize == "tile":
            out["tile_scale"] = spec.window_scale
        return out


def _scaled(size: tuple[int, int], factor: float) -> tuple[int, int]:
    return tuple(max(SIDE_MULTIPLE, round(s * factor / SIDE_MULTIPLE) * SIDE_MULTIPLE)  # type: ignore[return-value]
                 for s in size)


def candidates(paths: Sequence[Path], config: PatchCoreConfig, spec: InputSpec, rule: InputRule) -> list[Candidate]:
    """The candidate set for ``paths``: the automatic choice and one change of each kind from it."""
    base_config, base_spec, _ = choose(paths, config, spec, rule)
    out = [Candidate("auto", base_config, base_spec)]
    for name, factor in (("finer input", 1.25), ("coarser input", 0.75)):
        if base_spec.resize == "tile":  # same window, another scale: the texture gets finer or coarser
            scaled = base_spec.with_values(tile_scale=round(base_spec.window_scale * factor, 4))
            out.append(Candidate(name, base_config, scaled))
        else:
            size = _scaled(base_config.input_size, factor)
            out.append(Candidate(name, replace(base_config, input_size=size),
                                 base_spec.with_values(height=size[0], width=size[1])))
    alternative = ALTERNATIVE_LAYERS.get(base_config.backbone)
    if alternative and tuple(alternative) != tuple(base_config.layers):
        out.append(Candidate("deeper layers", replace(base_config, layers=alternative), base_spec))
    out.append(Candidate("wider aggregation", replace(base_config, pool_size=base_config.pool_size + 2), base_spec))
    out.append(Candidate("larger bank", replace(base_config, coreset_ratio=min(1.0, base_config.coreset_ratio * 2)),
                         base_spec))
    return out


def holdout_split(paths: Sequence[Path], seed: int) -> tuple[list[Path], list[Path]]:
    """(fit, holdout): a seeded ``TUNE_FRACTION`` of ``paths`` (4 to 40 images) held out for scoring."""
    ordered = sorted(paths)
    count = min(MAX_HOLDOUT, max(MIN_HOLDOUT, round(len(ordered) * TUNE_FRACTION)))
    if len(ordered) < count + 2:
        raise TuneError(f"--tune needs at least {count + 2} training images, got {len(ordered)}")
    shuffled = list(ordered)
    random.Random(seed + 1).shuffle(shuffled)
    return sorted(shuffled[count:]), sorted(shuffled[:count])


@dataclass
class SyntheticSet:
    """Held-out good images and the same images with one synthetic defect of each kind."""

    good: list[np.ndarray]
    defects: list[tuple[str, np.ndarray, np.ndarray]]  # (kind, image, mask)


def synthetic_set(holdout: Sequence[Path], seed: int) -> SyntheticSet:
    rng = np.random.default_rng(seed)
    good = [read_image(p) for p in holdout]
    defects = []
    for index, image in enumerate(good):
        donor = good[(index + 1) % len(good)]
        for kind in DEFECT_KINDS:
            defect, mask = make_defect(kind, image, donor, rng)
            defects.append((kind, defect, mask))
    return SyntheticSet(good, defects)


def synthetic_scores(model: PatchCore, spec: InputSpec, synthetic: SyntheticSet) -> dict[str, float]:
    """Image AUROC (good vs synthetic), pixel AUROC (over the synthetic masks and good pixels), their mean."""
    scorer = TorchScorer(model, spec)
    scores, labels, pixel_scores, pixel_labels = [], [], [], []
    for image in synthetic.good:
        score, frame_map = scorer(image)
        scores.append(score)
        labels.append(False)
        pixel_scores.append(frame_map[::2, ::2].ravel())
        pixel_labels.append(np.zeros(pixel_scores[-1].shape, bool))
    for _, image, mask in synthetic.defects:
        score, frame_map = scorer(image)
        scores.append(score)
        labels.append(True)
        pixel_scores.append(frame_map[::2, ::2].ravel())
        pixel_labels.append(mask[::2, ::2].ravel() > 127)
    image_auroc = roc_auc(np.array(labels), np.array(scores))
    pixel_auroc = roc_auc(np.concatenate(pixel_labels), np.concatenate(pixel_scores))
    return {"image_auroc": image_auroc, "pixel_auroc": pixel_auroc, "key": (image_auroc + pixel_auroc) / 2}


def fit_candidate(candidate: Candidate, paths: Sequence[Path], holdout: Sequence[Path], seed: int) -> PatchCore:
    """The candidate's model: its bank from ``paths``, its map scale from the good ``holdout`` images."""
    model = PatchCore(candidate.config).eval()
    sampler = CoresetSampler(candidate.config.coreset_ratio, seed=seed)
    bank, _ = memory_bank(model, paths, candidate.spec, sampler, progress=False)
    model.set_memory_bank(bank)
    fit_map_scale(model, candidate.spec, holdout)
    return model


def _entry(target: str, *args: str) -> list[str]:
    """A subprocess command running the console-script function ``module:function`` with ``args``."""
    module, function = target.split(":")
    code = f"import sys; sys.argv[0] = {function!r}; from {module} import {function}; {function}()"
    return [sys.executable, "-c", code, *args]


def measure_latency(models: dict[str, tuple[PatchCore, Candidate]], fit_paths: Sequence[Path],
                    holdout: Sequence[Path], frames_dir: Path, work: Path) -> dict[str, float]:
    """End-to-end p50 (ms) of each candidate, exported, calibrated and benchmarked in one bench run."""
    from training.train import save_model, write_run_yaml

    bundles = {}
    for name, (model, candidate) in models.items():
        slug = name.replace(" ", "-")
        run = work / f"run-{slug}"
        save_model(run, model, candidate.spec)
        write_run_yaml(run, {"run_format": 1, "config": candidate.config.to_dict(),
                             "input_spec": candidate.spec.to_dict(), "train_images": [str(p) for p in fit_paths],
                             "validation_images": [str(p) for p in holdout],
                             "memory_bank_shape": list(model.memory_bank.shape), "seed": 0})
        bundle = work / f"bundle-{slug}"
        for command in (_entry("export.cli:main", str(run), "--out", str(bundle), "--parity-images", "2"),
                        # the held-out images are few; these thresholds only let the bench run
                        _entry("calibration.cli:calibrate_main", str(bundle), "--allow-few")):
            _run(command)
        bundles[name] = bundle
    report = work / "bench.json"
    command = [sys.executable, "-m", "edge", "bench", "--source", str(frames_dir), "--frames", str(BENCH_FRAMES),
               "--warmup", str(BENCH_WARMUP), "--json", str(report)]
    for bundle in bundles.values():
        command += ["--bundle", str(bundle)]
    _run(command)
    runs = json.loads(report.read_text())["runs"]
    return {name: float(r["latency_ms"]["end_to_end"]["p50"]) for name, r in zip(bundles, runs)}


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise TuneError(f"tuning step failed ({' '.join(command[3:5])}): {tail[0]}")


def tune(paths: Sequence[Path], frames_dir: Path, config: PatchCoreConfig, spec: InputSpec, rule: InputRule,
         max_latency_ms: float | None = None, seed: int = 0, measure: bool = True,
         on_fitted: Callable[[Candidate, PatchCore], None] | None = None,
         progress: bool = True) -> tuple[Candidate, dict[str, Any]]:
    """Pick a candidate for ``paths``; return it and the record for ``run.yaml``."""
    from tqdm import tqdm

    fit_paths, holdout = holdout_split(paths, seed)
    synthetic = synthetic_set(holdout, seed)
    options = candidates(fit_paths, config, spec, rule)
    rows: list[dict[str, Any]] = []
    models: dict[str, tuple[PatchCore, Candidate]] = {}
    for candidate in tqdm(options, desc="tune", unit="candidate", disable=not progress):
        model = fit_candidate(candidate, fit_paths, holdout, seed)
        if on_fitted is not None:
            on_fitted(candidate, model)
        rows.append({"name": candidate.name, "settings": candidate.settings(),
                     "bank_rows": int(model.memory_bank.shape[0]),
                     "synthetic": synthetic_scores(model, candidate.spec, synthetic)})
        models[candidate.name] = (model, candidate)
    if measure:
        with tempfile.TemporaryDirectory(prefix="edge-tune-") as tmp:
            latency = measure_latency(models, fit_paths, holdout, frames_dir, Path(tmp))
        for row in rows:
            row["latency_p50_ms"] = round(latency[row["name"]], 2)
    eligible = [r for r in rows if max_latency_ms is None or r.get("latency_p50_ms", 0.0) <= max_latency_ms]
    if not eligible:
        fastest = min(rows, key=lambda r: r["latency_p50_ms"])
        raise TuneError(f"no candidate meets --max-latency-ms {max_latency_ms:g}: the fastest, "
                        f"{fastest['name']!r}, runs at {fastest['latency_p50_ms']:.1f} ms p50 end to end")
    best = max(eligible, key=lambda r: (round(r["synthetic"]["key"], 4), -r.get("latency_p50_ms", 0.0)))
    record = {"holdout_images": [str(p) for p in holdout], "synthetic_kinds": list(DEFECT_KINDS),
              "synthetic_defects": len(synthetic.defects), "max_latency_ms": max_latency_ms,
              "ranking": "mean of synthetic image and pixel AUROC, best within the latency budget",
              "candidates": rows, "chosen": best["name"]}
    for row in rows:
        log.info("tune %-18s synthetic image %.4f pixel %.4f latency %s ms", row["name"],
                 row["synthetic"]["image_auroc"], row["synthetic"]["pixel_auroc"], row.get("latency_p50_ms", "-"))
    chosen = next(c for c in options if c.name == best["name"])
    return chosen, yaml.safe_load(yaml.safe_dump(record))  # plain types only


@dataclass(frozen=True)
class TuneOptions:
    """``--tune``: the latency budget (None: none) and whether to measure latency at all."""

    max_latency_ms: float | None = None
    measure_latency: bool = True


def settle(paths: Sequence[Path], config: PatchCoreConfig, spec: InputSpec, rule: InputRule,
           options: TuneOptions | None, seed: int, progress: bool) -> tuple[PatchCoreConfig, InputSpec, dict[str, Any]]:
    """The config and spec to train with, and the ``run.yaml`` records of how they were chosen."""
    if options is None:
        config, spec, record = choose(paths, config, spec, rule)
        return config, spec, {"input_choice": record}
    frames = Path(paths[0]).parent  # the benchmark replays the data set's own frames
    chosen, record = tune(paths, frames, config, spec, rule, options.max_latency_ms, seed,
                          options.measure_latency, progress=progress)
    _, _, choice = choose(paths, config, spec, rule)
    return chosen.config, chosen.spec, {"input_choice": {**choice, "tuned": chosen.name}, "tune": record}

