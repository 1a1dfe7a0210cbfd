"""The broker output against a real mosquitto: outages, kill -9, a killed bridge, the bound, a corrupt outbox.

Every row is the real daemon subprocess on the sim camera with ``outputs.broker`` on, a real
mosquitto started and stopped by the test (with persistence, as a plant runs it), and a consumer
on the broker with a persistent session. What the daemon produced is what its ZeroMQ socket
published; what was delivered is what the consumer read. Waits are for those messages, with
generous deadlines.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import yaml

from edge.outputs.broker.outbox import Outbox
from edge.outputs.broker.reader import BrokerMessage, MqttReader
from edge.tools.harness import DEMO_IMAGES, RunningDaemon, daemon_env, wait_until

PREFIX = "plant/line1"
WAIT_S = 120.0


class Consumer:
    """Everything read from the broker under PREFIX, with an optional hook on each message."""

    def __init__(self, url: str, hook: Any = None) -> None:
        self.messages: list[BrokerMessage] = []
        self.lock = threading.Lock()
        self.hook = hook
        self.reader = MqttReader(url, PREFIX, self._add, client_id=f"test-consumer-{os.getpid()}")
        self.reader.start()

    def _add(self, message: BrokerMessage) -> None:
        with self.lock:
            self.messages.append(message)
        if self.hook is not None:
            self.hook(message)

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [m.payload for m in self.messages if m.kind == kind]

    def verdict_keys(self) -> set[tuple[str, int]]:
        return {(v["run_id"], v["seq"]) for v in self.of("verdict")}

    def close(self) -> None:
        self.reader.close()


def produced(*daemons: RunningDaemon) -> dict[tuple[str, int], dict[str, Any]]:
    return {(v["run_id"], v["seq"]): v for d in daemons for v in d.of("verdict")}


def station(tmp_path: Path, url: str, fps: float = 30, name: str = "s1", **broker: Any) -> dict[str, Any]:
    mqtt = {"url": url, "topic_prefix": PREFIX, **broker.pop("mqtt", {})}
    return {"station": name, "camera": {"type": "sim", "source": str(DEMO_IMAGES), "loop": True, "fps": fps},
            "state_dir": str(tmp_path / f"state-{name}"),
            "outputs": {"broker": {"enabled": True, "mqtt": mqtt, **broker}}}


def broker_stats(stopped: dict[str, Any]) -> dict[str, Any]:
    return stopped["outputs"]["broker.mqtt"]


def test_a_broker_outage_loses_nothing_and_what_waited_comes_back_marked_as_replay(tmp_path, mosquitto):
    consumer = Consumer(mosquitto.url)
    with RunningDaemon(tmp_path, station(tmp_path, mosquitto.url)) as daemon:
        daemon.wait_for(lambda d: len(d.of("verdict")) >= 10, WAIT_S, "10 verdicts")
        wait_until(lambda: len(consumer.of("verdict")) >= 5, WAIT_S, "verdicts at the consumer")
        mosquitto.stop()
        before = len(daemon.of("verdict"))
        daemon.wait_for(lambda d: len(d.of("verdict")) >= before + 30, WAIT_S, "30 verdicts during the outage")
        during = {(v["run_id"], v["seq"]) for v in daemon.of("verdict")[before:]}
        mosquitto.start()
        wait_until(lambda: set(produced(daemon)) <= consumer.verdict_keys(), WAIT_S, "the replay")
        assert daemon.terminate() == 0
        wait_until(lambda: any(e["event"] == "stopped" for e in consumer.of("event")), WAIT_S, "the stopped event")
    consumer.close()
    verdicts = consumer.of("verdict")
    assert set(produced(daemon)) <= consumer.verdict_keys()
    replayed = {(v["run_id"], v["seq"]) for v in verdicts if v["delivery"]["replay"]}
    assert during - {(v["run_id"], v["seq"]) for v in verdicts if not v["delivery"]["replay"]} <= replayed
    assert len({(v["delivery"]["run_id"], v["delivery"]["n"]) for v in verdicts}) == len(consumer.verdict_keys())
    stats = broker_stats(daemon.stopped())
    # everything handed over before the stopped event was delivered; the outbox is empty
    assert stats["undelivered"] == {} and stats["connected"] is True
    assert stats["delivered"] + stats["queued"] == len(daemon.received) - 1
    presence = consumer.of("connection")
    assert presence[-1]["online"] is False and any(p["online"] for p in presence)  # clean stop says offline


def test_kill_9_during_the_outage_then_both_back_delivers_both_runs(tmp_path, mosquitto):
    consumer = Consumer(mosquitto.url)
    config = station(tmp_path, mosquitto.url)
    first = RunningDaemon(tmp_path, config, name="first")
    with first:
        first.wait_for(lambda d: len(d.of("verdict")) >= 10, WAIT_S, "10 verdicts")
        wait_until(lambda: len(consumer.of("verdict")) >= 5, WAIT_S, "verdicts at the consumer")
        mosquitto.stop()
        before = len(first.of("verdict"))
        first.wait_for(lambda d: len(d.of("verdict")) >= before + 20, WAIT_S, "verdicts during the outage")
        first.kill()
    with RunningDaemon(tmp_path, config, name="second") as second:
        second.wait_for(lambda d: len(d.of("verdict")) >= 20, WAIT_S, "the restarted daemon's verdicts")
        mosquitto.start()
        wait_until(lambda: set(produced(first, second)) <= consumer.verdict_keys(), WAIT_S, "both runs delivered")
        assert second.terminate() == 0
        stopped = second.stopped()
    consumer.close()
    runs = {v["run_id"] for v in consumer.of("verdict")}
    assert runs == {first.of("verdict")[0]["run_id"], second.of("verdict")[0]["run_id"]}
    assert broker_stats(stopped)["backlog_at_start"] > 0  # the first run's outage was still in the outbox


def test_the_last_will_tells_consumers_a_killed_station_is_offline(tmp_path, mosquitto):
    consumer = Consumer(mosquitto.url)
    with RunningDaemon(tmp_path, station(tmp_path, mosquitto.url)) as daemon:
        wait_until(lambda: any(p["online"] for p in consumer.of("connection")), WAIT_S, "the station online")
        daemon.kill()
        wait_until(lambda: consumer.of("connection")[-1]["online"] is False, WAIT_S, "the last will")
    consumer.close()
    assert consumer.of("connection")[-1]["station"] == "s1"


def test_a_bridge_killed_mid_replay_loses_nothing_once_restarted(tmp_path, mosquitto):
    # a window of 2 (1 slot for the replay) makes the replay last long enough to be killed in the middle
    config = station(tmp_path, mosquitto.url, fps=0, run="bridge", live_reserve=1, mqtt={"window": 2})
    first_replayed = threading.Event()
    outage_over = threading.Event()  # the bridge may also start with a replay: the first rows it finds
    received_at_kill: list[int] = []
    holder: dict[str, subprocess.Popen[bytes]] = {}

    def kill_on_first_replay(message: BrokerMessage) -> None:
        replay = message.kind == "verdict" and message.payload["delivery"]["replay"]
        if replay and outage_over.is_set() and not first_replayed.is_set():
            holder["bridge"].kill()  # SIGKILL from the consumer's thread, the moment the replay is seen
            received_at_kill.append(len(consumer.of("verdict")))
            first_replayed.set()

    consumer = Consumer(mosquitto.url, hook=kill_on_first_replay)

    def start_bridge(name: str) -> subprocess.Popen[bytes]:
        with open(tmp_path / f"{name}.log", "wb") as log_file:
            return subprocess.Popen([sys.executable, "-m", "edge", "bridge", "--config", str(daemon.config_path)],
                                    env=daemon_env(), stdout=subprocess.DEVNULL, stderr=log_file)

    with RunningDaemon(tmp_path, config) as daemon:
        holder["bridge"] = start_bridge("bridge1")
        try:
            daemon.wait_for(lambda d: len(d.of("verdict")) >= 5, WAIT_S, "verdicts")
            wait_until(lambda: len(consumer.of("verdict")) >= 3, WAIT_S, "verdicts through the bridge")
            mosquitto.stop()
            before = len(daemon.of("verdict"))
            daemon.wait_for(lambda d: len(d.of("verdict")) >= before + 300, WAIT_S, "a backlog of 300 verdicts")
            outage_over.set()
            mosquitto.start()
            assert first_replayed.wait(WAIT_S), "no replayed verdict reached the consumer"
            assert holder["bridge"].wait(30) == -signal.SIGKILL
            backlog_end = len(daemon.of("verdict"))
            assert received_at_kill[0] < backlog_end  # killed while most of the backlog was still to come
            holder["bridge"] = start_bridge("bridge2")
            wait_until(lambda: set(produced(daemon)) <= consumer.verdict_keys(), WAIT_S * 2, "the rest of the replay")
            assert daemon.terminate() == 0
            # the daemon went on inspecting until it stopped: the bridge sends those last ones from the outbox
            # too, and is stopped only once they are through (a SIGTERM would leave them queued for its next start)
            wait_until(lambda: set(produced(daemon)) <= consumer.verdict_keys(), WAIT_S, "the daemon's last verdicts")
        finally:
            holder["bridge"].send_signal(signal.SIGTERM)
            holder["bridge"].wait(30)
    consumer.close()
    assert set(produced(daemon)) <= consumer.verdict_keys()
    assert broker_stats(daemon.stopped())["undelivered"] == {}


def test_past_the_outbox_bound_the_oldest_are_dropped_and_counted_never_silently(tmp_path, mosquitto):
    consumer = Consumer(mosquitto.url)
    config = station(tmp_path, mosquitto.url, outbox={"max_mb": 0.02}, kinds=["verdict"])  # ~15 verdicts
    with RunningDaemon(tmp_path, config) as daemon:
        daemon.wait_for(lambda d: len(d.of("verdict")) >= 5, WAIT_S, "verdicts")
        wait_until(lambda: len(consumer.of("verdict")) >= 3, WAIT_S, "verdicts at the consumer")
        mosquitto.stop()
        before = len(daemon.of("verdict"))
        daemon.wait_for(lambda d: len(d.of("verdict")) >= before + 120, WAIT_S, "120 verdicts during the outage")
        assert daemon.terminate() == 0
        stats = broker_stats(daemon.stopped())
    during = [v["seq"] for v in daemon.of("verdict")[before:]]
    assert stats["undelivered"]["outbox_full"] > 0
    # every verdict handed over is accounted for: delivered, dropped past the bound, or still waiting
    assert stats["delivered"] + stats["undelivered"]["outbox_full"] + stats["queued"] == len(daemon.of("verdict"))
    outbox = Outbox(tmp_path / "state-s1" / "outbox" / "mqtt.sqlite", role="send")
    kept = [json.loads(row.body)["seq"] for row in outbox.rows_after(0, 10_000)]
    assert kept and kept == during[len(during) - len(kept):]  # the newest survived the bound, without a hole
    bridge_config = tmp_path / "bridge.yaml"  # the same station; the bridge sends what is left, nothing new
    config["outputs"]["broker"]["run"] = "bridge"
    bridge_config.write_text(yaml.safe_dump({**daemon.config, "outputs": config["outputs"]}))
    mosquitto.start()
    bridge = subprocess.Popen([sys.executable, "-m", "edge", "bridge", "--config", str(bridge_config)],
                              env=daemon_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: {v["seq"] for v in consumer.of("verdict")} >= set(kept), WAIT_S, "the kept verdicts")
        wait_until(lambda: outbox.counters()["rows"] == 0, WAIT_S, "an empty outbox")
    finally:
        bridge.send_signal(signal.SIGTERM)
        bridge.wait(30)
        outbox.close()
    consumer.close()
    got = {v["seq"] for v in consumer.of("verdict")}
    assert [s for s in during if s in got] == kept  # of the outage, exactly what the bound kept arrived


def test_a_corrupt_outbox_is_moved_aside_and_the_daemon_still_inspects_and_delivers(tmp_path, mosquitto):
    config = station(tmp_path, mosquitto.url)
    outbox = tmp_path / "state-s1" / "outbox" / "mqtt.sqlite"
    outbox.parent.mkdir(parents=True)
    outbox.write_bytes(b"\x00garbage, not an outbox\xff" * 500)
    consumer = Consumer(mosquitto.url)
    with RunningDaemon(tmp_path, config) as daemon:
        daemon.wait_for(lambda d: len(d.of("verdict")) >= 10, WAIT_S, "verdicts")
        wait_until(lambda: set(produced(daemon)) <= consumer.verdict_keys(), WAIT_S, "delivery")
        assert daemon.terminate() == 0
    consumer.close()
    aside = list(outbox.parent.glob("mqtt.sqlite.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"\x00garbage")
    assert "corrupt outbox moved aside" in (broker_stats(daemon.stopped())["last_error"] or "")


def test_a_daemon_without_a_folder_for_its_outbox_refuses_to_start_in_one_line(tmp_path, mosquitto):
    config = station(tmp_path, mosquitto.url)
    del config["state_dir"]
    with RunningDaemon(tmp_path, config, env={"STATE_DIRECTORY": ""}) as daemon:
        assert daemon.wait(WAIT_S, require_stopped=False) == 2
    errors = [line for line in daemon.log_tail().splitlines() if line.startswith("edge-inspect: error")]
    assert errors == [("edge-inspect: error: outputs.broker.mqtt: the outbox needs a folder: set outbox.dir, or "
                       "state_dir (or run under systemd with StateDirectory=)")]


def test_the_bridge_refuses_a_config_whose_daemon_sends_by_itself(tmp_path, mosquitto):
    config_path = tmp_path / "station.yaml"
    config_path.write_text(yaml.safe_dump({**station(tmp_path, mosquitto.url), "bundle": "/nonexistent"}))
    result = subprocess.run([sys.executable, "-m", "edge", "bridge", "--config", str(config_path)], env=daemon_env(),
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        ("edge-inspect bridge: error: outputs.broker.run is 'thread': the daemon sends by itself (set run: bridge to "
         "use edge-inspect bridge; two senders on one outbox would only send everything twice)")]
