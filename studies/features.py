"""``python -m studies.features``: what moves image and pixel AUROC, one setting at a time.

Starting from ``--base`` settings, each ``--vary NAME=V1,V2,...`` changes one field of
:class:`studies.fitting.FitSettings` (input size, resize rule, layers, aggregation, coreset ratio,
backbone, sigma, ...) while the others stay at the base; ``--grid`` crosses the varied fields
instead. Every point is fitted in memory on the data set's training split and scored on its whole
labelled test set through :mod:`studies.scoring` (the edge's geometry, the torch model), and one
table row is printed per point: the settings that differ from the base, bank size, fitting
seconds, image and pixel AUROC overall and pixel AUROC per defect type, and the torch scoring
time per image (a relative cost; the edge latency of the chosen points comes from
``edge-inspect bench``). Example, the magnetic_tile resize rules::

    python -m studies.features --data ../shared/datasets/magnetic_tile \\
        --vary resize=stretch,letterbox,tile --base tile_scale=0.75
"""

from __future__ import annotations

import itertools
import json
import logging
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import click

from studies.fitting import FitSettings, fit_in_memory
from studies.scoring import TestSet, load_test_set, score_model

log = logging.getLogger(__name__)


def parse_assignments(items: tuple[str, ...]) -> dict[str, list[str]]:
    """``("a=1,2", "b=x")`` -> ``{"a": ["1", "2"], "b": ["x"]}``; names must be FitSettings fields."""
    known = {f.name for f in fields(FitSettings)}
    out: dict[str, list[str]] = {}
    for item in items:
        name, _, values = item.partition("=")
        if name not in known or not values:
            raise click.UsageError(f"{item!r}: expected NAME=V1,V2 with NAME one of {', '.join(sorted(known))}")
        out[name] = values.split(",") if name != "layers" else values.split(";")
    return out


def _typed(name: str, value: str) -> Any:
    """A command-line value as the type of FitSettings field ``name``."""
    if name == "input_size":
        parts = [int(v) for v in value.lower().split("x")]
        return (parts[0], parts[-1])
    if name == "layers":
        return tuple(v for v in value.replace("+", ",").split(",") if v)
    default = getattr(FitSettings(), name)
    return type(default)(value)


def points(base: FitSettings, vary: dict[str, list[str]], grid: bool) -> list[FitSettings]:
    """The base first, then one point per varied value (or per combination with ``grid``)."""
    out = [base]
    if grid and vary:
        names = list(vary)
        for combo in itertools.product(*(vary[n] for n in names)):
            out.append(replace(base, **{n: _typed(n, v) for n, v in zip(names, combo)}))
    else:
        for name, values in vary.items():
            out.extend(replace(base, **{name: _typed(name, v)}) for v in values)
    unique: list[FitSettings] = []
    for point in out:
        if point not in unique:
            unique.append(point)
    return unique


def run_point(settings: FitSettings, data_dir: Path, test: TestSet) -> dict[str, Any]:
    model, spec, seconds = fit_in_memory(settings, data_dir)
    scores = score_model(model, spec, test)
    return {"settings": settings, "bank_rows": seconds["bank_rows"], "fit_seconds": seconds["total"],
            "image_auroc": scores["image_auroc"], "pixel_auroc": scores["pixel_auroc"],
            "per_type": scores["per_type"], "ms_per_image": scores["ms_per_image"]}


def header(types: list[str]) -> str:
    cols = ["settings (vs base)", "bank", "fit s", "image AUROC", "pixel AUROC", *[f"px {t}" for t in types],
            "torch ms/img"]
    return "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols)


def format_row(row: dict[str, Any], base: FitSettings, types: list[str]) -> str:
    per_type = [f"{row['per_type'][t]['pixel_auroc']:.3f}" if t in row["per_type"] else "-" for t in types]
    cells = [row["settings"].label(base) if row["settings"] != base else "base: " + base.label(FitSettings()),
             str(row["bank_rows"]), f"{row['fit_seconds']:.1f}", f"{row['image_auroc']:.4f}",
             f"{row['pixel_auroc']:.4f}", *per_type, f"{row['ms_per_image']:.1f}"]
    return "| " + " | ".join(cells) + " |"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, path_type=Path),
              help="Dataset folder in MVTec layout (train/good, test/<type>, ground_truth/<type>).")
@click.option("--base", "base_items", multiple=True, help="NAME=VALUE for the base point (repeatable).")
@click.option("--vary", "vary_items", multiple=True,
              help="NAME=V1,V2,... varied one at a time from the base (layers: L1+L2;L3+L4).")
@click.option("--grid", is_flag=True, help="Cross all --vary fields instead of varying one at a time.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Also write the rows as JSON.")
def main(data_dir: Path, base_items: tuple[str, ...], vary_items: tuple[str, ...], grid: bool,
         json_path: Path | None) -> None:
    """Sweep model and input settings on one data set; one row of AUROCs per point."""
    logging.basicConfig(level=logging.WARNING)
    base = replace(FitSettings(), **{k: _typed(k, v[0]) for k, v in parse_assignments(base_items).items()})
    todo = points(base, parse_assignments(vary_items), grid)
    test = load_test_set(data_dir)
    types = sorted(set(test.types) - {"good"})
    click.echo(header(types))
    rows = []
    for settings in todo:
        row = run_point(settings, data_dir, test)
        rows.append(row)
        click.echo(format_row(row, base, types))
    if json_path:
        json_path.write_text(json.dumps([{**r, "settings": r["settings"].label()} for r in rows], indent=2))


if __name__ == "__main__":
    main()
