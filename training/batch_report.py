"""The summary table of an ``edge-train-batch`` run, in Markdown for people and JSON for tools.

One row per (category, family) job, read back from what the job left on disk: ``eval.json``
(``edge-eval`` on the deployed bundle: AUROCs, F1, false-reject and escape rates at the
calibrated threshold, p50 latency through the edge runtime), ``bundle.yaml`` (the training cost
``edge-train`` recorded: wall and CPU seconds, peak RSS) and the bundle's files (size on disk).
A failed job is a row too, with the step and the one-line error, so nothing silently drops out.
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from edge.ops.atomicfile import write_atomic

if TYPE_CHECKING:
    from training.batch import Job

COLUMNS = (
    ("category", "category", "{}"), ("family", "family", "{}"), ("status", "status", "{}"),
    ("image AUROC", "image_auroc", "{:.4f}"), ("pixel AUROC", "pixel_auroc", "{:.4f}"), ("F1", "f1", "{:.3f}"),
    ("FRR", "false_reject_rate", "{:.3f}"), ("escape", "escape_rate", "{:.3f}"),
    ("train wall (s)", "train_wall_s", "{:.0f}"), ("train CPU (s)", "train_cpu_s", "{:.0f}"),
    ("train peak RSS (MB)", "train_peak_rss_mb", "{:.0f}"), ("bundle (MB)", "bundle_mb", "{:.1f}"),
    ("p50 (ms)", "latency_p50_ms", "{:.1f}"),
)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def job_row(job: Job) -> dict[str, Any]:
    """The summary row of one job, from its folder."""
    row: dict[str, Any] = {"category": job.category, "family": job.family, "preset": job.preset,
                           "status": "ok" if not job.error else f"failed: {job.error}"}
    figures = _read_json(job.folder / "eval.json")
    for key in ("image_auroc", "pixel_auroc", "f1", "false_reject_rate", "escape_rate"):
        row[key] = figures.get(key)
    total = (figures.get("latency_ms") or {}).get("total") or {}
    row["latency_p50_ms"] = total.get("p50")
    meta = _read_yaml(job.folder / "bundle" / "bundle.yaml")
    resources = (meta.get("training") or {}).get("resources") or {}
    row["train_wall_s"] = resources.get("wall_s")
    row["train_cpu_s"] = resources.get("cpu_s")
    row["train_peak_rss_mb"] = (job.steps.get("train") or {}).get("peak_rss_mb") or resources.get("peak_rss_mb")
    files = meta.get("files") or {}
    row["bundle_mb"] = round(sum(int(f.get("bytes", 0)) for f in files.values()) / 1e6, 2) if files else None
    row["bundle"] = str(job.folder / "bundle") if meta else None
    row["steps"] = job.steps
    return row


def summary_rows(jobs: Sequence[Job]) -> list[dict[str, Any]]:
    return [job_row(job) for job in jobs]


def _cell(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def markdown(rows: Sequence[Mapping[str, Any]], wall_s: float, context: Mapping[str, Any]) -> str:
    header = "| " + " | ".join(title for title, _, _ in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    lines = [f"# edge-train-batch summary ({context.get('root')})", "", header, rule]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(key), fmt) for _, key, fmt in COLUMNS) + " |")
    ok = sum(1 for row in rows if row["status"] == "ok")
    lines += ["", f"{ok} of {len(rows)} jobs ok; batch wall time {wall_s:.0f} s with --jobs {context.get('jobs')} "
              f"on {platform.node()} ({context.get('cpus')} cores). Training wall/CPU seconds and peak RSS are "
              "edge-train's own (CPU = user + sys of all threads); p50 is edge-eval's preprocess + inference + "
              "postprocess per image.", ""]
    return "\n".join(lines)


def write_summary(out: Path, rows: Sequence[Mapping[str, Any]], wall_s: float,
                  context: Mapping[str, Any]) -> dict[str, Path]:
    """Write ``out/summary.md`` and ``out/summary.json``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    context = {**context, "cpus": context.get("cpus") or os.cpu_count()}
    md = write_atomic(out / "summary.md", markdown(rows, wall_s, context).encode())
    data = {"wall_s": round(wall_s, 1), **context, "rows": list(rows)}
    js = write_atomic(out / "summary.json", json.dumps(data, indent=2, default=str).encode())
    return {"markdown": md, "json": js}
