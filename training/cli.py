"""``edge-train``: fit a run directory of any model family from a folder of good images.

The command line is the way an engineer on site trains a model, so user mistakes (a wrong
folder, missing weights on an offline PC, a corrupt image) are reported as one line on stderr
with exit status 2 instead of a traceback. PatchCore with its own flags is a thin layer over
:func:`training.train.fit`; ``--model`` picks another family of the registry
(:mod:`training.families.registry`), and ``--preset`` / ``--set`` fill a family's settings
(:mod:`training.presets`). torch is imported only when the command runs, so ``--help`` is
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
from training.presets import assemble, available_presets, load_preset, parse_set

log = logging.getLogger(__name__)

# training.backbones.SUPPORTED_BACKBONES, named here so --help needs no torch (a test keeps the two equal).
BACKBONE_NAMES = ("mobilenet_v2", "efficientnet_lite0", "resnet18", "wide_resnet50_2")
# training.embedding.DEFAULT_BATCH_SIZE, likewise (windows per forward pass; small batches stay in cache).
DEFAULT_BATCH_SIZE = 4
# The family registry's names and summaries (training.families.registry.FAMILIES), likewise.
FAMILY_SUMMARIES = {
    "patchcore": "nearest-neighbour distance of pretrained patch features to a coreset memory bank",
    "padim": "Mahalanobis distance of pretrained patch features to a Gaussian per patch position",
    "autoencoder": "U-Net autoencoder trained on good images to inpaint hidden cells; gradient/SSIM/L2 reconstruction error",
}
DEFAULT_FAMILY = "patchcore"
PATCHCORE_ONLY = ("resize", "tile_scale", "layers", "pool_size", "sigma", "wide_sigma", "tune", "max_latency_ms")


class UserError(click.ClickException):
    """A mistake the user can fix; shown as one line, exit status 2."""

    exit_code = 2


class OneLineErrorCommand(click.Command):
    """A click command that reports every usage error as a single line on stderr."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
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


def parse_input_size(value: str) -> tuple[int, int] | None:
    """``auto`` -> None; ``256`` -> (256, 256); ``HEIGHTxWIDTH`` -> (HEIGHT, WIDTH)."""
    if value.lower() == "auto":
        return None
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


def parse_sigma(value: str) -> float | None:
    """``auto`` -> None (chosen at training); a number of input pixels, at least 0.1."""
    if value.lower() == "auto":
        return None
    try:
        sigma = float(value)
    except ValueError:
        raise UserError(f"--sigma must be auto or a number of input pixels, got {value!r}") from None
    if sigma < 0.1:
        raise UserError(f"--sigma must be at least 0.1 input pixels, got {value}")
    return sigma


@click.command(cls=OneLineErrorCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path),
              help="Dataset folder in MVTec layout; its train/good/ images are the good parts.")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Run directory to write model.pt and run.yaml into (created if missing).")
@click.option("--model", "model", type=click.Choice(list(FAMILY_SUMMARIES)), default=None,
              help=f"Model family (default: the preset's, else {DEFAULT_FAMILY}). "
              + "; ".join(f"{name}: {summary}" for name, summary in FAMILY_SUMMARIES.items()) + ". The options "
              "from --resize to --max-latency-ms are PatchCore's (docs/models.md).")
@click.option("--preset", default=None,
              help=f"Category preset: a shipped name ({', '.join(available_presets())}) or a YAML file "
              "(model, config, train); flags and --set override it.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override one config or trainer setting of the family (repeatable), e.g. --set epochs=30 "
              "--set loss.ssim=0.5 --set skips=[true,true,false]. VALUE is read as YAML.")
@click.option("--resume", is_flag=True, help="Continue the interrupted run in OUT from its checkpoint (autoencoder).")
@click.option("--backbone", default="mobilenet_v2", show_default=True, type=click.Choice(BACKBONE_NAMES),
              help="Pretrained feature extractor; weights must already be on this machine.")
@click.option("--coreset-ratio", type=float, show_default="the model's default, PatchCoreConfig.coreset_ratio",
              help="Fraction of training patches kept in the memory bank (edge latency grows with it).")
@click.option("--map-stride", type=click.IntRange(min=1), show_default="PatchCoreConfig.map_stride",
              help="Input pixels per anomaly-map pixel (divides the input size); edge-export can change it later.")
@click.option("--input-size", default="auto", show_default=True,
              help="Graph input size: N for NxN, HEIGHTxWIDTH, or auto (from the training images' sizes: 256x256 "
              "for square frames and for frames of varying size, their aspect ratio for one non-square shape).")
@click.option("--resize", default="auto", show_default=True,
              type=click.Choice(["auto", "stretch", "letterbox", "tile"]),
              help="How frames are fitted to the input: stretch (ignore aspect), letterbox (keep aspect, pad), tile "
              "(fixed scale, overlapping windows run as one batch, for frames much larger than the input); auto: "
              "letterbox for frames of one non-square shape, stretch otherwise (docs/accuracy.md).")
@click.option("--tile-scale", type=click.FloatRange(min=0.01, max=16), default=None,
              help="tile: input pixels per frame pixel (default: the median frame's longer side to 256).")
@click.option("--layers", default="", help="Backbone layers to tap, comma-separated, shallow to deep "
              "(default: the backbone's own pair).")
@click.option("--pool-size", type=click.IntRange(min=1), show_default="PatchCoreConfig.pool_size (3)",
              help="Side of the neighbourhood each patch feature is averaged over (odd).")
@click.option("--sigma", show_default="PatchCoreConfig.sigma (4)",
              help="Gaussian smoothing of the anomaly map, in input pixels (wider finds broad defects, narrower "
              "keeps small ones); auto: the best of training.smoothing's candidates (4 to 32) on the validation "
              "images with synthetic defects, recorded in run.yaml (measured: it does not pick what the real "
              "defects favour on magnetic_tile; docs/accuracy.md).")
@click.option("--wide-sigma", type=click.FloatRange(min=0), default=None,
              show_default="PatchCoreConfig.wide_sigma (32)",
              help="Smoothing of the broad-defect map, in input pixels; the anomaly map is the larger of the fine "
              "map and this one (distances clipped at the good images' 99th percentile first, both scaled on the "
              "validation images). 0: the fine map alone, as before it existed (docs/accuracy.md).")
@click.option("--tune", is_flag=True,
              help="Choose input size, resize rule, layers, aggregation and coreset ratio among a few candidates by "
              "held-out good images and synthetic defects; each candidate is exported and benchmarked (minutes).")
@click.option("--max-latency-ms", type=click.FloatRange(min=0.1), default=None,
              help="--tune: end-to-end p50 budget per frame on this machine (edge-inspect bench).")
@click.option("--val-fraction", default=0.1, show_default=True, type=float,
              help="Fraction of good images set aside for validation (at least one), never in the bank.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for the split and the coreset.")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]),
              help="Where to compute; auto uses CUDA when available.")
@click.option("--batch-size", default=DEFAULT_BATCH_SIZE, show_default=True, type=click.IntRange(min=1),
              help="Windows per forward pass while extracting features (small batches stay in cache).")
@click.option("--max-images", default=None, type=click.IntRange(min=1),
              help="Use at most N training images (quick trial runs).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars, warnings only.")
@click.pass_context
def main(
    ctx: click.Context,
    data_dir: Path,
    out_dir: Path,
    model: str | None,
    preset: str | None,
    sets: tuple[str, ...],
    resume: bool,
    backbone: str,
    coreset_ratio: float | None,
    map_stride: int | None,
    input_size: str,
    resize: str,
    tile_scale: float | None,
    layers: str,
    pool_size: int | None,
    sigma: str | None,
    wide_sigma: float | None,
    tune: bool,
    max_latency_ms: float | None,
    val_fraction: float,
    seed: int,
    device: str,
    batch_size: int,
    max_images: int | None,
    quiet: bool,
) -> None:
    """Fit an anomaly-detection model on good images and write a run directory.

    Reads DATA/train/good and sets a seeded validation fraction aside (it calibrates the
    threshold later). PatchCore (the default) keeps a greedy coreset of pretrained patch
    features as its memory bank, PaDiM a Gaussian per patch position, the autoencoder learns
    to reconstruct good parts; each writes OUT/model.pt and OUT/run.yaml for edge-export.
    Examples:

    \b
        edge-train --data /data/bottle --out runs/bottle-001
        edge-train --model autoencoder --preset bottle --data /data/bottle --out runs/ae-001
    """
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    chosen = _preset(preset)
    name = model or (chosen.model if chosen else DEFAULT_FAMILY)
    if name != "patchcore" or chosen is not None or sets or resume:
        _train_family(ctx, name, chosen, data_dir, out_dir, sets, resume, val_fraction, seed, device,
                      batch_size, max_images, quiet)
        return
    if max_latency_ms is not None and not tune:
        raise UserError("--max-latency-ms is a budget for --tune; add --tune")
    size = parse_input_size(input_size)
    fixed_sigma = None if sigma is None else parse_sigma(sigma)
    with exit_if_missing("edge-train", "edge-train"):
        from training.backbones import BackboneWeightsError
        from training.data import DatasetError
        from training.inputs import InputRule
        from training.patchcore import PatchCoreConfig
        from training.runs import measure, record_in_run
        from training.train import fit
        from training.tune import TuneError, TuneOptions

        defaults = PatchCoreConfig()
        try:
            config = PatchCoreConfig(
                backbone=backbone, layers=tuple(v for v in layers.split(",") if v),
                input_size=size or defaults.input_size,
                coreset_ratio=defaults.coreset_ratio if coreset_ratio is None else coreset_ratio,
                map_stride=defaults.map_stride if map_stride is None else map_stride,
                pool_size=defaults.pool_size if pool_size is None else pool_size,
                sigma=defaults.sigma if fixed_sigma is None else fixed_sigma,
                wide_sigma=defaults.wide_sigma if wide_sigma is None else wide_sigma)
            rule = InputRule(size=size, resize=resize, tile_scale=tile_scale)
            with measure() as cost:
                out = fit(data_dir, out_dir, config, val_fraction=val_fraction, seed=seed, device=device,
                          batch_size=batch_size, max_images=max_images, progress=not quiet, input_rule=rule,
                          tune_options=TuneOptions(max_latency_ms) if tune else None,
                          choose_smoothing=sigma is not None and fixed_sigma is None)
            record_in_run(out, {"family": "patchcore", "resources": cost.to_dict(), "preset": None})
        except (DatasetError, BackboneWeightsError, ImageReadError, TuneError, ValueError, OSError) as exc:
            raise UserError(str(exc)) from exc
    click.echo(str(out))


def _preset(preset: str | None) -> Any:
    if not preset:
        return None
    try:
        return load_preset(preset)
    except ValueError as exc:
        raise UserError(str(exc)) from exc


def _train_family(ctx: click.Context, name: str, chosen: Any, data_dir: Path, out_dir: Path, sets: tuple[str, ...],
                  resume: bool, val_fraction: float, seed: int, device: str, batch_size: int, max_images: int | None,
                  quiet: bool) -> None:
    """A family of the registry (or PatchCore from a preset or --set), from its config fields."""
    given = {key for key, value in ctx.params.items()
             if ctx.get_parameter_source(key) is not click.core.ParameterSource.DEFAULT and value is not None}
    extra = sorted(given & set(PATCHCORE_ONLY))
    if extra:
        raise UserError(f"--{extra[0].replace('_', '-')} applies to PatchCore's own flags, not to --model {name} "
                        "with --preset/--set/--resume (use --set for a config field)")
    flags: dict[str, Any] = {key: ctx.params[key] for key in ("backbone", "coreset_ratio", "map_stride")
                             if key in given}
    if "input_size" in given and parse_input_size(ctx.params["input_size"]) is not None:
        flags["input_size"] = parse_input_size(ctx.params["input_size"])
    with exit_if_missing("edge-train", "edge-train"):
        from training.backbones import BackboneWeightsError
        from training.data import DatasetError
        from training.families.registry import get_family, train
        from training.runs import TrainRequest

        try:
            family = get_family(name)
            config, settings = assemble(name, family.config_keys, family.train_keys, chosen, flags, parse_set(sets))
            if resume and not family.train_keys:
                raise UserError(f"--resume: {name} trains in one pass and has nothing to resume")
            request = TrainRequest(data_dir=data_dir, out_dir=out_dir, config=config, train=settings,
                                   val_fraction=val_fraction, seed=seed, device=device,
                                   batch_size=batch_size if "batch_size" in given else None, max_images=max_images,
                                   progress=not quiet, resume=resume, preset=str(chosen.path) if chosen else None)
            out, cost = train(name, request)
        except (DatasetError, BackboneWeightsError, ImageReadError, ValueError, OSError) as exc:
            raise UserError(str(exc)) from exc
    log.info("%s trained in %.1f s wall, %.1f s CPU, peak RSS %.0f MB", name, cost.wall_s, cost.cpu_s,
             cost.peak_rss_mb)
    click.echo(str(out))


if __name__ == "__main__":
    main()
