"""``edge-inspect soak``: run the real daemon for many frames and check that nothing goes unaccounted.

The figures a plant asks before trusting a box for months: does every frame end as a verdict or
a counted drop, does memory stay flat, what latency does the line see, and what happens when the
camera is faster than inference under each overload policy. Each run starts the daemon as a
subprocess (``python -m edge``) on the sim camera replaying a folder in a loop, subscribes to
everything it publishes on a real ZeroMQ socket, samples the daemon's RSS from ``/proc`` once a
second, and reads the daemon's own final accounting from its ``stopped`` event. The figure is
printed as JSON; the exit code is 1 if the accounting does not balance or the subscriber saw a
``seq`` gap.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import yaml

from edge.bench import DEFAULT_SOURCE
from edge.camera_bench import DEMO_BUNDLE, daemon_env, free_port
from edge.latency import percentiles

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
             threads: int | None, deadline_s: float, log_path: Path | None = None) -> dict[str, Any]:
    """One daemon run of ``frames`` frames; the figure as a dict (see the module docstring)."""
    import zmq

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with tempfile.TemporaryDirectory(prefix="edge-soak-") as tmp:
        config = {
            "station": "soak", "bundle": str(bundle), "log_level": "WARNING", "state_dir": tmp,
            "camera": {"type": "sim", "source": str(source), "loop": True, "fps": fps, "max_frames": frames},
            "publish": {"endpoint": endpoint, "wait_subscriber_s": 10, "sndhwm": 100_000},
            "pipeline": {"overload": policy, "queue_size": queue_size},
            "runtime": {"threads": threads} if threads else {},
        }
        config_path = Path(tmp) / "soak.yaml"
        config_path.write_text(yaml.safe_dump(config))
        context = zmq.Context()
        sub = context.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.RCVHWM, 0)
        for topic in (b"verdict.", b"event.", b"heartbeat."):
            sub.setsockopt(zmq.SUBSCRIBE, topic)
        sub.connect(endpoint)
        log_path = log_path or Path(tmp) / "daemon.log"
        log_file = open(log_path, "w")  # noqa: SIM115 - closed in finally
        proc = subprocess.Popen([sys.executable, "-m", "edge", "--config", str(config_path)],
                                stdout=subprocess.DEVNULL, stderr=log_file, env=daemon_env())
        received, gaps, last_seq, stopped = 0, 0, None, None
        totals: list[float] = []
        stages: dict[str, list[float]] = {}
        rss: list[tuple[float, int, float]] = []  # (t, verdicts received, MB)
        started = time.monotonic()
        first_t = last_t = None
        next_sample = started
        try:
            while time.monotonic() - started < deadline_s:
                now = time.monotonic()
                if now >= next_sample:
                    next_sample = now + 1.0
                    value = rss_mb(proc.pid)
                    if value is not None:
                        rss.append((now - started, received, value))
                if sub.poll(100):
                    topic, payload = sub.recv_multipart()[:2]
                    message = json.loads(payload)
                    if topic.startswith(b"verdict."):
                        received += 1
                        first_t = first_t or now
                        last_t = now
                        seq = int(message["seq"])
                        if last_seq is not None and seq != last_seq + 1:
                            gaps += 1
                        last_seq = seq
                        totals.append(message["latency_ms"]["total"])
                        for stage, ms in message["latency_ms"].items():
                            stages.setdefault(stage, []).append(ms)
                    elif topic.startswith(b"event.") and message["event"] == "stopped":
                        stopped = message["detail"]
                elif proc.poll() is not None:
                    break
            else:
                proc.kill()
                raise click.ClickException(f"daemon still running after {deadline_s:.0f} s; killed it")
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
            log_file.close()
            context.destroy(linger=0)
        log_text = log_path.read_text()
    if stopped is None:
        raise click.ClickException(f"daemon exited {proc.returncode} without its stopped event:\n{log_text[-3000:]}")
    counters = stopped["counters"]
    after_warmup = [r for r in rss if r[1] > 0] or rss
    middle = min(after_warmup, key=lambda r: abs(r[1] - received / 2)) if after_warmup else None
    seconds = (last_t - first_t) if first_t and last_t and last_t > first_t else 0.0
    return {
        "policy": policy, "fps_asked": fps or "max", "queue_size": queue_size, "frames_asked": frames,
        "exit_code": proc.returncode,
        "frames_in": counters["frames_in"], "verdicts": counters["verdicts"], "dropped": counters["dropped"],
        "drops": counters["drops"], "errors": counters["errors"],
        "balanced": counters["frames_in"] == counters["verdicts"] + counters["dropped"] and stopped["balanced"],
        "subscriber": {"received": received, "seq_gaps": gaps, "last_seq": last_seq},
        "throughput_verdicts_per_s": round((received - 1) / seconds, 2) if seconds else None,
        "latency_ms": {"total": percentiles(totals), **{k: percentiles(v) for k, v in stages.items() if k != "total"}},
        "rss_mb": {
            "start": round(after_warmup[0][2], 1) if after_warmup else None,
            "middle": round(middle[2], 1) if middle else None,
            "end": round(after_warmup[-1][2], 1) if after_warmup else None,
            "max": round(max(r[2] for r in rss), 1) if rss else None,
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
