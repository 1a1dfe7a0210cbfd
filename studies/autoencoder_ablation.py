"""Which autoencoder settings win: skip connections, loss weights, anomaly-map terms, score rule.

A U-Net's skip connections can carry a defect straight from input to output, so its
reconstruction error misses it; without them the reconstruction blurs and every sharp edge of a
good part lights up. Which wins is a measurement, not an argument: this command trains one run
per ``--variant`` (a name and ``--set``-style overrides on top of a preset) and scores each on the
labelled test set for every post-processing setting (map = gradient-similarity, SSIM or L2 term, or a sum; score =
max or top-k mean), which needs no retraining because post-processing is not learned.

Scores come from the torch model on the test images prepared by ``edge``'s own preprocessing;
the exported graph matches it within the parity tolerance that export records, so the ranking
is the deployed one. Runs are kept in ``--out`` and reused when the command is repeated.

    python -m studies.autoencoder_ablation --data ../shared/datasets/mvtec_bottle --preset bottle \\
        --out studies-out/skips --variant "skips all:skips=[true,true,true]" \\
        --variant "no skips:skips=[false,false,false]"
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import cv2
import numpy as np
import torch
from tqdm import tqdm

from edge.model.imageio import read_image
from edge.model.preprocess import InputSpec, preprocess
from export.heldout import labelled_test_images, roc_auc
from training.families.autoencoder import AutoencoderDetector, position_divisor
from training.families.registry import FAMILIES, load_run, train
from training.presets import assemble, load_preset, parse_set
from training.runs import TrainRequest
from training.similarity import gaussian_kernel1d, gradient_similarity, separable_filter, ssim_map

log = logging.getLogger(__name__)

# map name -> weights of (1 - SSIM, squared error, 1 - MSGMS), as ssim_weight, l2_weight, gms_weight
MAP_TERMS = {"ssim+l2": (1.0, 1.0, 0.0), "ssim": (1.0, 0.0, 0.0), "l2": (0.0, 1.0, 0.0), "gms": (0.0, 0.0, 1.0),
             "gms+l2": (0.0, 1.0, 1.0)}
TOPK = (16, 64, 256)


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "variant"


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """``"name:key=v,key=v"`` -> (name, overrides); values are YAML (lists may hold commas)."""
    name, _, rest = text.partition(":")
    items = re.split(r",(?![^\[]*\])", rest) if rest.strip() else []
    return name.strip(), parse_set(i.strip() for i in items if i.strip())


def error_terms(detector: AutoencoderDetector, target: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The (1 - SSIM, squared error, 1 - MSGMS) maps of one network input, before smoothing."""
    reconstruction = detector.reconstruct(target)
    gms = 1.0 - gradient_similarity(target, reconstruction, detector.config.gms_scales)
    return 1.0 - ssim_term(detector, target, reconstruction), squared(target, reconstruction), gms


def score_maps(detector: AutoencoderDetector, spec: InputSpec, data: Path, train_images: list[Path],
               progress: bool = True) -> dict[str, Any]:
    """Error maps before smoothing of the test set (with labels and masks at the image size) and of
    the run's training images (what ``map_norm: position`` is fitted on)."""
    errors, labels, masks = [], [], []
    detector.eval()
    with torch.no_grad():
        good = [error_terms(detector, detector.network_input(torch.from_numpy(preprocess(read_image(p), spec))))
                for p in tqdm(train_images, desc="training images", unit="img", leave=False, disable=not progress)]
        for item in tqdm(labelled_test_images(data), desc="test images", unit="img", leave=False, disable=not progress):
            image = read_image(item.path)
            errors.append(error_terms(detector, detector.network_input(torch.from_numpy(preprocess(image, spec)))))
            labels.append(item.is_defect)
            if item.is_defect and item.mask is None:
                masks.append(None)
                continue
            mask = np.zeros(image.shape[:2], bool) if not item.is_defect else read_image(item.mask) > 127
            masks.append(mask if mask.ndim == 2 else mask.max(axis=2))
    return {"errors": errors, "good": good, "labels": np.array(labels), "masks": masks}


def ssim_term(detector: AutoencoderDetector, target: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    return ssim_map(target, reconstruction, detector.ssim_window).mean(dim=1, keepdim=True)


def squared(target: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    return ((target - reconstruction) ** 2).mean(dim=1, keepdim=True)


def pixel_auroc(smoothed: list[np.ndarray], masks: list[np.ndarray | None]) -> float:
    pixel_scores, pixel_labels = [], []
    for amap, mask in zip(smoothed, masks, strict=True):
        if mask is None:
            continue
        resized = cv2.resize(amap, (mask.shape[1], mask.shape[0]), interpolation=cv2.INTER_LINEAR)
        pixel_scores.append(resized.ravel())
        pixel_labels.append(mask.ravel())
    return roc_auc(np.concatenate(pixel_labels), np.concatenate(pixel_scores))


def figures(maps: dict[str, Any], sigmas: Iterable[float], floors: Iterable[float]) -> list[dict[str, Any]]:
    """Image and pixel AUROC for every map term, smoothing sigma, normalisation and score rule.

    ``norm`` is ``none`` or ``position/F``: the smoothed map divided by the training images' mean
    smoothed map of the same term plus ``F`` times its overall mean, as ``map_norm: position`` with
    ``map_norm_floor: F`` computes it in the graph.
    """
    rows = []
    for sigma in sigmas:
        kernel = gaussian_kernel1d(sigma)
        for term, weights in MAP_TERMS.items():
            def smooth(terms: tuple[torch.Tensor, ...]) -> torch.Tensor:
                return separable_filter(sum(w * t for w, t in zip(weights, terms, strict=True)), kernel)  # noqa: B023

            test = [smooth(terms) for terms in maps["errors"]]
            good_mean = torch.cat([smooth(terms) for terms in maps["good"]]).mean(dim=0, keepdim=True)
            norms = {"none": None, **{f"position/{f:g}": position_divisor(good_mean, f) for f in floors}}
            for norm, divisor in norms.items():
                smoothed = [(m if divisor is None else m / divisor)[0, 0].numpy() for m in test]
                pixel = pixel_auroc(smoothed, maps["masks"])
                rules = {"max": [float(m.max()) for m in smoothed]}
                for k in TOPK:
                    rules[f"top{k}_mean"] = [float(np.sort(m.ravel())[-k:].mean()) for m in smoothed]
                for rule, scores in rules.items():
                    rows.append({"map": term, "sigma": sigma, "norm": norm, "score": rule,
                                 "image_auroc": roc_auc(maps["labels"], np.array(scores)), "pixel_auroc": pixel})
    return rows


def run_variant(name: str, overrides: dict[str, Any], base: dict[str, Any], out: Path) -> dict[str, Any]:
    """Train the variant (or reuse its finished run) and measure it."""
    family = FAMILIES["autoencoder"]
    config, settings = assemble("autoencoder", family.config_keys, family.train_keys, base["preset"], {},
                                {**base["sets"], **overrides})
    run_dir = out / slug(name)
    if not (run_dir / "model.pt").is_file():
        request = TrainRequest(data_dir=base["data"], out_dir=run_dir, config=config, train=settings,
                               device=base["device"], seed=base["seed"], progress=base["progress"],
                               resume=(run_dir / "checkpoint.pt").is_file(),
                               preset=str(base["preset"].path) if base["preset"] else None)
        train("autoencoder", request)
    detector, run = load_run(run_dir)
    assert isinstance(detector, AutoencoderDetector)
    detector = detector.eval()
    detector.config = replace(detector.config, map_stride=1)
    maps = score_maps(detector, InputSpec.from_dict(run["input_spec"]), base["data"],
                      [Path(p) for p in run["train_images"]], base["progress"])
    return {"variant": name, "overrides": overrides, "run": str(run_dir), "config": run["config"],
            "trainer": {k: run["trainer"][k] for k in ("stopped", "epochs_run", "best_epoch", "best_val_loss")},
            "loss": run["trainer"]["loss"], "resources": run.get("resources"),
            "figures": figures(maps, base["sigmas"], base["floors"])}


def report(results: Iterable[dict[str, Any]]) -> str:
    lines = ["| variant | map | sigma | norm | score | image AUROC | pixel AUROC | train wall / CPU (s) | best epoch |",
             "|---|---|---|---|---|---|---|---|---|"]
    for result in results:
        cost = result.get("resources") or {}
        for row in result["figures"]:
            lines.append(f"| {result['variant']} | {row['map']} | {row['sigma']:g} | {row['norm']} | {row['score']} | "
                         f"{row['image_auroc']:.4f} | "
                         f"{row['pixel_auroc']:.4f} | {cost.get('wall_s', 0):.0f} / {cost.get('cpu_s', 0):.0f} | "
                         f"{result['trainer']['best_epoch']} of {result['trainer']['epochs_run']} |")
    return "\n".join(lines)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data", required=True, type=click.Path(exists=True, path_type=Path), help="Dataset in MVTec layout.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder for the runs and results.json.")
@click.option("--preset", default=None, help="Preset the variants start from (name or file).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Overrides common to every variant.")
@click.option("--variant", "variants", multiple=True, required=True, metavar="NAME:KEY=V,KEY=V",
              help="One run: a name and its overrides (repeat for each run).")
@click.option("--sigmas", default="2,4,8", show_default=True,
              help="Map smoothing sigmas to score (input pixels, comma-separated; post-processing, no retraining).")
@click.option("--floors", default="0.5,1,2", show_default=True,
              help="map_norm_floor values to score with map_norm: position (comma-separated).")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def main(data: Path, out: Path, preset: str | None, sets: tuple[str, ...], variants: tuple[str, ...], sigmas: str,
         floors: str, device: str, seed: int, quiet: bool) -> None:
    """Train autoencoder variants and print image/pixel AUROC per map term and score rule."""
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(asctime)s %(message)s")
    base = {"data": data.resolve(), "preset": load_preset(preset) if preset else None, "sets": parse_set(sets),
            "device": device, "seed": seed, "progress": not quiet,
            "sigmas": [float(v) for v in sigmas.split(",")], "floors": [float(v) for v in floors.split(",")]}
    out.mkdir(parents=True, exist_ok=True)
    results = [run_variant(*parse_variant(text), base, out) for text in variants]
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    click.echo(report(results))


if __name__ == "__main__":
    main()
