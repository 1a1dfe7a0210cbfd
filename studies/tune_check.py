"""``python -m studies.tune_check``: does ``edge-train --tune``'s synthetic ranking predict the real one?

``--tune`` ranks its candidates by held-out good images and synthetic defects because a user rarely
has labelled defects. This runs the same tuning on a data set that does have them, and scores every
fitted candidate on the labelled test set as well (through :mod:`studies.scoring`, as ``edge-eval``
would): one row per candidate with its synthetic and real image/pixel AUROC (and latency when
measured), then the Spearman rank correlation of the synthetic ranking key with the same key on
the real defects, and what each ranking would have chosen.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click
import numpy as np

from studies.scoring import load_test_set, score_model
from training.data import list_train_images, split_train_validation
from training.inputs import InputRule
from training.patchcore import PatchCore, PatchCoreConfig
from training.train import input_spec_for
from training.tune import Candidate, tune


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman rank correlation (ranks by argsort; no ties expected among AUROC means)."""
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def run_check(data_dir: Path, measure: bool, max_latency_ms: float | None, seed: int,
              every: int = 1) -> dict[str, Any]:
    paths = split_train_validation(list_train_images(data_dir), 0.1, seed).train
    test = load_test_set(data_dir, every)
    real: dict[str, dict[str, Any]] = {}

    def on_fitted(candidate: Candidate, model: PatchCore) -> None:
        real[candidate.name] = score_model(model, candidate.spec, test)

    config = PatchCoreConfig().resolved()
    chosen, record = tune(paths, paths[0].parent, config, input_spec_for(config), InputRule(), max_latency_ms, seed,
                          measure, on_fitted=on_fitted, progress=True)
    rows = record["candidates"]
    for row in rows:
        scores = real[row["name"]]
        row["real"] = {"image_auroc": scores["image_auroc"], "pixel_auroc": scores["pixel_auroc"],
                       "key": (scores["image_auroc"] + scores["pixel_auroc"]) / 2}
    synthetic_key = [r["synthetic"]["key"] for r in rows]
    real_key = [r["real"]["key"] for r in rows]
    return {"data": str(data_dir), "rows": rows, "chosen_by_synthetic": chosen.name,
            "best_real": rows[int(np.argmax(real_key))]["name"], "spearman": spearman(synthetic_key, real_key)}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, path_type=Path),
              help="Dataset folder in MVTec layout with a labelled test set.")
@click.option("--latency/--no-latency", default=True, show_default=True,
              help="Export and benchmark every candidate, as --tune does.")
@click.option("--max-latency-ms", type=float, default=None, help="Latency budget, as for edge-train --tune.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the splits and synthetic defects.")
@click.option("--every", default=1, show_default=True, type=click.IntRange(min=1),
              help="Score every N-th test image of each type on the real side (large test sets).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Also write the result as JSON.")
def main(data_dir: Path, latency: bool, max_latency_ms: float | None, seed: int, every: int,
         json_path: Path | None) -> None:
    """Tune on DATA as --tune does, score each candidate on the real defects, compare the rankings."""
    logging.basicConfig(level=logging.WARNING)
    result = run_check(data_dir, latency, max_latency_ms, seed, every)
    click.echo("| candidate | settings | bank | synthetic image | synthetic pixel | real image | real pixel "
               "| e2e p50 ms |")
    click.echo("|---|---|---|---|---|---|---|---|")
    for row in result["rows"]:
        s, r = row["synthetic"], row["real"]
        settings = ", ".join(f"{k}={v}" for k, v in row["settings"].items())
        click.echo(f"| {row['name']} | {settings} | {row['bank_rows']} | {s['image_auroc']:.4f} | "
                   f"{s['pixel_auroc']:.4f} | {r['image_auroc']:.4f} | {r['pixel_auroc']:.4f} | "
                   f"{row.get('latency_p50_ms', '-')} |")
    click.echo(f"synthetic ranking chose {result['chosen_by_synthetic']!r}; the best on the real defects is "
               f"{result['best_real']!r}; Spearman rank correlation of the two keys: {result['spearman']:.2f}")
    if json_path:
        json_path.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
