"""``edge-export``: write a deployable bundle from a training run.

torch is imported only when the command runs: ``--help`` answers at once, and on an edge-only
install (no ``train`` extra) the command names the extra to install instead of a traceback.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from edge.extras import exit_if_missing
from edge.model.bundle import BundleError, load_bundle
from edge.model.formats import supported_pairs
from export.defaults import PARITY_IMAGES, PARITY_TOLERANCE
from export.guard import DEFAULT_AUROC_DROP_POINTS, DEFAULT_MAX_SCORE_CHANGE
from export.quantize import DEFAULT_CALIB_COUNT

HELP = """Export the run in RUN_DIR (made by edge-train, any --model family) to a bundle.

    The bundle holds one graph from the preprocessed image to the anomaly map and image score
    (PatchCore's memory-bank search, PaDiM's Mahalanobis distances, the autoencoder's
    reconstruction error: all inside the graph), plus bundle.yaml (input spec, outputs,
    normalisation, training record, tool versions, sha256 of each file). Export runs the torch
    model and the graph on the same held-out images and refuses to write the bundle if they
    disagree beyond --tolerance.
    FP16 and INT8 graphs are derived from that checked FP32 graph and compared with it through the
    edge runtime: with --val DIR on labelled defects (image AUROC drop, at most --max-auroc-drop
    points), else on the run's held-out good images (median relative score change, at most
    --max-score-change; rank correlations recorded); export refuses a failing graph unless --force.
    The bundle has no thresholds yet: run edge-calibrate on it next.

    \b
    Supported format/precision pairs: """ + ", ".join(supported_pairs())


@click.command(help=HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Bundle directory to create.")
@click.option("--format", "fmt", default="onnx", show_default=True, help="Graph format.")
@click.option("--precision", default="fp32", show_default=True, help="Numeric precision of the graph.")
@click.option("--parity-images", default=PARITY_IMAGES, show_default=True,
              help="Held-out images on which torch and the exported graph are compared.")
@click.option("--tolerance", default=PARITY_TOLERANCE, show_default=True,
              help="Largest |score difference| torch vs graph, relative to max(1, |score|); export fails beyond it.")
@click.option("--calib", "calib_dir", type=click.Path(path_type=Path),
              help="INT8 calibration images (good parts, recursive). Default: the run's training images.")
@click.option("--calib-count", default=DEFAULT_CALIB_COUNT, show_default=True, type=click.IntRange(min=1),
              help="INT8 calibration images used, evenly spaced over the sorted list.")
@click.option("--val", "val_dir", type=click.Path(path_type=Path),
              help="Labelled images in MVTec layout (DIR/test/good, DIR/test/<defect>) for the AUROC guard.")
@click.option("--max-auroc-drop", default=DEFAULT_AUROC_DROP_POINTS, show_default=True,
              help="Largest image-AUROC drop vs FP32, in points, with --val.")
@click.option("--max-score-change", default=DEFAULT_MAX_SCORE_CHANGE, show_default=True,
              help="Without --val: largest median relative score change vs FP32 on held-out good images.")
@click.option("--map-stride", type=click.IntRange(min=1),
              help="Anomaly-map resolution: input pixels per map pixel (divides the input size). "
              "Default: the run's. Post-processing only, the memory bank is unchanged.")
@click.option("--force", is_flag=True, help="Write the bundle even if the accuracy guard fails (recorded).")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@click.option("-v", "--verbose", is_flag=True, help="Log each step.")
def main(run_dir: Path, out: Path, fmt: str, precision: str, parity_images: int, tolerance: float,
         calib_dir: Path | None, calib_count: int, val_dir: Path | None, max_auroc_drop: float,
         max_score_change: float, map_stride: int | None, force: bool, overwrite: bool, verbose: bool) -> None:
    """Entry point of the edge-export console script."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with exit_if_missing("edge-export", "edge-export"):
        from export.build import (
            ExportError,
            ReducedPrecisionOptions,
            build_bundle,
            guard_summary,
        )
        from training.train import RunError

        reduced = ReducedPrecisionOptions(calib_dir=calib_dir, calib_count=calib_count, val_dir=val_dir,
                                          max_auroc_drop=max_auroc_drop, max_score_change=max_score_change,
                                          force=force)
        try:
            bundle = build_bundle(run_dir, out, fmt, precision, parity_images, tolerance, overwrite, reduced,
                                  map_stride=map_stride)
        except (ExportError, BundleError, RunError, ValueError, FileNotFoundError) as exc:
            click.echo(f"edge-export: error: {exc}", err=True)
            sys.exit(2)
    record = load_bundle(bundle, require_thresholds=False).manifest.export
    assert record is not None and record.parity is not None  # build_bundle writes both
    parity = record.parity
    if record.accuracy_guard is not None:
        guard = record.accuracy_guard
        state = "FORCED past a failed" if guard.forced else "passed"
        click.echo(f"accuracy guard {state}: {guard_summary(guard)}")
    click.echo(
        f"bundle {bundle}: parity on {parity.n_images} images, max |score diff| "
        f"{parity.max_abs_score_diff:.3g} (relative {parity.max_rel_score_diff:.3g}, tolerance {tolerance:g}); "
        f"next: edge-calibrate {bundle}"
    )


if __name__ == "__main__":
    main()
