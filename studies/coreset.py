"""``python -m studies.coreset``: how fast each coreset selector is and how well its bank covers the data.

The greedy k-center selection was most of the training time (bottle 9.5 s of 21 s, magnetic_tile
182 s of 214 s), so its replacements are measured against it on the same embeddings: wall and CPU
seconds of the selection alone, the bank's coverage of every training patch in the full feature
space (max = the k-center objective, mean and p99 of the nearest-bank-row distance), and the image
and pixel AUROC on the labelled test set, scored through :mod:`studies.scoring`. Selectors:
``plain`` (one greedy pass over all patches on their raw dimensions, as before), ``plain-dN`` (the
same on an N-dimensional projection), ``two-stage`` (per-image preselection then greedy, as
:class:`training.coreset.CoresetSampler` does in training; ``oversample`` and strip size varied) and
``random`` (a uniform sample of the same size, the floor). Prints one row per selector.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import click
import torch

from studies.fitting import FitSettings, spec_for
from studies.scoring import load_test_set, score_model
from training.coreset import (
    CoresetSampler,
    coreset_size,
    coverage,
    greedy_coreset_indices,
)
from training.data import list_train_images, split_train_validation
from training.embedding import iter_embeddings
from training.patchcore import PatchCore

log = logging.getLogger(__name__)


def selectors(ratio: float) -> dict[str, dict[str, Any]]:
    """Name -> how to select (``plain`` keys: projection dims; ``two-stage`` keys: sampler arguments)."""
    return {
        "plain (raw dims, before)": {"plain": 10_000},
        "plain-d128": {"plain": 128},
        "plain-d32": {"plain": 32},
        "plain-d16": {"plain": 16},
        "two-stage d32 os10": {"two_stage": {"oversample": 10.0}},
        "two-stage d32 os5": {"two_stage": {"oversample": 5.0}},
        "two-stage d32 os20": {"two_stage": {"oversample": 20.0}},
        "two-stage d32 os10 strips256": {"two_stage": {"oversample": 10.0, "chunk_rows": 256}},
        "two-stage d16 os10": {"two_stage": {"oversample": 10.0, "projection_dim": 16}},
        "random": {"random": True},
    }


def select(how: dict[str, Any], chunks: list[torch.Tensor], ratio: float, seed: int) -> torch.Tensor:
    """The bank chosen by selector ``how`` from the per-batch embeddings ``chunks``."""
    features = torch.cat([c.reshape(-1, c.shape[-1]) for c in chunks])
    count = coreset_size(int(features.shape[0]), ratio)
    if "plain" in how:
        return features[greedy_coreset_indices(features, count, seed=seed, projection_dim=how["plain"], progress=False)]
    if "random" in how:
        generator = torch.Generator().manual_seed(seed)
        return features[torch.randperm(int(features.shape[0]), generator=generator)[:count]]
    sampler = CoresetSampler(ratio, seed=seed, **how["two_stage"])
    for chunk in chunks:
        sampler.add(chunk)
    return sampler.finish(progress=False)


def run_study(data_dir: Path, settings: FitSettings, only: list[str] | None, every: int) -> list[dict[str, Any]]:
    config = settings.config()
    spec = spec_for(config, settings)
    paths = split_train_validation(list_train_images(data_dir), 0.1, settings.seed).train
    model = PatchCore(config).eval()
    chunks = list(iter_embeddings(model, paths, spec, progress=True))
    features = torch.cat([c.reshape(-1, c.shape[-1]) for c in chunks])
    test = load_test_set(data_dir, every=every)
    rows = []
    for name, how in selectors(config.coreset_ratio).items():
        if only and not any(o in name for o in only):
            continue
        wall, cpu = time.perf_counter(), time.process_time()
        bank = select(how, chunks, config.coreset_ratio, settings.seed)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        cover = coverage(features, bank)
        model.set_memory_bank(bank)
        scores = score_model(model, spec, test)
        row = {"selector": name, "bank": list(bank.shape), "patches": int(features.shape[0]), "seconds": wall,
               "cpu_seconds": cpu, "coverage": cover, "image_auroc": scores["image_auroc"],
               "pixel_auroc": scores["pixel_auroc"]}
        rows.append(row)
        click.echo(format_row(row))
    return rows


def format_row(row: dict[str, Any]) -> str:
    cover = row["coverage"]
    return (f"| {row['selector']} | {row['bank'][0]} of {row['patches']} | {row['seconds']:.2f} | "
            f"{row['cpu_seconds']:.2f} | {cover['max']:.3f} | {cover['p99']:.3f} | {cover['mean']:.3f} | "
            f"{row['image_auroc']:.4f} | {row['pixel_auroc']:.4f} |")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, path_type=Path),
              help="Dataset folder in MVTec layout (train/good, test/<type>, ground_truth/<type>).")
@click.option("--input-size", default="256", show_default=True, help="Graph input: N or HEIGHTxWIDTH.")
@click.option("--resize", default="stretch", show_default=True, type=click.Choice(["stretch", "letterbox", "tile"]),
              help="Resize rule of the input.")
@click.option("--ratio", default=0.01, show_default=True, type=float, help="Coreset ratio.")
@click.option("--only", multiple=True, help="Run only selectors whose name contains this (repeatable).")
@click.option("--every", default=1, show_default=True, type=click.IntRange(min=1),
              help="Score every N-th test image of each type (1: all, as edge-eval).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Also write the rows as JSON.")
def main(data_dir: Path, input_size: str, resize: str, ratio: float, only: tuple[str, ...], every: int,
         json_path: Path | None) -> None:
    """Coreset selectors compared on one data set: selection seconds, bank coverage, AUROC."""
    logging.basicConfig(level=logging.WARNING)
    settings = FitSettings.parse(input_size=input_size, resize=resize, coreset_ratio=ratio)
    click.echo("| selector | bank rows | seconds | CPU s | coverage max | p99 | mean | image AUROC | pixel AUROC |")
    click.echo("|---|---|---|---|---|---|---|---|---|")
    rows = run_study(data_dir, settings, list(only) or None, every)
    if json_path:
        json_path.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
