"""``edge-inspect bench``: where the milliseconds of one frame go, on this machine, batch 1.

Each frame takes the daemon's own path: decode an encoded image (files are read into memory
first, so disk speed is not measured), preprocess, run the graph, postprocess (decision and
regions), build and publish the verdict on a real ZeroMQ socket. Every stage is timed per frame;
the report gives p50/p95/p99 per stage and end to end, throughput, peak RSS and the engine's
thread settings, after a warm-up that is not counted. Several bundles (or one bundle on several
backends) can be measured in one run, one after the other on the same frames, so that a speed
ratio between them comes from one process on one machine state.
"""

from __future__ import annotations

import json
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from edge.ops.latency import percentiles
from edge.tools.harness import DEMO_IMAGES

STAGES = ("decode", "preprocess", "inference", "postprocess", "publish")
DEFAULT_SOURCE = DEMO_IMAGES


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_one(bundle_dir: Path, backend: str | None, encoded: list[tuple[str, bytes]], frames: int, warmup: int,
              threads: int | None, hint: str) -> dict[str, Any]:
    """Measure one bundle on one backend over ``frames`` frames (cycling through ``encoded``)."""
    import cv2

    from edge.cameras.base import Frame
    from edge.model.bundle import load_bundle
    from edge.model.engines import RuntimeOptions
    from edge.model.imageio import to_uint8_gray_or_bgr
    from edge.model.inspector import Inspector
    from edge.wire.publisher import Publisher
    from edge.wire.verdict import build_verdict, encode_verdict

    bundle = load_bundle(bundle_dir)
    load_start = time.perf_counter()
    inspector = Inspector(bundle, backend=backend, options=RuntimeOptions(threads=threads, hint=hint))  # type: ignore[arg-type]
    load_ms = (time.perf_counter() - load_start) * 1e3
    timings: dict[str, list[float]] = {stage: [] for stage in (*STAGES, "end_to_end")}
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp, \
            Publisher(f"ipc://{tmp}/verdicts", linger_ms=0) as publisher:
        wall_start = 0.0
        for index in range(warmup + frames):
            if index == warmup:
                wall_start = time.perf_counter()
            name, data = encoded[index % len(encoded)]
            t0 = time.perf_counter()
            image = to_uint8_gray_or_bgr(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED))
            t1 = time.perf_counter()
            frame = Frame(image=image, frame_id=index + 1, source=name, decode_ms=(t1 - t0) * 1e3)
            inspection = inspector.inspect(image)
            t2 = time.perf_counter()
            message = build_verdict(station="bench", seq=index + 1, frame=frame, bundle_id=bundle.bundle_id,
                                    counters={"frames": index + 1, "errors": 0}, inspection=inspection)
            publisher.send(encode_verdict(message, None, t2))
            t3 = time.perf_counter()
            if index < warmup:
                continue
            stage_ms = {"decode": (t1 - t0) * 1e3, "publish": (t3 - t2) * 1e3, **inspection.timings_ms}
            for stage in STAGES:
                timings[stage].append(stage_ms[stage])
            timings["end_to_end"].append((t3 - t0) * 1e3)
        wall_s = time.perf_counter() - wall_start
    return {
        "bundle": str(bundle.root),
        "bundle_id": bundle.bundle_id,
        "format": bundle.manifest.graph.format.value,
        "precision": bundle.manifest.graph.precision.value,
        "input": [bundle.spec.height, bundle.spec.width],
        "map": list(bundle.map_shape),
        "bundle_mb": round(sum((bundle.root / name).stat().st_size for name in bundle.manifest.files) / 1e6, 2),
        "settings": inspector.backend.settings(),
        "model_load_ms": round(load_ms, 1),
        "frames": frames,
        "warmup": warmup,
        "latency_ms": {stage: percentiles(values) for stage, values in timings.items()},
        "throughput_fps": round(frames / wall_s, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def load_frames(source: Path) -> list[tuple[str, bytes]]:
    from edge.model.imageio import list_images

    paths = list_images(source)
    if not paths:
        raise click.UsageError(f"{source}: no images")
    return [(str(p), p.read_bytes()) for p in paths]


def resize_frames(encoded: list[tuple[str, bytes]], size: int) -> list[tuple[str, bytes]]:
    """The frames resized to ``size`` x ``size`` and re-encoded as PNG, once, before any timing.

    A camera that delivers frames at the model's input size makes decoding and resizing nearly
    free; this measures that case from a folder of larger images.
    """
    import cv2

    resized = []
    for name, data in encoded:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise click.UsageError(f"{name}: not a decodable image")
        small = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        ok, png = cv2.imencode(".png", small)
        if not ok:
            raise click.UsageError(f"{name}: PNG re-encoding failed")
        resized.append((name, png.tobytes()))
    return resized


def format_report(result: dict[str, Any]) -> str:
    lat = result["latency_ms"]
    lines = [(f"{result['bundle_id']} ({result['format']}/{result['precision']}, input {result['input'][0]}x"
              f"{result['input'][1]}, map {result['map'][0]}x{result['map'][1]}, {result['bundle_mb']:.1f} MB) on "
              f"{result['settings']['backend']}: {result['settings']}"),
             (f"  {'stage':12} {'p50':>8} {'p95':>8} {'p99':>8}  (ms, {result['frames']} frames after "
              f"{result['warmup']} warm-up)")]
    for stage in (*STAGES, "end_to_end"):
        p = lat[stage]
        lines.append(f"  {stage:12} {p['p50']:8.2f} {p['p95']:8.2f} {p['p99']:8.2f}")
    lines.append(f"  throughput {result['throughput_fps']:.1f} frames/s, peak RSS {result['peak_rss_mb']:.0f} MB "
                 f"(process so far), model load {result['model_load_ms']:.0f} ms")
    return "\n".join(lines)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--bundle", "bundles", multiple=True, required=True, type=click.Path(path_type=Path),
              help="Calibrated bundle; repeat to measure several in one run (ratios are against the first).")
@click.option("--backend", "backends", multiple=True, type=click.Choice(["auto", "onnxruntime", "openvino"]),
              help="Engine per --bundle, in order (one value applies to all); default auto = the bundle's format.")
@click.option("--source", type=click.Path(path_type=Path), default=DEFAULT_SOURCE, show_default="the demo images",
              help="Folder of images (recursive), cycled through.")
@click.option("--frame-size", type=click.IntRange(min=8),
              help="Resize the source images to NxN and re-encode them (PNG) before timing, e.g. the model's "
              "input size to measure a camera that delivers frames at that size. Default: as they are.")
@click.option("--frames", default=200, show_default=True, type=click.IntRange(min=1), help="Frames measured.")
@click.option("--warmup", default=20, show_default=True, type=click.IntRange(min=0), help="Frames run first, not counted.")
@click.option("--threads", type=click.IntRange(min=1), help="Inference threads (default: the engine's).")
@click.option("--hint", type=click.Choice(["latency", "throughput"]), default="latency", show_default=True,
              help="OpenVINO performance hint.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Also write the results as JSON.")
def bench(bundles: tuple[Path, ...], backends: tuple[str, ...], source: Path, frame_size: int | None, frames: int,
          warmup: int, threads: int | None, hint: str, json_path: Path | None) -> None:
    """Latency per stage (p50/p95/p99), end to end, throughput and peak RSS, batch 1, on this machine."""
    if len(backends) not in (0, 1, len(bundles)):
        raise click.UsageError("give one --backend, or one per --bundle")
    chosen = list(backends) * len(bundles) if len(backends) == 1 else list(backends) or ["auto"] * len(bundles)
    encoded = load_frames(source)
    if frame_size:
        encoded = resize_frames(encoded, frame_size)
    results = []
    for bundle_dir, backend in zip(bundles, chosen):
        result = bench_one(bundle_dir, None if backend == "auto" else backend, encoded, frames, warmup, threads, hint)
        results.append(result)
        click.echo(format_report(result))
    base = results[0]["latency_ms"]["end_to_end"]["p50"]
    for result in results[1:]:
        result["speedup_vs_first_p50"] = round(base / result["latency_ms"]["end_to_end"]["p50"], 2)
        click.echo(f"end-to-end p50 speed-up of {result['bundle_id']} on {result['settings']['backend']} vs "
                   f"{results[0]['bundle_id']} on {results[0]['settings']['backend']}: "
                   f"{result['speedup_vs_first_p50']:.2f}x")
    report = {"cpu_count": os.cpu_count(), "source": str(source), "images": len(encoded),
              "frame_size": frame_size, "runs": results}
    if json_path:
        json_path.write_text(json.dumps(report, indent=2))
