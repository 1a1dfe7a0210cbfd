"""``edge-export``: write a deployable bundle from a training run."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from edge.bundle import BundleError, read_bundle_yaml
from export.build import PARITY_IMAGES, PARITY_TOLERANCE, ExportError, build_bundle
from export.formats import supported_pairs
from training.train import RunError

HELP = """Export the PatchCore run in RUN_DIR (made by edge-train) to a bundle.

    The bundle holds one graph from the preprocessed image to the anomaly map and image score,
    memory-bank search included, plus bundle.yaml (input spec, outputs, normalisation, training
    record, tool versions, sha256 of each file). Export runs the torch model and the graph on the
    same held-out images and refuses to write the bundle if they disagree beyond --tolerance.
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
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@click.option("-v", "--verbose", is_flag=True, help="Log each step.")
def main(run_dir: Path, out: Path, fmt: str, precision: str, parity_images: int, tolerance: float,
         overwrite: bool, verbose: bool) -> None:
    """Entry point of the edge-export console script."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        bundle = build_bundle(run_dir, out, fmt, precision, parity_images, tolerance, overwrite)
    except (ExportError, BundleError, RunError, ValueError, FileNotFoundError) as exc:
        click.echo(f"edge-export: error: {exc}", err=True)
        sys.exit(2)
    parity = read_bundle_yaml(bundle)["export"]["parity"]
    click.echo(
        f"bundle {bundle}: parity on {parity['n_images']} images, max |score diff| "
        f"{parity['max_abs_score_diff']:.3g} (relative {parity['max_rel_score_diff']:.3g}, tolerance {tolerance:g}); "
        f"next: edge-calibrate {bundle}"
    )
