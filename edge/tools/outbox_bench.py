"""``edge-inspect outbox-bench``: what the broker outbox costs the inspection path, on vs off, in one run.

The outbox append is the one thing the broker output does on the publishing thread, so its
price is measured where a line would see it: the daemon subprocess on the sim camera at a fixed
rate, once without the broker output and once per sender placement (``thread``: the sender in the
daemon; ``bridge``: in ``edge-inspect bridge``), rounds interleaved (the order rotates each
round) so that the load of a shared machine falls on every mode alike. Per mode: inference to
publish p50/p95, as a ZeroMQ subscriber (the PLC) sees it: each verdict's ``latency_ms.publish``
plus its ``t_publish``-to-arrival time here (the outputs get a message just before the ZeroMQ send,
so this includes the outbox append); inference to durable in the outbox p50/p95 (the output's
``handover_ms``, from the ``stopped`` event; the median over the rounds); capture-to-publish total
p50/p95 (the verdict's own ``latency_ms.total``); and the CPU time of the daemon (and bridge) per
1000 verdicts. ``uptime`` is printed before and after.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from edge.tools.brokers import Mosquitto
from edge.tools.harness import DEMO_IMAGES, RunningDaemon, daemon_env

MODES = ("off", "thread", "bridge")


def _config(mode: str, url: str, fps: float, frames: int, state_dir: Path, sync: str) -> dict[str, Any]:
    config: dict[str, Any] = {"station": "bench1", "state_dir": str(state_dir), "log_level": "WARNING",
                              "camera": {"type": "sim", "source": str(DEMO_IMAGES), "loop": True, "fps": fps,
                                         "max_frames": frames}}
    if mode != "off":
        config["outputs"] = {"broker": {"enabled": True, "run": mode, "outbox": {"sync": sync},
                                        "mqtt": {"url": url, "topic_prefix": "bench"}}}
    return config


def _round(mode: str, url: str, fps: float, frames: int, workdir: Path, sync: str, index: int) -> dict[str, Any]:
    before = os.times()
    daemon = RunningDaemon(workdir, _config(mode, url, fps, frames, workdir / f"state-{mode}", sync),
                           name=f"{mode}-{index}")
    bridge: subprocess.Popen[bytes] | None = None
    try:
        if mode == "bridge":
            assert daemon.config_path is not None
            with open(workdir / f"bridge-{index}.log", "ab") as log_file:
                command = [sys.executable, "-m", "edge", "bridge", "--config", str(daemon.config_path)]
                bridge = subprocess.Popen(command, env=daemon_env(), stdout=subprocess.DEVNULL, stderr=log_file)
        code = daemon.wait(timeout_s=frames / fps * 4 + 120)
        if code != 0:
            raise click.ClickException(f"daemon ({mode}) exited {code}: {daemon.log_tail()}")
        stopped = daemon.stopped()
        offset = time.time() - time.monotonic()  # arrival times are monotonic; t_publish is epoch
        arrivals = [(r.payload, r.t + offset) for r in daemon.received if r.kind == "verdict"]
        verdicts = daemon.of("verdict")
    finally:
        if bridge is not None:
            bridge.send_signal(signal.SIGTERM)
            bridge.wait(30)
        daemon.close()
    after = os.times()
    outputs = stopped.get("outputs", {})
    handover = next(iter(outputs.values()))["handover_ms"] if outputs else None
    return {"publish": [v["latency_ms"]["publish"] + (t - v["t_publish"]) * 1000.0 for v, t in arrivals],
            "total": [v["latency_ms"]["total"] for v in verdicts], "handover": handover,
            "cpu_s": (after.children_user - before.children_user) + (after.children_system - before.children_system),
            "verdicts": len(verdicts)}


def run_bench(rounds: int, frames: int, fps: float, sync: str, modes: tuple[str, ...], url: str | None,
              workdir: Path) -> dict[str, Any]:
    broker = None
    if url is None and any(mode != "off" for mode in modes):
        broker = Mosquitto(workdir / "mosquitto").start()
        url = broker.url
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    load = [os.popen("uptime").read().strip()]
    try:
        with click.progressbar(length=rounds * len(modes), label="rounds", file=sys.stderr) as bar:
            for index in range(rounds):
                order = modes[index % len(modes):] + modes[:index % len(modes)]
                for mode in order:
                    results[mode].append(_round(mode, str(url), fps, frames, workdir, sync, index))
                    bar.update(1)
    finally:
        if broker is not None:
            broker.kill()
    load.append(os.popen("uptime").read().strip())
    from edge.ops.latency import percentiles  # numpy: only once there are figures

    summary: dict[str, Any] = {}
    for mode, runs in results.items():
        publish = [x for run in runs for x in run["publish"]]
        total = [x for run in runs for x in run["total"]]
        handovers = [run["handover"] for run in runs if run["handover"] and run["handover"]["n"]]
        verdicts = sum(run["verdicts"] for run in runs)
        summary[mode] = {
            "verdicts": verdicts,
            "inference_to_publish_ms": {k: v for k, v in percentiles(publish).items() if k != "p99"},
            "inference_to_outbox_ms": {"p50": statistics.median(h["p50"] for h in handovers),
                                       "p95": statistics.median(h["p95"] for h in handovers)} if handovers else None,
            "total_ms": {k: v for k, v in percentiles(total).items() if k != "p99"},
            "cpu_s_per_1000_verdicts": round(1000 * sum(run["cpu_s"] for run in runs) / max(1, verdicts), 2),
        }
    return {"rounds": rounds, "frames_per_round": frames, "fps": fps, "sync": sync, "modes": summary, "load": load}


def format_summary(result: dict[str, Any]) -> str:
    header = (f"{'mode':<8} {'verdicts':>8} {'inf->pub p50':>12} {'p95':>7} {'inf->outbox p50':>15} {'p95':>7} "
              f"{'total p50':>9} {'p95':>7} {'cpu s/1000':>10}")
    lines = [header]
    for mode, row in result["modes"].items():
        outbox = row["inference_to_outbox_ms"] or {"p50": float("nan"), "p95": float("nan")}
        lines.append(f"{mode:<8} {row['verdicts']:>8} {row['inference_to_publish_ms']['p50']:>12.2f} "
                     f"{row['inference_to_publish_ms']['p95']:>7.2f} {outbox['p50']:>15.2f} {outbox['p95']:>7.2f} "
                     f"{row['total_ms']['p50']:>9.2f} {row['total_ms']['p95']:>7.2f} "
                     f"{row['cpu_s_per_1000_verdicts']:>10.2f}")
    lines += [f"load: {entry}" for entry in result["load"]]
    return "\n".join(lines)


@click.command()
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Rounds; each runs every mode once, in a rotating order.")
@click.option("--frames", type=click.IntRange(min=10), default=600, show_default=True,
              help="Verdicts per mode per round (at most 2048 keep the outbox figure exact).")
@click.option("--fps", type=click.FloatRange(min=1), default=20.0, show_default=True, help="Sim camera rate.")
@click.option("--sync", type=click.Choice(["full", "normal"]), default="full", show_default=True,
              help="outputs.broker.outbox.sync for the modes with the outbox.")
@click.option("--modes", default=",".join(MODES), show_default=True,
              help="Comma-separated: off (no broker output), thread, bridge.")
@click.option("--mqtt", "url", metavar="URL", help="Use this broker (default: a mosquitto started for the bench).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the figures.")
def outbox_bench(rounds: int, frames: int, fps: float, sync: str, modes: str, url: str | None,
                 json_path: Path | None) -> None:
    """The outbox's cost on the inspection path: broker output off vs on (sender in a thread, or in a bridge)."""
    chosen = tuple(m.strip() for m in modes.split(",") if m.strip())
    unknown = [m for m in chosen if m not in MODES]
    if unknown or not chosen:
        raise click.BadParameter(f"unknown mode(s) {', '.join(unknown) or '(none)'}; use {', '.join(MODES)}",
                                 param_hint="--modes")
    with tempfile.TemporaryDirectory(prefix="edge-outbox-bench-") as tmp:
        result = run_bench(rounds, frames, fps, sync, chosen, url, Path(tmp))
    click.echo(format_summary(result))
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=2) + "\n")
