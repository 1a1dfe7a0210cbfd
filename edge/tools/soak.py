"""``edge-inspect soak``: run the real daemon for many frames and check that nothing goes unaccounted.

The figures a plant asks before trusting a box for months: does every frame end as a verdict or
a counted drop, does memory stay flat, what latency does the line see, and what happens when the
camera is faster than inference under each overload policy. Each run starts the daemon as a
subprocess on the sim camera replaying a folder in a loop through :mod:`edge.tools.harness`,
which collects its verdicts and events on a real ZeroMQ socket; the daemon's RSS is sampled from
``/proc`` once a second, and its own final accounting is read from its ``stopped`` event. The figure is
printed as JSON; the exit code is 1 if the accounting does not balance or the subscriber saw a
``seq`` gap.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from edge.ops.latency import percentiles
from edge.tools.bench import DEFAULT_SOURCE
from edge.tools.harness import DEMO_BUNDLE, DaemonError, RunningDaemon, run_daemon, seq_gaps

POLICIES = ("block", "drop_oldest", "drop_newest")


def rss_mb(pid: int) -> float | None:
    """Resident set size of ``pid`` in MB, from /proc (None once it has exited)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        return None
    return None


def run_soak(bundle: Path, source: Path, frames: int, fps: float, policy: str, queue_size: int,
             threads: int | None, deadline_s: float) -> dict[str, Any]:
    """One daemon run of ``frames`` frames; the figure as a dict (see the module docstring)."""
    rss: list[tuple[float, float]] = []  # (monotonic t, MB), one sample a second
    scanned, warm = 0, False

    def sample(daemon: RunningDaemon) -> None:
        # One sample a second, and one as soon as the first verdict is in (warm-up done), so that a
        # short run (most frames dropped) still has a sample after warm-up to measure growth from.
        nonlocal scanned, warm
        first_verdict = False
        if not warm:
            received = daemon.received
            warm = first_verdict = any(r.kind == "verdict" for r in received[scanned:])
            scanned = len(received)
        if not first_verdict and rss and time.monotonic() - rss[-1][0] < 1.0:
            return
        value = rss_mb(daemon.pid)
        if value is not None:
            rss.append((time.monotonic(), value))

    with tempfile.TemporaryDirectory(prefix="edge-soak-") as state_dir:
        config = {"station": "soak", "bundle": str(bundle), "log_level": "WARNING", "state_dir": state_dir,
                  "camera": {"type": "sim", "source": str(source), "loop": True, "fps": fps, "max_frames": frames},
                  "runtime": {"threads": threads} if threads else {}, "publish": {"sndhwm": 100_000},
                  "pipeline": {"overload": policy, "queue_size": queue_size}}
        try:
            run = run_daemon(config, deadline_s=deadline_s, topics=(b"verdict.", b"event."), on_tick=sample)
        except DaemonError as exc:
            raise click.ClickException(str(exc)) from None
    verdicts = [(r.t, r.payload) for r in run.received if r.kind == "verdict"]
    stopped = run.stopped
    if stopped is None:
        raise click.ClickException(f"daemon exited {run.exit_code} without its stopped event:\n{run.log_tail}")
    counters = stopped["counters"]
    seqs = [m["seq"] for _, m in verdicts]
    received = len(verdicts)
    # Samples after the first verdict (warm-up done), each with the verdicts received by then.
    after_warmup = [(sum(1 for t_v, _ in verdicts if t_v <= t), mb) for t, mb in rss
                    if verdicts and t >= verdicts[0][0]] or [(0, mb) for _, mb in rss]
    middle = min(after_warmup, key=lambda r: abs(r[0] - received / 2)) if after_warmup else None
    seconds = verdicts[-1][0] - verdicts[0][0] if received > 1 else 0.0
    latency = [m["latency_ms"] for _, m in verdicts]
    return {
        "policy": policy, "fps_asked": fps or "max", "queue_size": queue_size, "frames_asked": frames,
        "exit_code": run.exit_code,
        "frames": counters["frames"], "verdicts": counters["verdicts"], "dropped": counters["dropped"],
        "drops": counters["drops"], "errors": counters["errors"],
        "balanced": counters["frames"] == counters["verdicts"] + counters["dropped"] and stopped["balanced"],
        "subscriber": {"received": received, "seq_gaps": len(seq_gaps([m for _, m in verdicts])),
                       "last_seq": seqs[-1] if seqs else None},
        "throughput_verdicts_per_s": round((received - 1) / seconds, 2) if seconds else None,
        "latency_ms": {stage: percentiles(ms[stage] for ms in latency) for stage in latency[0]} if latency else {},
        "rss_mb": {
            "start": round(after_warmup[0][1], 1) if after_warmup else None,
            "middle": round(middle[1], 1) if middle else None,
            "end": round(after_warmup[-1][1], 1) if after_warmup else None,
            "max": round(max(mb for _, mb in rss), 1) if rss else None,
            "samples": len(rss),
        },
    }


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--bundle", type=click.Path(exists=True, file_okay=False, path_type=Path), default=DEMO_BUNDLE,
              show_default="the demo bundle", help="Calibrated bundle the daemon runs.")
@click.option("--source", type=click.Path(exists=True, path_type=Path), default=DEFAULT_SOURCE,
              show_default="the demo images", help="Images the sim camera replays in a loop.")
@click.option("--frames", default=20_000, show_default=True, type=click.IntRange(min=1), help="Frames per run.")
@click.option("--fps", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="Camera rate; 0 = as fast as the sim camera can decode (faster than inference: an overload).")
@click.option("--policy", "policies", multiple=True, type=click.Choice([*POLICIES, "all"]), default=("block",),
              show_default=True, help="Overload policy; repeat, or 'all' for one run per policy.")
@click.option("--queue-size", default=2, show_default=True, type=click.IntRange(min=1), help="pipeline.queue_size.")
@click.option("--threads", type=click.IntRange(min=1), help="Inference threads (default: the engine's).")
@click.option("--rss-bound", default=16.0, show_default=True, type=click.FloatRange(min=0),
              help="Largest RSS growth (MB) allowed from the first sample after warm-up to the end.")
@click.option("--deadline", default=3600.0, show_default=True, type=click.FloatRange(min=1), help="Seconds per run.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Also write the figures as JSON.")
def soak(bundle: Path, source: Path, frames: int, fps: float, policies: tuple[str, ...], queue_size: int,
         threads: int | None, rss_bound: float, deadline: float, json_path: Path | None) -> None:
    """Run the daemon for --frames frames per policy; print frames in = verdicts + drops, RSS and latency as JSON."""
    chosen = list(POLICIES) if "all" in policies else list(dict.fromkeys(policies))
    results = []
    for policy in chosen:
        click.echo(f"soak: {frames} frames, policy {policy}, fps {fps or 'max'} ...", err=True)
        result = run_soak(bundle, source, frames, fps, policy, queue_size, threads, deadline)
        rss = result["rss_mb"]
        growth = None if rss["start"] is None or rss["end"] is None else round(rss["end"] - rss["start"], 1)
        result["rss_mb"].update(growth=growth, bound=rss_bound, within_bound=growth is not None and growth <= rss_bound)
        results.append(result)
        click.echo(json.dumps(result))
    if json_path:
        json_path.write_text(json.dumps(results, indent=2))
    if not all(r["balanced"] and r["subscriber"]["seq_gaps"] == 0 and r["exit_code"] == 0
               and r["rss_mb"]["within_bound"] for r in results):
        sys.exit(1)
