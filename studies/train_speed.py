"""``python -m studies.train_speed``: how long ``edge-train`` takes, where the seconds go, how much memory.

Each run is a fresh ``edge-train`` process (start-up and imports counted, as a user sees them),
run in rounds over the data sets so that machine load hits them alike. Per run it prints wall
seconds, CPU seconds (user + system of the process), peak RSS, the split ``run.yaml`` records
(start-up, embedding with its decode / preprocess / features parts, coreset with its preselection
and final selection) and the 1-minute load average before and after, because on a shared machine
wall time alone says little. Extra ``edge-train`` options go after ``--``.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import yaml

ENTRY = "import sys; sys.argv[0] = 'edge-train'; from training.cli import main; main()"


def one_run(data: Path, out: Path, extra: list[str]) -> dict[str, Any]:
    """Train once in a child process; its wall, CPU and peak RSS, and the run's own timings."""
    load_before = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", ENTRY, "--data", str(data), "--out", str(out), "-q", *extra],
                            capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise click.ClickException(f"edge-train failed on {data}: {result.stderr.strip().splitlines()[-1:]}")
    run = yaml.safe_load((out / "run.yaml").read_text())
    return {
        "data": data.name, "wall_s": round(wall, 2),
        "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 2),
        # ru_maxrss of children is the largest child so far: runs go largest-last per round, see main.
        "peak_rss_mb": run.get("peak_rss_mb"), "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "seconds": run["seconds"], "detail": run.get("seconds_detail", {}), "bank": run["memory_bank_shape"],
        "images": run["n_train_images"], "input": run["input_spec"]["resize"],
    }


def format_row(row: dict[str, Any]) -> str:
    s, d = row["seconds"], row["detail"]
    return (f"| {row['data']} | {row['images']} | {row['wall_s']:.1f} | {row['cpu_s']:.1f} | {row['peak_rss_mb']:.0f} | "
            f"{s.get('startup', 0):.1f} | {s['embedding']:.1f} (decode {d.get('decode', 0):.1f}, features "
            f"{d.get('features', 0):.1f}) | {s['coreset']:.1f} (pre {d.get('coreset_preselect', 0):.1f}, select "
            f"{d.get('coreset_select', 0):.1f}) | {row['bank'][0]}x{row['bank'][1]} | "
            f"{row['load_1min'][0]:.1f} / {row['load_1min'][1]:.1f} |")


@click.command(context_settings={"help_option_names": ["-h", "--help"], "ignore_unknown_options": True})
@click.option("--data", "datasets", multiple=True, required=True, type=click.Path(exists=True, path_type=Path),
              help="Dataset folder (repeatable); every round trains each once, in the order given.")
@click.option("--rounds", default=2, show_default=True, type=click.IntRange(min=1), help="Rounds of runs.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Also write the rows as JSON.")
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
def main(datasets: tuple[Path, ...], rounds: int, json_path: Path | None, extra: tuple[str, ...]) -> None:
    """Time edge-train on each data set, in rounds; one row per run."""
    click.echo(f"cpu count {os.cpu_count()}; peak RSS from run.yaml (the training process's own ru_maxrss)")
    click.echo("| data | images | wall s | CPU s | peak RSS MB | start-up s | embedding s | coreset s | bank "
               "| load 1 min before / after |")
    click.echo("|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    with tempfile.TemporaryDirectory(prefix="train-speed-") as tmp:
        for index in range(rounds):
            for data in datasets:
                row = one_run(data, Path(tmp) / f"{data.name}-{index}", list(extra))
                rows.append(row)
                click.echo(format_row(row))
    if json_path:
        json_path.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
