"""``edge-train``: fit a PatchCore run directory from a folder of good images.

The command line is the way an engineer on site trains a model, so user mistakes (a wrong
folder, missing weights on an offline PC, a corrupt image) are reported as one line on stderr
with exit status 2 instead of a traceback. Everything else is a thin layer over
:func:`training.train.fit`. torch is imported only when the command runs, so ``--help`` is
instant, and on an edge-only install (no ``train`` extra) the command says which extra to
install instead of a torch traceback.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from edge.extras import exit_if_missing
from edge.model.imageio import ImageReadError

log = logging.getLogger(__name__)

# training.backbones.SUPPORTED_BACKBONES, named here so --help needs no torch (a test keeps the two equal).
BACKBONE_NAMES = ("mobilenet_v2", "efficientnet_lite0", "resnet18", "wide_resnet50_2")


class UserError(click.ClickException):
    """A mistake the user can fix; shown as one line, exit status 2."""

    exit_code = 2


class OneLineErrorCommand(click.Command):
    """A click command that reports every usage error as a single line on stderr."""

    def main(self, *args: Any, **kwargs: Any) -> Any:  # noqa: D102
        kwargs["standalone_mode"] = False
        try:
            result = super().main(*args, **kwargs)
        except click.ClickException as exc:
            click.echo(f"edge-train: error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("edge-train: interrupted", err=True)
            sys.exit(130)
        sys.exit(result if isinstance(result, int) else 0)


def parse_input_size(value: str) -> tuple[int, int]:
    """``256`` -> (256, 256); ``HEIGHTxWIDTH`` -> (HEIGHT, WIDTH)."""
    parts = value.lower().split("x")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        raise UserError(f"--input-size must be N or HEIGHTxWIDTH, got {value!r}") from None
    if len(sizes) == 1:
        return sizes[0], sizes[0]
    if len(sizes) == 2:
        return sizes[0], sizes[1]
    raise UserError(f"--input-size must be N or HEIGHTxWIDTH, got {value!r}")


@click.command(cls=OneLineErrorCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path),
              help="Dataset folder in MVTec layout; its train/good/ images are the good parts.")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Run directory to write model.pt and run.yaml into (created if missing).")
@click.option("--backbone", default="mobilenet_v2", show_default=True, type=click.Choice(BACKBONE_NAMES),
              help="Pretrained feature extractor; weights must already be on this machine.")
@click.option("--coreset-ratio", type=float, show_default="the model's default, PatchCoreConfig.coreset_ratio",
              help="Fraction of training patches kept in the memory bank (edge latency grows with it).")
@click.option("--map-stride", type=click.IntRange(min=1), show_default="PatchCoreConfig.map_stride",
              help="Input pixels per anomaly-map pixel (divides the input size); edge-export can change it later.")
@click.option("--input-size", default="256", show_default=True,
              help="Graph input size: N for NxN, or HEIGHTxWIDTH. Images are stretched to it.")
@click.option("--val-fraction", default=0.1, show_default=True, type=float,
              help="Fraction of good images set aside for validation (at least one), never in the bank.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for the split and the coreset.")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]),
              help="Where to compute; auto uses CUDA when available.")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1),
              help="Images per forward pass while extracting features.")
@click.option("--max-images", default=None, type=click.IntRange(min=1),
              help="Use at most N training images (quick trial runs).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars, warnings only.")
def main(
    data_dir: Path,
    out_dir: Path,
    backbone: str,
    coreset_ratio: float | None,
    map_stride: int | None,
    input_size: str,
    val_fraction: float,
    seed: int,
    device: str,
    batch_size: int,
    max_images: int | None,
    quiet: bool,
) -> None:
    """Fit PatchCore anomaly detection on good images and write a run directory.

    Reads DATA/train/good, sets a seeded validation fraction aside, extracts patch features
    with a pretrained backbone, keeps a greedy coreset of them as the memory bank and writes
    OUT/model.pt and OUT/run.yaml for export. Example:

        edge-train --data /data/bottle --out runs/bottle-001
    """
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    with exit_if_missing("edge-train", "edge-train"):
        from training.backbones import BackboneWeightsError
        from training.data import DatasetError
        from training.patchcore import PatchCoreConfig
        from training.train import fit

        defaults = PatchCoreConfig()
        try:
            config = PatchCoreConfig(
                backbone=backbone, input_size=parse_input_size(input_size),
                coreset_ratio=defaults.coreset_ratio if coreset_ratio is None else coreset_ratio,
                map_stride=defaults.map_stride if map_stride is None else map_stride)
            out = fit(data_dir, out_dir, config, val_fraction=val_fraction, seed=seed, device=device,
                      batch_size=batch_size, max_images=max_images, progress=not quiet)
        except (DatasetError, BackboneWeightsError, ImageReadError, ValueError, OSError) as exc:
            raise UserError(str(exc)) from exc
    click.echo(str(out))


if __name__ == "__main__":
    main()
