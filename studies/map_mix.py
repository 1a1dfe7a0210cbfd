"""``python -m studies.map_mix``: can a second, wider map lift broad defects without losing small ones?

magnetic_tile's "uneven" defects are bands of slightly different texture over a third of the tile;
the shipped map (nearest-neighbour distances smoothed at sigma 4) is noisy inside them, and only a
wide smoothing lifts them, at the cost of bottle's small defects (docs/accuracy.md). This study
fits the shipped defaults once and scores, on the same distances, maps a model can compute in
its graph at little cost:

- ``fine``: the distances smoothed at the model's sigma (the whole map before ``wide_sigma``);
- ``wide S``: the same distances smoothed at sigma S;
- ``max(fine, wide S)``: the pixel-wise maximum of the two after each is put on the good images'
  scale, ``(m - median) / (p99 - median)`` over the held-out validation images (good images only,
  no labels);
- ``clipped wide S`` and ``max(fine, clipped wide S)``: the same with the distances clipped at the
  good images' 99th percentile before the wide smoothing, so one strong small defect does not
  spread; at ``wide_sigma`` this is what ships (:meth:`training.patchcore.PatchCore.post_process`,
  the "shipped" row, computed by the model itself);
- ``column``: each patch feature's distance to the median feature of its column, a context map
  for parts that are uniform along the vertical axis (magnetic_tile's streaks run vertically), and
  ``max(fine, column)``, their maximum on the same scale.

Frames must be stretched (one window per frame); image score is the map's maximum. Example::

    python -m studies.map_mix --data ../shared/datasets/magnetic_tile --data ../shared/datasets/mvtec_bottle
"""

from __future__ import annotations

from pathlib import Path

import click
import cv2
import numpy as np
import torch
from tqdm import tqdm

from edge.model.imageio import read_image
from edge.model.preprocess import InputSpec, prepare
from export.heldout import GOOD, roc_auc
from studies.fitting import FitSettings, fit_in_memory
from studies.scoring import PixelHistograms, TestSet, load_test_set
from training.data import list_train_images, split_train_validation
from training.patchcore import PatchCore, gaussian_kernel1d


def column_context(features: torch.Tensor) -> torch.Tensor:
    """``(B, D, h, w)`` -> ``(B, 1, h, w)``: each feature's distance to its column's median feature."""
    median = features.median(dim=2, keepdim=True).values
    return (features - median).norm(dim=1, keepdim=True)


def raw_maps(model: PatchCore, spec: InputSpec, images: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Unsmoothed distance maps and column-context maps ``(N, 1, H/s, W/s)`` of stretched frames."""
    distances, context = [], []
    size = (spec.height, spec.width)
    map_size = model.config.map_size
    for image in tqdm(images, desc="maps", unit="img", leave=False, disable=None):
        prepared = prepare(image, spec)
        if not prepared.layout.is_identity_crop:
            raise click.UsageError("map_mix scores stretched frames only (one window per frame)")
        with torch.no_grad():
            features = model.patch_features(torch.from_numpy(prepared.tensor))
            distances.append(model.distance_map(features, size))
            context.append(torch.nn.functional.interpolate(column_context(features), size=map_size, mode="bilinear",
                                                           align_corners=False))
    return torch.cat(distances), torch.cat(context)


def smoothed(model: PatchCore, maps: torch.Tensor, sigma: float) -> np.ndarray:
    """``maps`` smoothed as the model smooths its map, at ``sigma`` input pixels."""
    with torch.no_grad():
        return model.blur(maps, gaussian_kernel1d(sigma / model.config.map_stride))[:, 0].numpy()


def on_good_scale(maps: np.ndarray, good: np.ndarray) -> np.ndarray:
    """``maps`` shifted and scaled so the good images' median is 0 and their 99th percentile 1."""
    median, high = np.percentile(good, [50, 99])
    return (maps - median) / max(float(high - median), 1e-12)


def figures(test: TestSet, maps: np.ndarray) -> dict[str, float]:
    """Image AUROC (map maximum) and pixel AUROC overall and per defect type."""
    frames = [cv2.resize(m, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
              for m, image in zip(maps, test.images)]
    labels = np.array([t != GOOD for t in test.types])
    pixels = PixelHistograms(test, frames)
    out = {"image": roc_auc(labels, maps.reshape(len(maps), -1).max(axis=1)), "pixel": pixels.auroc(range(len(maps)))}
    for defect in sorted(set(test.types) - {GOOD}):
        out[defect] = pixels.auroc([i for i, t in enumerate(test.types) if t in (defect, GOOD)])
    return out


def study(data_dir: Path, wide: list[float]) -> None:
    settings = FitSettings()
    model, spec, _ = fit_in_memory(settings, data_dir)
    validation = split_train_validation(list_train_images(data_dir), 0.1, settings.seed).validation
    test = load_test_set(data_dir)
    test_d, test_c = raw_maps(model, spec, test.images)
    good_d, good_c = raw_maps(model, spec, [read_image(p) for p in validation])
    fine, good_fine = smoothed(model, test_d, settings.sigma), smoothed(model, good_d, settings.sigma)
    with torch.no_grad():
        shipped = model.post_process(test_d)[:, 0].numpy()
    rows: dict[str, np.ndarray] = {f"fine (sigma {settings.sigma:g})": fine,
                                   f"shipped: max(fine, clipped wide {settings.wide_sigma:g})": shipped}
    cap = torch.quantile(good_d.reshape(-1), 0.99)
    for sigma in wide:
        wide_map, good_wide = smoothed(model, test_d, sigma), smoothed(model, good_d, sigma)
        rows[f"wide {sigma:g}"] = wide_map
        rows[f"max(fine, wide {sigma:g})"] = np.maximum(on_good_scale(fine, good_fine), on_good_scale(wide_map, good_wide))
        clipped = smoothed(model, torch.minimum(test_d, cap), sigma)
        good_clipped = smoothed(model, torch.minimum(good_d, cap), sigma)
        rows[f"clipped wide {sigma:g}"] = clipped
        rows[f"max(fine, clipped wide {sigma:g})"] = np.maximum(on_good_scale(fine, good_fine),
                                                                on_good_scale(clipped, good_clipped))
    column, good_column = smoothed(model, test_c, settings.sigma), smoothed(model, good_c, settings.sigma)
    rows["column"] = column
    rows["max(fine, column)"] = np.maximum(on_good_scale(fine, good_fine), on_good_scale(column, good_column))
    types = sorted(set(test.types) - {GOOD})
    click.echo(f"\n{data_dir.name} ({len(test.images)} test images, {len(validation)} validation images)\n")
    click.echo("| map | image AUROC | pixel AUROC | " + " | ".join(f"px {t}" for t in types) + " |")
    click.echo("|---|---|---|" + "---|" * len(types))
    for name, maps in rows.items():
        f = figures(test, maps)
        click.echo(f"| {name} | {f['image']:.4f} | {f['pixel']:.4f} | " + " | ".join(f"{f[t]:.3f}" for t in types) + " |")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data", "data_dirs", required=True, multiple=True, type=click.Path(exists=True, path_type=Path),
              help="Dataset folder in MVTec layout (repeatable).")
@click.option("--wide", default="24,32,48", show_default=True, help="Sigmas of the wide map, comma-separated.")
def main(data_dirs: tuple[Path, ...], wide: str) -> None:
    """Score the shipped map, wide maps, column context and their maxima on labelled test sets."""
    for data_dir in data_dirs:
        study(data_dir, [float(v) for v in wide.split(",") if v])


if __name__ == "__main__":
    main()
