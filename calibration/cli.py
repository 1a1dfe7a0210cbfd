"""``edge-calibrate`` and ``edge-eval``: thresholds in, figures out, both through the edge runtime."""

from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

import click

from calibration.calibrate import CalibrationError, calibrate, set_threshold
from calibration.evaluate import evaluate_bundles
from calibration.evaluate import pixel_check as pixel_check_figures
from calibration.pixelmetrics import DEFAULT_BINS
from calibration.report_plots import MissingExtra, require_matplotlib
from calibration.thresholds import DEFAULT_TARGET_FRR, STRATEGIES
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
              help="quantile: the (1 - target FRR) quantile of good scores; mean_std: mean + k*std; iqr: Q3 + k*IQR "
              "of good scores; f1: F1-optimal on good + defects (see docs/calibration.md for when to use which).")
@click.option("--target-frr", default=DEFAULT_TARGET_FRR, show_default=True,
              help="Target false-reject rate for --strategy quantile; needs at least 1/target good images.")
@click.option("--k", type=float, help="k for --strategy mean_std (default 3) or iqr (default 1.5).")
@click.option("--allow-few", is_flag=True,
              help="Calibrate even on fewer good images than the strategy needs (recorded in bundle.yaml).")
@click.option("--set-threshold", "manual", type=click.FloatRange(min=0, min_open=True), metavar="VALUE",
              help="Set the image threshold by hand instead (recorded as strategy manual, with who and when, and "
              "the false-reject rate it implies on the held-out good images).")
@click.option("--pixel", type=click.FloatRange(min=0, min_open=True), metavar="VALUE",
              help="With --set-threshold: a pixel (region) threshold other than the image threshold.")
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "openvino"]), default="auto", show_default=True,
              help="Inference engine; auto = the bundle's graph format decides.")
@click.option("--threads", type=int, help="Inference threads (default: the engine's choice).")
def calibrate_main(bundle: Path, good_dir: Path | None, defects_dir: Path | None, strategy: str, target_frr: float,
                   k: float | None, allow_few: bool, manual: float | None, pixel: float | None, backend: str,
                   threads: int | None) -> None:
    """Set the decision thresholds of BUNDLE by running it through the edge runtime.

    The thresholds, the strategy and its parameters, and statistics of the scores they came from
    (with the false-reject rate at the threshold) are written into BUNDLE/bundle.yaml atomically.
    Images that do not decode, or whose size differs wildly from the rest, are listed and left out.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if pixel is not None and manual is None:
        _fail("edge-calibrate", ValueError("--pixel goes with --set-threshold"))
    try:
        if manual is not None:
            result = set_threshold(bundle, manual, pixel, good_dir, defects_dir, threads, _backend(backend))
        else:
            result = calibrate(bundle, good_dir, defects_dir, strategy, target_frr, k, threads, _backend(backend),
                               allow_few=allow_few)
    except USER_ERRORS as exc:
        _fail("edge-calibrate", exc)
    for path, why in result["left_out"].items():
        click.echo(f"left out {path}: {why}", err=True)
    record = result["calibration"]
    stats = record["good_scores"]
    how = "set by hand" if manual is not None else f"{strategy} {result['params']}"
    pixel_text = f", pixel threshold {result['pixel']:.4f}" if result["pixel"] != result["image"] else ""
    escape = f", escape rate {record['escape_rate']:.3f} on {record['n_defects']} defects" \
        if record.get("escape_rate") is not None else ""
    click.echo(
        f"{bundle}: image threshold {result['image']:.4f} ({how}){pixel_text}: false-reject rate "
        f"{record['false_reject_rate']:.3f} on {record['n_good']} held-out good images (scores "
        f"{stats['min']:.4f}..{stats['max']:.4f}){escape}"
    )


def _backend(name: str) -> str | None:
    return None if name == "auto" else name


def _fmt(value: Any) -> str:
    return "  n/a" if isinstance(value, float) and math.isnan(value) else f"{value:.4f}"


@click.command(context_settings=CONTEXT)
@click.argument("bundles", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path),
              help="Dataset in MVTec layout: DIR/test/<type>/ and DIR/ground_truth/<type>/<stem>_mask.png.")
@click.option("--json", "json_path", type=click.Path(path_type=Path),
              help="Also write the figures (and per-image results) to this JSON file (a list with --compare).")
@click.option("--report", "report_dir", type=click.Path(path_type=Path),
              help="Write OUT/report.md (images in OUT/img/) and a self-contained OUT/report.html: summary, "
              "per-defect table, curves, score histogram and what-if table, galleries. Needs the report extra "
              "(pip install 'edge-inspect[report]').")
@click.option("--compare", is_flag=True,
              help="Evaluate two or more BUNDLES on the same images (taking turns image by image) and report "
              "them side by side: one table and the curves overlaid.")
@click.option("--gallery", "gallery_count", default=8, show_default=True, type=click.IntRange(min=0),
              help="Tiles in the escape and false-reject galleries of --report.")
@click.option("--per-type", default=3, show_default=True, type=click.IntRange(min=0),
              help="Correct detections shown per defect type in --report.")
@click.option("--pixel-check", type=click.IntRange(min=1), metavar="N",
              help="Also compute pixel AUROC and AUPRO exactly (no binning) on N evenly spaced test images at "
              "full resolution and print both beside the binned figures.")
@click.option("--bins", default=DEFAULT_BINS, show_default=True, type=click.IntRange(min=16),
              help="Score bins of the full-resolution pixel metrics.")
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "openvino"]), default="auto", show_default=True,
              help="Inference engine; auto = the bundle's graph format decides.")
@click.option("--threads", type=int, help="Inference threads (default: the engine's choice).")
def eval_main(bundles: tuple[Path, ...], data_dir: Path, json_path: Path | None, report_dir: Path | None,
              compare: bool, gallery_count: int, per_type: int, pixel_check: int | None, bins: int, backend: str,
              threads: int | None) -> None:
    """Measure BUNDLE on DIR/test through the edge runtime at its calibrated threshold.

    Prints image AUROC, pixel AUROC, AUPRO (to FPR 0.3), F1, false-reject rate, escape rate and
    escapes, per defect type and overall. NG (score above threshold) is the positive class.
    Pixel figures are at each mask's full resolution. With --compare, give two or more bundles.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if compare != (len(bundles) > 1):
        _fail("edge-eval", ValueError("give one BUNDLE, or --compare with two or more"))
    try:
        if report_dir is not None:
            require_matplotlib()  # before the minutes of inference, not after
        evaluations = evaluate_bundles(bundles, data_dir, threads, _backend(backend), bins=bins)
    except (*USER_ERRORS, MissingExtra) as exc:
        _fail("edge-eval", exc)
    checks = []
    for evaluation in evaluations:
        _print_figures(evaluation.figures)
        check = pixel_check_figures(evaluation, pixel_check, bins) if pixel_check else None
        if check:
            click.echo(f"pixel check on {check['images']} images ({check['pixels']} px): AUROC binned "
                       f"{check['auroc_binned']:.6f} ({check['binned_s']} s) exact {check['auroc_exact']:.6f} "
                       f"({check['exact_s']} s); AUPRO binned {check['aupro_binned']:.6f} "
                       f"exact {check['aupro_exact']:.6f}; peak RSS then {check['peak_rss_mb']} MB")
            evaluation.figures["pixel_check"] = check
        checks.append(check)
    if report_dir is not None:
        from calibration.report import write_comparison, write_report

        if compare:
            paths = write_comparison(evaluations, _names(bundles), report_dir)
        else:
            paths = write_report(evaluations[0], report_dir, gallery_count, per_type, checks[0])
        click.echo(f"report: {paths['markdown']} and {paths['html']}")
    if json_path:
        figures = [e.figures for e in evaluations]
        json_path.write_text(json.dumps(_json_safe(figures if compare else figures[0]), indent=2))


def _names(bundles: tuple[Path, ...]) -> list[str]:
    """Short names for the comparison: the folder names, made unique."""
    names = [b.resolve().name for b in bundles]
    return [n if names.count(n) == 1 else str(b) for n, b in zip(names, bundles, strict=True)]


def _print_figures(result: dict[str, Any]) -> None:
    header = (f"{'':16} {'img AUROC':>9} {'px AUROC':>9} {'AUPRO':>7} {'F1':>7} {'FRR':>7} {'escape':>7} "
              f"{'escapes':>7} {'n':>5}")
    click.echo(f"bundle {result['bundle_id']} ({result['backend']}) threshold {result['threshold']:.4f} "
               f"({result['strategy']})")
    click.echo(header)
    rows = [*result["per_defect_type"].items(), ("overall", result)]
    for name, m in rows:
        click.echo(f"{name:16} {_fmt(m['image_auroc']):>9} {_fmt(m['pixel_auroc']):>9} {_fmt(m['aupro']):>7} "
                   f"{_fmt(m['f1']):>7} {_fmt(m['false_reject_rate']):>7} {_fmt(m['escape_rate']):>7} "
                   f"{m['escapes']:>7} {m['n_images']:>5}")
    total = result["latency_ms"].get("total")
    if total:
        click.echo(f"latency (preprocess+inference+postprocess, ms): p50 {total['p50']:.1f}  p95 {total['p95']:.1f}")
    timing = result["timing"]
    shared = f" ({timing['bundles_in_run']} bundles in turn)" if timing["bundles_in_run"] > 1 else ""
    click.echo(f"inference {timing['inference_s']} s, pixel metrics {timing['pixel_metrics_s']} s "
               f"(CPU {timing['pixel_metrics_cpu_s']} s){shared}, "
               f"peak RSS {timing['peak_rss_mb']} MB")
    if result["unreadable"]:
        click.echo(f"unreadable: {len(result['unreadable'])} image(s) skipped: {', '.join(result['unreadable'])}")


def _json_safe(value: Any) -> Any:
    """NaN (a metric undefined for lack of one class) becomes null: JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value
