"""The family x dataset table of deployed bundles: accuracy, training cost, size, latency, parity.

``edge-train-batch`` leaves one bundle per (category, family) with its ``eval.json``; each row of
its summary is measured in its own ``edge-eval`` process, one after the other, so on a shared
machine their latencies are not comparable. This command puts the families of one dataset side
by side in a single ``edge-eval --compare`` run (the bundles take turns image by image, so they
see the same machine state) and prints one table: image and pixel AUROC, F1, training wall and
CPU seconds and peak RSS (``edge-train``'s own, from the batch), bundle size, end-to-end p50 of
that shared run and the torch-vs-graph parity ``edge-export`` recorded in ``bundle.yaml``.

    python -m studies.family_table batch/ --json family-table.json
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import click

from edge.model.bundle import load_bundle


def compare(bundles: list[Path], data: Path, json_path: Path) -> list[dict[str, Any]]:
    """``edge-eval --compare`` of ``bundles`` on ``data`` in a child process; its per-bundle figures."""
    command = [sys.executable, "-c", "from calibration.cli import eval_main; eval_main()", *map(str, bundles),
               "--data", str(data), "--json", str(json_path)]
    if len(bundles) > 1:
        command.append("--compare")
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ})
    if result.returncode != 0:
        raise click.ClickException(f"edge-eval on {data} failed: {result.stderr.strip().splitlines()[-1:]}")
    figures = json.loads(json_path.read_text())
    return figures if isinstance(figures, list) else [figures]


def parity(bundle_dir: Path) -> dict[str, Any]:
    """The ``export.parity`` record of ``bundle.yaml`` as data (empty if the bundle has none)."""
    record = load_bundle(bundle_dir).manifest.export
    if record is None or record.parity is None:
        return {}
    return record.parity.model_dump()


def table_rows(summary: dict[str, Any], out: Path) -> list[dict[str, Any]]:
    """One row per ok job of the batch, its figures from one shared edge-eval run per dataset."""
    by_data: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in summary["rows"]:
        if row["status"] == "ok" and row.get("bundle"):
            by_data[row["category"]].append(row)
    rows = []
    for category, jobs in sorted(by_data.items()):
        training = load_bundle(jobs[0]["bundle"]).manifest.training
        if training is None or not training.dataset:
            raise click.ClickException(f"{jobs[0]['bundle']}: bundle.yaml records no training dataset")
        data = Path(training.dataset)
        figures = compare([Path(j["bundle"]) for j in jobs], data, out / f"compare-{category}.json")
        for job, fig in zip(jobs, figures, strict=True):
            total = (fig.get("latency_ms") or {}).get("total") or {}
            rows.append({"dataset": category, "family": job["family"], "image_auroc": fig["image_auroc"],
                         "pixel_auroc": fig["pixel_auroc"], "f1": fig["f1"], "train_wall_s": job["train_wall_s"],
                         "train_cpu_s": job["train_cpu_s"], "train_peak_rss_mb": job["train_peak_rss_mb"],
                         "bundle_mb": job["bundle_mb"], "p50_ms": total.get("p50"), "parity": parity(job["bundle"]),
                         "bundle": job["bundle"]})
    return rows


def _f(value: Any, fmt: str) -> str:
    """``value`` formatted, or ``-`` when it is missing."""
    return "-" if value is None else fmt.format(value)


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as one Markdown table."""
    lines = ["| family | dataset | image AUROC | pixel AUROC | F1 | train wall / CPU (s) | train peak RSS (MB) | "
             "bundle (MB) | p50 (ms) | parity: max rel. score diff (tolerance) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        p = r["parity"]
        lines.append(f"| {r['family']} | {r['dataset']} | {_f(r['image_auroc'], '{:.4f}')} | "
                     f"{_f(r['pixel_auroc'], '{:.4f}')} | {_f(r['f1'], '{:.3f}')} | {_f(r['train_wall_s'], '{:.0f}')}"
                     f" / {_f(r['train_cpu_s'], '{:.0f}')} | {_f(r['train_peak_rss_mb'], '{:.0f}')} | "
                     f"{_f(r['bundle_mb'], '{:.1f}')} | {_f(r['p50_ms'], '{:.1f}')} | "
                     f"{_f(p.get('max_rel_score_diff'), '{:.1e}')} ({_f(p.get('tolerance'), '{:g}')}) |")
    return "\n".join(lines)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("batch_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Also write the rows as JSON.")
def main(batch_dir: Path, json_path: Path | None) -> None:
    """Evaluate the bundles of an edge-train-batch output (BATCH_DIR) per dataset in one shared run; print the table.

    p50 is edge-eval's preprocess + inference + postprocess per image, the bundles of a dataset
    taking turns image by image in one process. Training figures are the batch's (edge-train's).
    """
    summary_path = batch_dir / "summary.json"
    if not summary_path.is_file():
        raise click.UsageError(f"{summary_path}: not found (run edge-train-batch with --out {batch_dir} first)")
    rows = table_rows(json.loads(summary_path.read_text()), batch_dir)
    if not rows:
        raise click.UsageError(f"{summary_path}: no finished job to tabulate")
    click.echo(markdown(rows))
    click.echo(f"\n(load average {os.getloadavg()[0]:.2f} at the end, {os.cpu_count()} cores)")
    if json_path:
        json_path.write_text(json.dumps(rows, indent=2, default=str))


if __name__ == "__main__":
    main()
