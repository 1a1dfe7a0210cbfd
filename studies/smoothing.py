"""``python -m studies.smoothing``: does the synthetic choice of the map's smoothing pick what real defects would?

``edge-train`` chooses the map's Gaussian sigma on its validation split with synthetic defects
(:mod:`training.smoothing`). This trains as ``edge-train`` does with the defaults (input chosen
from the images, the same split and bank), records that choice, then scores the data set's
labelled test set at every candidate sigma (features and distances once, as the choice does): one
row per sigma with its synthetic and real image/pixel AUROC, and which sigma each would choose.
Example::

    python -m studies.smoothing --data ../shared/datasets/magnetic_tile
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click
import numpy as np
from tqdm import tqdm

from export.heldout import GOOD, roc_auc
from studies.scoring import PixelHistograms, load_test_set
from training.coreset import CoresetSampler
from training.data import list_train_images, split_train_validation
from training.embedding import memory_bank
from training.inputs import InputRule, choose
from training.patchcore import PatchCore, PatchCoreConfig
from training.scorer import TorchScorer
from training.smoothing import choose_sigma
from training.train import input_spec_for


def run_check(data_dir: Path, seed: int) -> dict[str, Any]:
    """The synthetic choice and the real figures of every candidate sigma on ``data_dir``."""
    split = split_train_validation(list_train_images(data_dir), 0.1, seed)
    base = PatchCoreConfig().resolved()
    config, spec, _ = choose(split.train, base, input_spec_for(base), InputRule())
    model = PatchCore(config).eval()
    started = time.perf_counter()
    bank, _ = memory_bank(model, split.train, spec, CoresetSampler(config.coreset_ratio, seed=seed), progress=True)
    model.set_memory_bank(bank)
    fit_seconds = time.perf_counter() - started
    chosen, record = choose_sigma(model, spec, split.validation, seed)
    test = load_test_set(data_dir)
    scorer = TorchScorer(model, spec)
    distances = [scorer.distances(image) for image in tqdm(test.images, desc="test", unit="img")]
    labels = np.array([t != GOOD for t in test.types])
    rows = []
    for row in record["candidates"]:
        model.set_sigma(row["sigma"])
        finished = [scorer.finish(*d) for d in distances]
        pixels = PixelHistograms(test, [m for _, m in finished])
        image_auroc = roc_auc(labels, np.array([s for s, _ in finished]))
        pixel_auroc = pixels.auroc(range(len(finished)))
        per_type = {t: pixels.auroc([i for i, u in enumerate(test.types) if u in (t, GOOD)])
                    for t in sorted(set(test.types) - {GOOD})}
        rows.append({**row, "real": {"image_auroc": image_auroc, "pixel_auroc": pixel_auroc,
                                     "key": (image_auroc + pixel_auroc) / 2, "pixel_per_type": per_type}})
    best_real = max(rows, key=lambda r: (round(r["real"]["key"], 4), -r["sigma"]))["sigma"]
    return {"data": str(data_dir), "input": {"size": list(config.input_size), "resize": spec.resize},
            "fit_seconds": round(fit_seconds, 1), "choice_seconds": record["seconds"],
            "validation_images": record["images"], "rows": rows, "chosen_by_synthetic": chosen,
            "best_real": best_real}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, path_type=Path),
              help="Dataset folder in MVTec layout with a labelled test set.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the split and synthetic defects.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Also write the result as JSON.")
def main(data_dir: Path, seed: int, json_path: Path | None) -> None:
    """Choose the smoothing as edge-train does on DATA, then score every candidate on the real defects."""
    result = run_check(data_dir, seed)
    types = sorted(result["rows"][0]["real"]["pixel_per_type"])
    click.echo(f"input {result['input']['size'][0]}x{result['input']['size'][1]} {result['input']['resize']}; "
               f"bank fitted in {result['fit_seconds']} s, choice on {result['validation_images']} validation "
               f"images in {result['choice_seconds']} s")
    click.echo("| sigma | synthetic image | synthetic pixel | real image | real pixel | "
               + " | ".join(f"px {t}" for t in types) + " |")
    click.echo("|---|---|---|---|---|" + "---|" * len(types))
    for row in result["rows"]:
        real = row["real"]
        click.echo(f"| {row['sigma']:g} | {row['image_auroc']:.4f} | {row['pixel_auroc']:.4f} | "
                   f"{real['image_auroc']:.4f} | {real['pixel_auroc']:.4f} | "
                   + " | ".join(f"{real['pixel_per_type'][t]:.3f}" for t in types) + " |")
    click.echo(f"synthetic choice: sigma {result['chosen_by_synthetic']:g}; best on the real defects: "
               f"sigma {result['best_real']:g}")
    if json_path:
        json_path.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
