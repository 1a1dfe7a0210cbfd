"""``edge-inspect fleet`` reads several real stations through a real mosquitto and tells them apart.

Two daemons on the sim camera publish through the broker output; the fleet view, fed by a real
reader, must count exactly what each daemon published on its ZeroMQ socket; and the command,
started after both stopped, still lists both from their retained connection messages.
"""

from __future__ import annotations

import json
import subprocess
import sys

from edge.outputs.broker.fleet import Fleet
from edge.outputs.broker.reader import MqttReader
from edge.tools.harness import DEMO_IMAGES, RunningDaemon, daemon_env, wait_until

WAIT_S = 120.0
FRAMES = 30


def test_fleet_counts_each_station_as_it_published_and_the_command_lists_them(tmp_path, mosquitto):
    view = Fleet()
    reader = MqttReader(mosquitto.url, "plant", view.add)
    reader.start()
    daemons = []
    for name in ("s1", "s2"):
        config = {"station": name, "state_dir": str(tmp_path / name),
                  "camera": {"type": "sim", "source": str(DEMO_IMAGES), "loop": True, "fps": 20, "max_frames": FRAMES},
                  "outputs": {"broker": {"enabled": True, "mqtt": {"url": mosquitto.url, "topic_prefix": "plant"}}}}
        daemons.append(RunningDaemon(tmp_path, config, name=name))
    try:
        for daemon in daemons:
            assert daemon.wait(WAIT_S) == 0
        wait_until(lambda: all((view.snapshot().get(n) or {}).get("parts") == FRAMES for n in ("s1", "s2")),
                   WAIT_S, "every verdict in the fleet view")
        wait_until(lambda: all(view.snapshot()[n]["online"] is False for n in ("s1", "s2")), WAIT_S, "offline")
    finally:
        for daemon in daemons:
            daemon.close()
        reader.close()
    rows = view.snapshot()
    for daemon in daemons:
        row = rows[daemon.config["station"]]
        published = daemon.of("verdict")
        assert row["ng"] == sum(v["verdict"] == "NG" for v in published)
        assert row["errors"] == 0 and row["missing_seq"] == 0 and row["duplicates"] == 0
        assert row["yield_pct"] == round(100.0 * (FRAMES - row["ng"]) / FRAMES, 2)
    result = subprocess.run([sys.executable, "-m", "edge", "fleet", "--mqtt", mosquitto.url, "--prefix", "plant",
                             "--json", "--duration", "1", "--interval", "0.5"],
                            env=daemon_env(), capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert {name: row["online"] for name, row in last["stations"].items()} == {"s1": False, "s2": False}


def test_fleet_counts_gaps_but_not_a_restart_jump_and_de_duplicates() -> None:
    from edge.outputs.broker.reader import BrokerMessage

    view = Fleet()

    def verdict(seq: int, run: str = "r1", restart: bool = False, ng: bool = False) -> BrokerMessage:
        return BrokerMessage(100.0, "s1", "verdict", {"run_id": run, "seq": seq, "restart": restart,
                                                      "verdict": "NG" if ng else "OK", "error": None,
                                                      "latency_ms": {"total": 10.0}, "t_publish": 99.99,
                                                      "delivery": {"replay": False}})

    for message in (verdict(1, restart=True), verdict(2), verdict(4, ng=True), verdict(4), verdict(1001, "r2", True)):
        view.add(message)
    row = view.snapshot(now=101.0)["s1"]
    assert row["parts"] == 4 and row["duplicates"] == 1 and row["ng"] == 1
    assert row["missing_seq"] == 1  # seq 3; the jump to 1001 opens run r2 (restart), not a loss
    assert row["last_seen_s"] == 1.0
