"""``edge-calibrate`` and ``edge-eval``: thresholds in, figures out, both through the edge runtime."""

from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

import click

from calibration.calibrate import CalibrationError, calibrate
from calibration.evaluate import evaluate
from calibration.thresholds import DEFAULT_K, DEFAULT_TARGET_FRR, STRATEGIES
from edge.model.bundle import BundleError

CONTEXT = {"help_option_names": ["-h", "--help"]}
USER_ERRORS = (BundleError, CalibrationError, ValueError, FileNotFoundError)


def _fail(tool: str, exc: Exception) -> None:
    click.echo(f"{tool}: error: {exc}", err=True)
    sys.exit(2)


@click.command(context_settings=CONTEXT)
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--good", "good_dir", type=click.Path(path_type=Path),
              help="Folder of held-out good images (recursive). Default: the validation split recorded at training. "
              "Images the model was trained on are excluded.")
@click.option("--defects", "defects_dir", type=click.Path(path_type=Path),
              help="Folder of labelled defect images (recursive); required by --strategy f1.")
@click.option("--strategy", type=click.Choice(STRATEGIES), default="quantile", show_default=True,
              help="quantile: threshold = (1 - target FRR) quantile of good scores; mean_std: mean + k*std; "
              "f1: F1-optimal on good + defects.")
@click.option("--target-frr", default=DEFAULT_TARGET_FRR, show_default=True,
              help="Target false-reject rate for --strategy quantile.")
@click.option("--k", default=DEFAULT_K, show_default=True, help="k for --strategy mean_std.")
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "openvino"]), default="auto", show_default=True,
              help="Inference engine; auto = the bundle's graph format decides.")
@click.option("--threads", type=int, help="Inference threads (default: the engine's choice).")
def calibrate_main(bundle: Path, good_dir: Path | None, defects_dir: Path | None, strategy: str,
                   target_frr: float, k: float, backend: str, threads: int | None) -> None:
    """Set the decision thresholds of BUNDLE by running it through the edge runtime.

    The thresholds, the strategy and its parameters, and statistics of the scores they came from
    are written into BUNDLE/bundle.yaml atomically.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = calibrate(bundle, good_dir, defects_dir, strategy, target_frr, k, threads, _backend(backend))
    except USER_ERRORS as exc:
        _fail("edge-calibrate", exc)
    stats = result["calibration"]["good_scores"]
    click.echo(
        f"{bundle}: image threshold {result['image']:.4f} ({strategy} {result['params']}) from "
        f"{result['calibration']['n_good']} held-out good images (scores {stats['min']:.4f}..{stats['max']:.4f})"
    )


def _backend(name: str) -> str | None:
    return None if name == "auto" else name


def _fmt(value: Any) -> str:
    return "  n/a" if isinstance(value, float) and math.isnan(value) else f"{value:.4f}"


@click.command(context_settings=CONTEXT)
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path),
              help="Dataset in MVTec layout: DIR/test/<type>/ and DIR/ground_truth/<type>/<stem>_mask.png.")
@click.option("--json", "json_path", type=click.Path(path_type=Path),
              help="Also write the figures (and per-image results) to this JSON file.")
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "openvino"]), default="auto", show_default=True,
              help="Inference engine; auto = the bundle's graph format decides.")
@click.option("--threads", type=int, help="Inference threads (default: the engine's choice).")
def eval_main(bundle: Path, data_dir: Path, json_path: Path | None, backend: str, threads: int | None) -> None:
    """Measure BUNDLE on DIR/test through the edge runtime at its calibrated threshold.

    Prints image AUROC, pixel AUROC, F1, false-reject rate and escape rate, per defect type and
    overall. NG (score above threshold) is the positive class.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = evaluate(bundle, data_dir, threads, _backend(backend))
    except USER_ERRORS as exc:
        _fail("edge-eval", exc)
    header = f"{'':16} {'img AUROC':>9} {'px AUROC':>9} {'F1':>7} {'FRR':>7} {'escape':>7} {'n':>5}"
    click.echo(f"bundle {result['bundle_id']} threshold {result['threshold']:.4f} ({result['strategy']})")
    click.echo(header)
    rows = [*result["per_defect_type"].items(), ("overall", result)]
    for name, m in rows:
        click.echo(f"{name:16} {_fmt(m['image_auroc']):>9} {_fmt(m['pixel_auroc']):>9} {_fmt(m['f1']):>7} "
                   f"{_fmt(m['false_reject_rate']):>7} {_fmt(m['escape_rate']):>7} {m['n_images']:>5}")
    total = result["latency_ms"].get("total")
    if total:
        click.echo(f"latency (preprocess+inference+postprocess, ms): p50 {total['p50']:.1f}  p95 {total['p95']:.1f}")
    if json_path:
        json_path.write_text(json.dumps(_json_safe(result), indent=2))


def _json_safe(value: Any) -> Any:
    """NaN (a metric undefined for lack of one class) becomes null: JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value
