"""``edge-inspect camera-bench``: camera figures measured on a real daemon, so anyone can re-make them.

Each command starts the inspection daemon as a subprocess on the demo bundle through
:mod:`edge.tools.harness`, subscribes to everything it publishes over ZeroMQ like a line PLC would,
and prints one JSON object: what was configured, what arrived, and the camera counters and
reconnects the daemon reported in its ``stopped`` event. ``viky`` measures the sustained rate of
the full pipeline on the viky.cti producer shipped with ``genicam``; ``triggers`` sends N software
triggers to TLSimu.cti and counts verdicts; ``device-loss`` loses the (sim) camera mid-run and
shows the status messages, the reconnect and the verdict sequence numbers around it.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import click

from edge.tools.harness import DEMO_BUNDLE, DEMO_IMAGES, DaemonError, DaemonRun, Received, run_daemon, seq_gaps

DEFAULT_TLSIMU = Path("build") / "gentl" / "TLSimu.cti"


def bench_run(camera: dict[str, Any], watchdog: dict[str, Any] | None = None, threads: int = 2,
              bundle: Path = DEMO_BUNDLE) -> DaemonRun:
    """The daemon on ``camera`` until it exits; a daemon that cannot run at all is a ClickException."""
    config = {"station": "bench", "bundle": str(bundle), "camera": camera, "runtime": {"threads": threads},
              "watchdog": watchdog or {}}
    try:
        run = run_daemon(config)
    except DaemonError as exc:
        raise click.ClickException(str(exc)) from None
    if run.exit_code not in (0, 1) or run.stopped is None:
        raise click.ClickException(f"daemon exited {run.exit_code} without its stopped event:\n{run.log_tail}")
    return run


def camera_figures(run: DaemonRun) -> tuple[dict[str, int], int]:
    """The camera's counters and the reconnects, from the daemon's ``stopped`` event."""
    camera = (run.stopped or {}).get("camera") or {}
    return dict(camera.get("stats") or {}), int(camera.get("reconnects") or 0)


def _verdicts(run: DaemonRun) -> list[Received]:
    return [r for r in run.received if r.kind == "verdict"]


def _print(figure: dict[str, Any]) -> None:
    """The figure as JSON with one key, or one timeline entry, per line."""
    lines = []
    for key, value in figure.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            inner = ",\n".join("  " + json.dumps(item) for item in value)
            lines.append(f" {json.dumps(key)}: [\n{inner}\n ]")
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value)}")
    click.echo("{\n" + ",\n".join(lines) + "\n}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def camera_bench() -> None:
    """Measure the camera path on a real daemon subprocess and print the figures as JSON.

    \b
      edge-inspect camera-bench viky --fps 20 --seconds 10   sustained rate, full pipeline
      edge-inspect camera-bench triggers -n 20               N software triggers -> N verdicts
      edge-inspect camera-bench device-loss                  camera lost and back, no silent seq gap

    Each runs the demo bundle (or --bundle) and exits non-zero if the figure shows a failure
    (verdicts missing, a sequence gap, an unexpected exit code).
    """


@camera_bench.command()
@click.option("--fps", type=click.FloatRange(1, 200), default=20.0, show_default=True,
              help="AcquisitionFrameRate for viky.cti (it offers 1..200).")
@click.option("--seconds", type=click.FloatRange(min=1), default=10.0, show_default=True,
              help="How long to acquire: max_frames = fps x seconds.")
@click.option("--pixel-format", type=click.Choice(["Mono8", "RGB8", "RGBa8"]), default="RGBa8", show_default=True)
@click.option("--buffer-handling", type=click.Choice(["newest", "oldest"]), default="newest", show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True, help="onnxruntime threads.")
@click.option("--bundle", type=click.Path(file_okay=False, path_type=Path), default=DEMO_BUNDLE)
def viky(fps: float, seconds: float, pixel_format: str, buffer_handling: str, threads: int, bundle: Path) -> None:
    """Sustained verdict rate from viky.cti with the full pipeline, and the frames dropped and why."""
    import genicam

    cti = Path(genicam.__file__).parent / "viky.cti"
    frames = max(2, round(fps * seconds))
    run = bench_run({"type": "gentl", "producers": [str(cti)], "serial_number": "0", "max_frames": frames,
                     "buffer_handling": buffer_handling,
                     "features": {"PixelFormat": pixel_format, "AcquisitionFrameRate": float(fps)}},
                    threads=threads, bundle=bundle)
    verdicts = _verdicts(run)
    messages = [r.payload for r in verdicts]
    span = verdicts[-1].t - verdicts[0].t if len(verdicts) > 1 else 0.0
    ids = [m["device_frame_id"] for m in messages if m.get("device_frame_id") is not None]
    skipped = (ids[-1] - ids[0] + 1 - len(ids)) if ids else 0
    totals = sorted(m["latency_ms"]["total"] for m in messages)
    inference = [m["latency_ms"]["inference"] for m in messages]
    stats, _ = camera_figures(run)
    figure = {
        "figure": "viky.cti sustained rate, full pipeline", "configured_fps": fps, "pixel_format": pixel_format,
        "buffer_handling": buffer_handling, "verdicts": len(messages),
        "verdicts_per_s": round((len(verdicts) - 1) / span, 2) if span > 0 else None, "seconds": round(span, 2),
        "camera_frames_made": (ids[-1] - ids[0] + 1) if ids else None, "camera_frames_not_inspected": skipped,
        "why_not_inspected": (
            f"{skipped} frame(s) made while inspection was busy were superseded by newer ones "
            f"(buffer_handling {buffer_handling}); {stats.get('incomplete', 0)} incomplete buffer(s); "
            f"{stats.get('timeouts', 0)} fetch timeout(s)"),
        "latency_total_ms_p50": totals[len(totals) // 2] if totals else None,
        "latency_total_ms_max": totals[-1] if totals else None,
        "inference_ms_median": round(statistics.median(inference), 2) if inference else None,
        "timestamp_clock": sorted({m.get("timestamp_clock") for m in messages}),
        "seq_gaps": seq_gaps(messages), "error_verdicts": sum(1 for m in messages if m["error"]),
        "camera_stats": stats, "exit_code": run.exit_code,
    }
    _print(figure)
    if run.exit_code != 0 or len(messages) != frames or figure["seq_gaps"]:
        sys.exit(1)


@camera_bench.command()
@click.option("-n", "count", type=click.IntRange(min=1), default=20, show_default=True, help="Triggers to send.")
@click.option("--fps", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Triggers per second; 0 = next trigger as soon as the previous frame is inspected.")
@click.option("--cti", type=click.Path(dir_okay=False, path_type=Path),
              default=lambda: os.environ.get("EDGE_TEST_TLSIMU_CTI", str(DEFAULT_TLSIMU)),
              help="TLSimu.cti from the genicam 1.5.0 wheel [default: $EDGE_TEST_TLSIMU_CTI or "
                   "build/gentl/TLSimu.cti].")
@click.option("--serial-number", default="SN_InterfaceA_0", show_default=True, help="TLSimu device to use.")
@click.option("--bundle", type=click.Path(file_okay=False, path_type=Path), default=DEMO_BUNDLE)
def triggers(count: int, fps: float, cti: Path, serial_number: str, bundle: Path) -> None:
    """Software trigger on TLSimu.cti: N triggers sent must give exactly N verdicts."""
    if not cti.is_file():
        raise click.ClickException(
            f"no TLSimu.cti at {cti}: pip download --no-deps genicam==1.5.0 and unzip TLSimu.cti and "
            "libVirtualFG.so into build/gentl (see README), or pass --cti")
    run = bench_run({"type": "gentl", "producers": [str(cti.resolve())], "serial_number": serial_number,
                     "trigger": "software", "fps": fps, "max_frames": count}, bundle=bundle)
    messages = [r.payload for r in _verdicts(run)]
    stats, _ = camera_figures(run)
    figure = {
        "figure": "N software triggers -> N verdicts (TLSimu.cti)", "triggers_sent": stats.get("triggers"),
        "verdicts": len(messages), "seq": [messages[0]["seq"], messages[-1]["seq"]] if messages else None,
        "seq_gaps": seq_gaps(messages), "error_verdicts": sum(1 for m in messages if m["error"]),
        "device_frame_ids": [messages[0]["device_frame_id"], messages[-1]["device_frame_id"]] if messages else None,
        "timestamp_clock": sorted({m.get("timestamp_clock") for m in messages}),
        "camera_stats": stats, "exit_code": run.exit_code,
    }
    _print(figure)
    if run.exit_code != 0 or len(messages) != count or stats.get("triggers") != count or figure["seq_gaps"]:
        sys.exit(1)


@camera_bench.command("device-loss")
@click.option("--frames", type=click.IntRange(min=2), default=8, show_default=True, help="Frames in the whole run.")
@click.option("--lose-after", type=click.IntRange(min=1), default=4, show_default=True,
              help="The camera is lost after this many frames since it was (re)opened.")
@click.option("--down-for", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Seconds the device stays gone before it can be opened again.")
@click.option("--never-returns", is_flag=True,
              help="The device never comes back: show the reconnect budget running out and exit 1.")
@click.option("--fps", type=click.FloatRange(min=0), default=10.0, show_default=True, help="Sim camera rate.")
@click.option("--reconnect-delay", type=click.FloatRange(min=0, min_open=True), default=0.25, show_default=True,
              help="First reconnect delay in seconds (watchdog.reconnect_delay_s); doubles per failed attempt.")
@click.option("--max-delay", type=click.FloatRange(min=0, min_open=True), default=2.0, show_default=True,
              help="Cap on the reconnect delay (watchdog.reconnect_max_delay_s).")
@click.option("--budget", type=click.IntRange(min=1), default=5, show_default=True,
              help="Failed reconnect attempts in a row before the daemon exits 1.")
def device_loss(frames: int, lose_after: int, down_for: float, never_returns: bool, fps: float,
                reconnect_delay: float, max_delay: float, budget: int) -> None:
    """The camera goes away mid-run: status messages, reconnect with a growing delay, and the verdict seqs.

    Uses the sim camera's fault injection (a simulated device loss: grabs fail, then opens fail for
    --down-for seconds), so it runs anywhere; the daemon's side is the real thing.
    """
    camera = {"type": "sim", "source": str(DEMO_IMAGES), "loop": True, "fps": fps,
              "max_frames": None if never_returns else frames,
              "faults": {"disconnect_after": lose_after, "down_for_s": None if never_returns else down_for}}
    run = bench_run(camera, {"reconnect_delay_s": reconnect_delay, "reconnect_max_delay_s": max_delay,
                             "reconnect_budget": budget})
    events = [r for r in run.received if r.kind in ("verdict", "status")]
    t0 = events[0].t if events else 0.0
    timeline = [{"t_s": round(r.t - t0, 2), "kind": r.kind,
                 **({"seq": r.payload["seq"], "frame_id": r.payload["frame_id"]} if r.kind == "verdict" else
                    {"camera": r.payload["camera"], "attempt": r.payload["attempt"],
                     "next_retry_s": r.payload["next_retry_s"], "verdicts_so_far": r.payload["verdicts"]})}
                for r in events]
    messages = [r.payload for r in _verdicts(run)]
    # Every pause in the verdicts must be explained on the status topic: a status message in it.
    pauses = []
    verdict_times = [(r.t, r.payload["seq"]) for r in events if r.kind == "verdict"]
    for (t_a, seq_a), (t_b, seq_b) in zip(verdict_times, verdict_times[1:], strict=False):
        states = [r.payload["camera"] for r in events if r.kind == "status" and t_a < r.t < t_b]
        if states:
            pauses.append({"between_seq": [seq_a, seq_b], "seconds": round(t_b - t_a, 2), "status": states})
    expected_exit = 1 if never_returns else 0
    figure = {
        "figure": "device loss: camera-down status, reconnect with growing delay, "
                  + ("budget spent and exit 1" if never_returns else "device back and verdicts go on"),
        "timeline": timeline, "verdicts": len(messages), "seq_gaps": seq_gaps(messages),
        "frame_ids_consecutive": [m["frame_id"] for m in messages] == list(range(1, len(messages) + 1)),
        "pauses_with_status": pauses, "reconnects": camera_figures(run)[1], "exit_code": run.exit_code,
    }
    _print(figure)
    returned = never_returns or ("up" in [s for p in pauses for s in p["status"]] and len(messages) == frames)
    if run.exit_code != expected_exit or figure["seq_gaps"] or not returned:
        sys.exit(1)
