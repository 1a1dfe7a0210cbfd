"""``edge-tradeoff``: the accuracy/latency curve behind the default coreset ratio and map resolution.

The memory-bank size (coreset ratio) and the anomaly map's resolution (map stride) are the two
knobs that trade accuracy for edge latency. This sweeps them on one training run: the patch
embeddings of the run's training images are computed once, a coreset is selected per ratio (same
seed as the run), and each (ratio, stride) pair goes through the real pipeline: export with the
parity check, calibration on the run's validation split, evaluation on the labelled test set and
the edge benchmark (frames resized to the input size, as from a camera that delivers them so),
all through ``edge``; the benchmarks run after every bundle is built, interleaved in rounds. It
prints one row per pair and can write them as JSON; the figures behind ``PatchCoreConfig``'s
defaults come from here.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from calibration.calibrate import calibrate
from calibration.evaluate import evaluate
from edge.extras import exit_if_missing
from edge.model.preprocess import InputSpec
from edge.tools.bench import bench_one, load_frames, resize_frames

# export.build and training.* import torch: they are imported where used, so --help needs no torch and an
# edge-only install gets one line naming the 'train' extra.

log = logging.getLogger(__name__)

DEFAULT_RATIOS = (0.0025, 0.005, 0.01, 0.02)
DEFAULT_STRIDES = (1, 2, 4, 8)


def coreset_runs(run_dir: Path, ratios: list[float], work: Path, progress: bool = False) -> dict[float, Path]:
    """One run directory per coreset ratio under ``work``, from a single pass of embeddings."""
    from training.coreset import subsample
    from training.train import embed_images, load_run, save_model, write_run_yaml

    model, run = load_run(run_dir)
    spec = InputSpec.from_dict(run["input_spec"])
    embeddings = embed_images(model, [Path(p) for p in run["train_images"]], spec, progress=progress)
    runs = {}
    for ratio in ratios:
        bank = subsample(embeddings, ratio, seed=int(run.get("seed") or 0), progress=progress)
        model.set_memory_bank(bank)
        model.config = replace(model.config, coreset_ratio=ratio)
        out = work / f"run-r{ratio:g}"
        save_model(out, model, spec)
        write_run_yaml(out, {**run, "config": model.config.to_dict(), "memory_bank_shape": list(bank.shape),
                             "derived_from": {"run": str(Path(run_dir).resolve()),
                                              "change": f"coreset ratio {ratio:g} from the same embeddings"}})
        runs[ratio] = out
        log.info("ratio %g: bank %s x %s", ratio, *bank.shape)
    return runs


def accuracy_point(run: Path, bundle: Path, stride: int, data_dir: Path, threads: int | None,
                   backend: str | None) -> dict[str, Any]:
    """Export, calibrate and evaluate one (run, map stride) pair through ``edge``."""
    from export.build import build_bundle

    build_bundle(run, bundle, overwrite=True, map_stride=stride)
    calibrate(bundle, threads=threads, backend=backend, allow_few=True)  # a sweep point, not a line calibration
    figures = evaluate(bundle, data_dir, threads, backend)
    return {"map_stride": stride, "bundle": str(bundle), "image_auroc": round(figures["image_auroc"], 4),
            "pixel_auroc": round(figures["pixel_auroc"], 4), "f1": round(figures["f1"], 4)}


def latency_rounds(bundles: list[Path], frames: list[tuple[str, bytes]], bench_frames: int, warmup: int,
                   threads: int | None, backend: str | None, rounds: int) -> list[dict[str, Any]]:
    """Bench every bundle ``rounds`` times, round-robin, and keep each one's median round.

    On a shared machine a burst of other work lands on whichever bundle runs at that moment;
    interleaving the bundles and taking the round with the median end-to-end p50 keeps one
    burst from deciding a point of the curve.
    """
    results: list[list[dict[str, Any]]] = [[] for _ in bundles]
    per_round = max(1, bench_frames // rounds)
    for _ in range(rounds):
        for index, bundle in enumerate(bundles):
            results[index].append(bench_one(bundle, backend, frames, per_round, warmup, threads, "latency"))
    chosen = []
    for runs in results:
        runs.sort(key=lambda r: r["latency_ms"]["end_to_end"]["p50"])
        bench = runs[len(runs) // 2]
        lat = bench["latency_ms"]
        chosen.append({"map": bench["map"], "bundle_mb": bench["bundle_mb"], "backend": bench["settings"]["backend"],
                       "e2e_p50_ms": lat["end_to_end"]["p50"], "e2e_p95_ms": lat["end_to_end"]["p95"],
                       "inference_p50_ms": lat["inference"]["p50"], "postprocess_p50_ms": lat["postprocess"]["p50"],
                       "e2e_p50_ms_rounds": [r["latency_ms"]["end_to_end"]["p50"] for r in runs]})
    return chosen


def sweep(run_dir: Path, data_dir: Path, ratios: list[float], strides: list[int], work: Path,
          frame_size: int | None = None, bench_frames: int = 200, warmup: int = 20, threads: int | None = 2,
          backend: str | None = None, rounds: int = 3, echo: Any = None) -> list[dict[str, Any]]:
    """Measure every (ratio, stride) pair; return one record per pair in sweep order.

    All bundles are built and evaluated first, then benchmarked together (:func:`latency_rounds`),
    so the exports and evaluations never share the CPU with a timing.
    """
    from training.train import load_run

    _, run = load_run(run_dir)
    size = frame_size or int(run["input_spec"]["height"])
    frames = resize_frames(load_frames(Path(data_dir) / "test"), size)
    rows = []
    for ratio, run_path in coreset_runs(Path(run_dir), ratios, work).items():
        bank = load_run(run_path)[1]["memory_bank_shape"]
        for stride in strides:
            point = accuracy_point(run_path, work / f"bundle-r{ratio:g}-s{stride}", stride, Path(data_dir),
                                   threads, backend)
            rows.append({"coreset_ratio": ratio, "bank_rows": int(bank[0]), "frame_size": size, **point})
            log.info("ratio %g stride %s: image AUROC %.4f", ratio, stride, point["image_auroc"])
    timings = latency_rounds([Path(r["bundle"]) for r in rows], frames, bench_frames, warmup, threads, backend, rounds)
    for row, timing in zip(rows, timings):
        row.update(timing)
        if echo:
            echo(format_row(row))
    return rows


HEADER = (f"{'ratio':>7} {'bank':>6} {'map':>9} {'img AUROC':>9} {'px AUROC':>9} {'e2e p50':>8} {'e2e p95':>8} "
          f"{'infer p50':>9} {'post p50':>8} {'MB':>5}")


def format_row(row: dict[str, Any]) -> str:
    return (f"{row['coreset_ratio']:>7g} {row['bank_rows']:>6} {row['map'][0]:>4}x{row['map'][1]:<4} "
            f"{row['image_auroc']:>9.4f} {row['pixel_auroc']:>9.4f} {row['e2e_p50_ms']:>8.2f} {row['e2e_p95_ms']:>8.2f} "
            f"{row['inference_p50_ms']:>9.2f} {row['postprocess_p50_ms']:>8.2f} {row['bundle_mb']:>5.1f}")


def _floats(value: str) -> list[float]:
    return [float(v) for v in value.split(",") if v.strip()]


def _ints(value: str) -> list[int]:
    return [int(v) for v in value.split(",") if v.strip()]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="Labelled dataset in MVTec layout (DIR/test, DIR/ground_truth) the run was trained for.")
@click.option("--work", "work", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder for the runs and bundles of the sweep (created; kept for inspection).")
@click.option("--ratios", default=",".join(f"{r:g}" for r in DEFAULT_RATIOS), show_default=True,
              help="Comma-separated coreset ratios.")
@click.option("--map-strides", "strides", default=",".join(map(str, DEFAULT_STRIDES)), show_default=True,
              help="Comma-separated map strides (input pixels per map pixel; each must divide the input size).")
@click.option("--frame-size", type=click.IntRange(min=8),
              help="Side of the benchmark frames, made from DIR/test. Default: the run's input height.")
@click.option("--frames", "bench_frames", default=300, show_default=True, type=click.IntRange(min=1),
              help="Benchmark frames per point, split over --rounds.")
@click.option("--rounds", default=3, show_default=True, type=click.IntRange(min=1),
              help="Benchmark rounds over all points (round-robin); each point reports its median round.")
@click.option("--warmup", default=20, show_default=True, type=click.IntRange(min=0), help="Warm-up frames per point.")
@click.option("--threads", default=2, show_default=True, type=click.IntRange(min=1), help="Inference threads.")
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "openvino"]), default="auto", show_default=True,
              help="Engine for calibration, evaluation and the benchmark.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Also write the rows as JSON.")
def main(run_dir: Path, data_dir: Path, work: Path, ratios: str, strides: str, frame_size: int | None,
         bench_frames: int, rounds: int, warmup: int, threads: int, backend: str, json_path: Path | None) -> None:
    """Sweep coreset ratio x map stride on RUN_DIR: image/pixel AUROC and edge latency per pair."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        ratio_list, stride_list = _floats(ratios), _ints(strides)
    except ValueError as exc:
        raise click.UsageError(f"--ratios and --map-strides take comma-separated numbers ({exc})") from exc
    with exit_if_missing("edge-tradeoff", "edge-tradeoff"):  # before any output: one line when torch is missing
        import export.build  # noqa: F401
        import training.train  # noqa: F401
    work.mkdir(parents=True, exist_ok=True)
    click.echo(f"building and evaluating {len(ratio_list) * len(stride_list)} bundles, then benchmarking them",
               err=True)
    click.echo(HEADER)
    rows = sweep(run_dir, data_dir, ratio_list, stride_list, work, frame_size, bench_frames, warmup, threads,
                 None if backend == "auto" else backend, rounds, echo=click.echo)
    if json_path:
        json_path.write_text(json.dumps({"run": str(run_dir), "data": str(data_dir), "rows": rows}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
