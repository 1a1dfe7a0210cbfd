"""``edge-inspect plc-bench``: the PLC hand-off measured end to end, with a PLC that plays its part.

Each scenario runs the real daemon (a subprocess, sim camera in software-trigger mode on the demo
bundle unless told otherwise) with one PLC output, and a PLC peer from :mod:`edge.tools.plc_peer`
that feeds it parts as fast as the pipeline takes them (``--in-flight`` triggers without a result
at most): ``server`` (the station serves, the PLC polls), ``client`` (the station writes into a PLC
server that is restarted ``--restarts`` times during the run) and ``opcua`` (parts triggered with
the ``Trigger`` method, results seen as data-change notifications of ``LastVerdict``). What the
PLC saw is checked against every verdict on the ZeroMQ socket: lost, duplicated and mismatched
part ids (goal 0, 0, 0), and latencies p50/p99: trigger to results_valid and capture to register
visible (Modbus), capture to notification (OPC UA), and publish to visible (the hand-off alone).
``onoff`` measures the inference p95 with the PLC outputs on and off, in blocks that alternate
within one run. Every figure is printed with the machine's load (``uptime``) and the CPU time the
daemon used, because this machine is shared.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from edge.tools.harness import DEMO_BUNDLE, DEMO_IMAGES, RunningDaemon, free_port

SCENARIOS = ("server", "client", "opcua", "onoff")


def load() -> str:
    """``uptime``'s load averages, as printed beside every figure."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def percentiles(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": round(ordered[-1], 2), "n": len(ordered)}


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def daemon_config(output: dict[str, Any], bundle: Path, images: Path, on_demand: bool = True,
                  fps: float = 0.0, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    camera: dict[str, Any] = {"type": "sim", "source": str(images), "loop": True}
    if on_demand:
        camera["trigger"] = "software"
    else:
        camera["fps"] = fps
    config: dict[str, Any] = {"bundle": str(bundle), "camera": camera, "log_level": "WARNING",
                              "pipeline": {"acquisition": "on_demand" if on_demand else "continuous"}}
    if output:
        config["outputs"] = {"plc": {"enabled": True, **output}}
    overrides = overrides or {}
    camera.update(overrides.get("camera", {}))
    if overrides.get("runtime"):
        config["runtime"] = dict(overrides["runtime"])
    return config


def check_parts(seen: list[tuple[int, int, int]], verdicts: list[dict[str, Any]], parts: int) -> dict[str, Any]:
    """Lost, duplicated and mismatched part ids: ``seen`` is (part_id, seq, result code) as the PLC read them."""
    by_seq = {int(v["seq"]): v for v in verdicts}
    ids = [p for p, _, _ in seen]
    mismatched = 0
    for part, seq, code in seen:
        verdict = by_seq.get(seq)
        expected = None if verdict is None else (3 if verdict["error"] else 1 if verdict["verdict"] == "OK" else 2)
        if verdict is None or verdict.get("part_id") != part or expected != code:
            mismatched += 1
    return {"parts": parts, "results_seen": len(seen), "lost": len(set(range(1, parts + 1)) - set(ids)),
            "duplicated": len(ids) - len(set(ids)), "mismatched": mismatched, "verdicts": len(verdicts)}


def _wait_program(program: Any, deadline_s: float, bar: Any, error: Any = None, on_tick: Any = None) -> None:
    deadline = time.monotonic() + deadline_s
    done = 0
    while not program.done() and time.monotonic() < deadline:
        if error is not None and error():
            raise click.ClickException(f"PLC peer failed: {error()}")
        if on_tick is not None:
            on_tick()
        time.sleep(0.05)  # a progress poll of the bench, not a synchronisation
        now = len(program.results)
        bar.update(now - done)
        done = now


def modbus_figures(program: Any, verdicts: list[dict[str, Any]], parts: int) -> dict[str, Any]:
    results, _ = program.snapshot()
    by_seq = {int(v["seq"]): v for v in verdicts}
    trigger_ms = [(r.t_seen - r.t_trigger) * 1e3 for r in results if r.t_trigger is not None]
    capture_ms, handoff_ms = [], []
    for r in results:
        verdict = by_seq.get(r.seq)
        if verdict is not None:
            capture_ms.append((r.t_seen - float(verdict["t_capture"])) * 1e3)
            handoff_ms.append((r.t_seen - float(verdict["t_publish"])) * 1e3)
    inference = [float(v["latency_ms"]["inference"]) for v in verdicts]
    return {**check_parts([(r.part_id, r.seq, r.result) for r in results], verdicts, parts),
            "trigger_to_results_valid_ms": percentiles(trigger_ms),
            "capture_to_register_visible_ms": percentiles(capture_ms),
            "publish_to_register_visible_ms": percentiles(handoff_ms),
            "inference_ms": percentiles(inference)}


def run_modbus(role: str, parts: int, in_flight: int, restarts: int, bundle: Path, images: Path,
               workdir: Path, scan_ms: float = 1.0, poll_ms: int | None = None,
               overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    from tqdm import tqdm

    from edge.outputs.plc.registermap import RegisterMap
    from edge.tools.plc_peer import ClientDriver, PlcProgram, PlcServer

    port, rmap = free_port(), RegisterMap()
    program = PlcProgram(range(1, parts + 1), in_flight=in_flight)
    plc_server = PlcServer(program, rmap, port, scan_s=scan_ms / 1000.0).start() if role == "client" else None
    modbus: dict[str, Any] = {"role": role, "port": port}
    if poll_ms is not None and role == "client":
        modbus["poll_ms"] = poll_ms
    config = daemon_config({"modbus": modbus}, bundle, images, overrides=overrides)
    cpu0, t0, load0 = _cpu_children(), time.monotonic(), load()
    driver = None
    every = parts // (restarts + 1) if restarts else 0
    done_restarts = [0]

    def maybe_restart() -> None:
        if plc_server is not None and done_restarts[0] < restarts and len(program.results) >= every * (
                done_restarts[0] + 1):
            plc_server.restart(0.5)
            done_restarts[0] += 1

    try:
        with RunningDaemon(workdir / role, config) as daemon:
            daemon.wait_for(lambda d: bool(d.events("started")), 120, "the started event")
            t_start = time.monotonic()
            if role == "server":
                driver = ClientDriver(program, rmap, "127.0.0.1", port, scan_s=scan_ms / 1000.0).start()
            with tqdm(total=parts, desc=f"modbus {role}", unit="part") as bar:
                _wait_program(program, 60 + parts * 0.5, bar, (lambda: driver.error) if driver else None,
                              maybe_restart)
            elapsed = time.monotonic() - t_start
            if driver is not None:
                driver.close()
            daemon.terminate(120)
            verdicts = daemon.of("verdict")
            stats = daemon.stopped()["outputs"].get("plc_modbus", {})
    finally:
        if plc_server is not None:
            plc_server.close()
    figures = modbus_figures(program, verdicts, parts)
    return {"scenario": f"modbus {role}", **figures, "restarts": done_restarts[0], "plc_scan_ms": scan_ms,
            "station_poll_ms": config["outputs"]["plc"]["modbus"].get("poll_ms", "default") if role == "client"
            else None,
            "parts_per_s": round(len(program.results) / elapsed, 1), "elapsed_s": round(elapsed, 1),
            "output_stats": stats, "daemon_cpu_s": round(_cpu_children() - cpu0, 1),
            "wall_s": round(time.monotonic() - t0, 1), "load_before": load0, "load_after": load()}


class _Notifications:
    """asyncua subscription handler: every LastVerdict notification with its arrival time."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, dict[str, Any]]] = []

    def datachange_notification(self, _node: Any, value: Any, _data: Any) -> None:
        if value:
            self.seen.append((time.time(), json.loads(value)))


async def _opcua_client(endpoint: str, station: str, parts: int, in_flight: int, handler: _Notifications,
                        bar: Any) -> None:
    from asyncua import Client, ua

    async with Client(endpoint, timeout=30) as client:
        idx = await client.get_namespace_index("urn:edge-inspect")
        station_node = await client.nodes.objects.get_child([f"{idx}:{station}"])
        last = await station_node.get_child([f"{idx}:LastVerdict"])
        subscription = await client.create_subscription(5, handler)
        await subscription.subscribe_data_change(last, queuesize=0)
        sent = 0
        deadline = time.monotonic() + 60 + parts * 0.5
        while len(handler.seen) < parts and time.monotonic() < deadline:
            if sent < parts and sent - len(handler.seen) < in_flight:
                sent += 1
                await station_node.call_method(f"{idx}:Trigger", ua.Variant(sent, ua.VariantType.UInt32))
            else:
                await asyncio.sleep(0.002)
            bar.n = len(handler.seen)
            bar.refresh()
        await asyncio.sleep(1.0)  # late notifications of the last parts (then they count as missed)


def run_opcua(parts: int, in_flight: int, bundle: Path, images: Path, workdir: Path,
              overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    from tqdm import tqdm

    port = free_port()
    endpoint = f"opc.tcp://127.0.0.1:{port}/edge-inspect/"
    config = daemon_config({"opcua": {"endpoint": endpoint, "anonymous": True}}, bundle, images, overrides=overrides)
    cpu0, load0 = _cpu_children(), load()
    handler = _Notifications()
    with RunningDaemon(workdir / "opcua", config) as daemon:
        daemon.wait_for(lambda d: bool(d.events("started")), 180, "the started event")
        t_start = time.monotonic()
        with tqdm(total=parts, desc="opcua", unit="part") as bar:
            asyncio.run(_opcua_client(endpoint, daemon.config["station"], parts, in_flight, handler, bar))
        elapsed = time.monotonic() - t_start
        daemon.terminate(120)
        verdicts = daemon.of("verdict")
        stats = daemon.stopped()["outputs"].get("plc_opcua", {})
    by_seq = {int(v["seq"]): v for v in verdicts}
    capture_ms = [(t - float(n["t_capture"])) * 1e3 for t, n in handler.seen]
    handoff_ms = [(t - float(by_seq[n["seq"]]["t_publish"])) * 1e3 for t, n in handler.seen if n["seq"] in by_seq]
    notified = {int(n["seq"]) for _, n in handler.seen}
    seen = [(int(n["part_id"] or 0), int(n["seq"]), int(n["result"])) for _, n in handler.seen]
    return {"scenario": "opcua", **check_parts(seen, verdicts, parts),
            "missed_notifications": len(set(by_seq) - notified),
            "capture_to_notification_ms": percentiles(capture_ms), "publish_to_notification_ms": percentiles(handoff_ms),
            "inference_ms": percentiles([float(v["latency_ms"]["inference"]) for v in verdicts]),
            "parts_per_s": round(len(handler.seen) / elapsed, 1), "output_stats": stats,
            "daemon_cpu_s": round(_cpu_children() - cpu0, 1), "load_before": load0, "load_after": load()}


def _onoff_block(on: bool, frames: int, fps: float, bundle: Path, images: Path, workdir: Path,
                 overrides: dict[str, Any] | None = None) -> list[float]:
    """One block of free-running frames; with ``on``, Modbus (a PLC polling and acking) and OPC UA outputs."""
    from edge.outputs.plc.registermap import RegisterMap
    from edge.tools.plc_peer import ClientDriver, PlcProgram

    port = free_port()
    output = {"modbus": {"role": "server", "port": port},
              "opcua": {"endpoint": f"opc.tcp://127.0.0.1:{free_port()}/edge-inspect/", "anonymous": True}} if on else {}
    config = daemon_config(output, bundle, images, on_demand=False, fps=fps, overrides=overrides)
    config["camera"]["max_frames"] = frames
    program = PlcProgram([], in_flight=0)  # free run: no triggers, every result read and acked
    driver = None
    with RunningDaemon(workdir / f"onoff-{'on' if on else 'off'}", config) as daemon:
        if on:
            driver = ClientDriver(program, RegisterMap(), "127.0.0.1", port, scan_s=0.002).start()
        code = daemon.wait(60 + frames / max(fps, 1.0) * 4)
        if driver is not None:
            driver.close()
        if code != 0:
            raise click.ClickException(f"daemon exited {code} in the on/off run:\n{daemon.log_tail()}")
        return [float(v["latency_ms"]["inference"]) for v in daemon.of("verdict")]


def run_onoff(rounds: int, frames: int, fps: float, bundle: Path, images: Path, workdir: Path,
              overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    from tqdm import tqdm

    samples: dict[str, list[float]] = {"on": [], "off": []}
    cpu0, load0 = _cpu_children(), load()
    with tqdm(total=rounds * 2, desc="on/off blocks", unit="block") as bar:
        for index in range(rounds):
            for on in ((True, False) if index % 2 == 0 else (False, True)):
                samples["on" if on else "off"].extend(_onoff_block(on, frames, fps, bundle, images, workdir, overrides))
                bar.update(1)
    return {"scenario": "inference p95, PLC outputs on vs off", "rounds": rounds, "frames_per_block": frames,
            "fps": fps, "inference_on_ms": percentiles(samples["on"]), "inference_off_ms": percentiles(samples["off"]),
            "daemon_cpu_s": round(_cpu_children() - cpu0, 1), "load_before": load0, "load_after": load()}


@click.command()
@click.option("--scenario", "scenarios", type=click.Choice(SCENARIOS), multiple=True,
              help="What to run (repeatable; default: all of them).")
@click.option("--parts", type=click.IntRange(min=1), default=10000, show_default=True, help="Parts per scenario.")
@click.option("--in-flight", type=click.IntRange(min=1), default=1, show_default=True,
              help="Triggers the PLC raises without having read their result. 1 is the handshake: the next part "
                   "is triggered as soon as the last result is read, the highest rate without queueing; 2 keeps "
                   "the pipeline busy, and each part then also waits for the one before it.")
@click.option("--restarts", type=click.IntRange(min=0), default=5, show_default=True,
              help="PLC server restarts during the client-role run, evenly spread.")
@click.option("--onoff-rounds", type=click.IntRange(min=1), default=4, show_default=True,
              help="on/off: pairs of blocks, alternating which goes first.")
@click.option("--onoff-frames", type=click.IntRange(min=10), default=300, show_default=True,
              help="on/off: frames per block.")
@click.option("--onoff-fps", type=click.FloatRange(min=1), default=15.0, show_default=True,
              help="on/off: free-running camera rate (below the pipeline's maximum, so both see the same load).")
@click.option("--bundle", type=click.Path(file_okay=False, path_type=Path), default=DEMO_BUNDLE,
              show_default="the demo bundle", help="Bundle the daemon runs.")
@click.option("--images", type=click.Path(file_okay=False, path_type=Path), default=DEMO_IMAGES,
              show_default="the demo images", help="Images the sim camera replays.")
@click.option("--plc-scan-ms", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Modbus: the PLC peer's scan cycle (server role: how often it polls the station; client role: "
                   "how often its program runs). 0 polls back to back, which takes a core from the daemon.")
@click.option("--poll-ms", type=click.IntRange(min=1, max=1000),
              help="Modbus client role: the station's poll_ms (default: the config's default).")
@click.option("--spin", type=click.Choice(["on", "off"]),
              help="The daemon's runtime.spin (onnxruntime workers busy-wait between operators; default: the "
                   "config's default).")
@click.option("--sim-cache-mb", type=click.FloatRange(min=0),
              help="The sim camera's cache_mb (decoded images kept while looping; 0 decodes every frame as older "
                   "versions did; default: the config's default).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the figures to this file.")
def plc_bench(scenarios: tuple[str, ...], parts: int, in_flight: int, restarts: int, onoff_rounds: int,
              onoff_frames: int, onoff_fps: float, plc_scan_ms: float, poll_ms: int | None, spin: str | None,
              sim_cache_mb: float | None, bundle: Path, images: Path, json_path: Path | None) -> None:
    """Measure the PLC hand-off: Modbus server and client roles, OPC UA, and inference with outputs on/off.

    Prints one JSON object per scenario (figures, the load before and after, the daemon's CPU
    seconds). Needs the plc extra (pip install 'edge-inspect[plc]').
    """
    # The bench's PLC peers count their own failures; pymodbus's log of each refused connection (and the
    # frame dumps it adds) would only bury the figures.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    overrides: dict[str, Any] = {"runtime": {"spin": spin == "on"} if spin else {},
                                 "camera": {} if sim_cache_mb is None else {"cache_mb": sim_cache_mb}}
    figures = []
    with tempfile.TemporaryDirectory(prefix="plc-bench-") as tmp:
        workdir = Path(tmp)
        for scenario in scenarios or SCENARIOS:
            if scenario in ("server", "client"):
                figure = run_modbus(scenario, parts, in_flight, restarts if scenario == "client" else 0, bundle,
                                    images, workdir, plc_scan_ms, poll_ms, overrides)
            elif scenario == "opcua":
                figure = run_opcua(parts, in_flight, bundle, images, workdir, overrides)
            else:
                figure = run_onoff(onoff_rounds, onoff_frames, onoff_fps, bundle, images, workdir, overrides)
            figure["runtime_spin"] = spin or "default"
            figure["sim_cache_mb"] = "default" if sim_cache_mb is None else sim_cache_mb
            click.echo(json.dumps(figure))
            figures.append(figure)
    if json_path is not None:
        json_path.write_text(json.dumps(figures, indent=2))
