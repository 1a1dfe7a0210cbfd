"""The Modbus hand-off against real peers: the daemon as a subprocess, a PLC program on real sockets.

Server role: a pymodbus client plays the PLC's side of the handshake for N parts; client role: the
station writes into a pymodbus server playing the PLC, which is restarted mid-run; and a PLC that
stops acknowledging fills the buffer. Every part id, result and seq the PLC read is checked against
the verdicts on the ZeroMQ socket. mbpoll (libmodbus, Debian) cross-checks the wire format.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from edge.outputs.plc.registermap import RegisterMap
from edge.tools.harness import DEMO_IMAGES, RunningDaemon, free_port, wait_until
from edge.tools.plc_peer import ClientDriver, PlcProgram, PlcServer

pytest.importorskip("pymodbus", reason="the plc extra (pip install 'edge-inspect[plc]') is not installed")

N_PARTS = 24
DEADLINE_S = 120


def station(tmp_path: Path, modbus: dict[str, Any], heartbeat_s: float = 1.0) -> RunningDaemon:
    config = {"camera": {"type": "sim", "source": str(DEMO_IMAGES), "trigger": "software", "loop": True},
              "pipeline": {"acquisition": "on_demand"}, "publish": {"heartbeat_s": heartbeat_s},
              "outputs": {"plc": {"enabled": True, "modbus": modbus}}}
    daemon = RunningDaemon(tmp_path, config)
    daemon.wait_for(lambda d: bool(d.events("started")), DEADLINE_S, "the started event")
    return daemon


def code_of(verdict: dict[str, Any]) -> int:
    return 3 if verdict["error"] else 1 if verdict["verdict"] == "OK" else 2


def assert_every_part_matches_its_verdict(program: PlcProgram, verdicts: list[dict[str, Any]],
                                          parts: list[int]) -> None:
    results, _ = program.snapshot()
    assert [r.part_id for r in results] == parts  # each part once, in trigger order
    by_seq = {v["seq"]: v for v in verdicts}
    for r in results:
        verdict = by_seq[r.seq]
        assert (verdict["part_id"], code_of(verdict)) == (r.part_id, r.result)
    assert sorted(by_seq) == sorted(r.seq for r in results)


def test_server_role_plc_plays_the_handshake_for_n_parts_each_answered_with_its_own_result(tmp_path) -> None:
    port, rmap = free_port(), RegisterMap()
    with station(tmp_path, {"role": "server", "port": port}) as daemon:
        program = PlcProgram(range(1, N_PARTS + 1), in_flight=2)
        driver = ClientDriver(program, rmap, "127.0.0.1", port).start()
        wait_until(lambda: program.done() or driver.error is not None, DEADLINE_S, "every part answered")
        driver.close()
        assert driver.error is None
        _, last = program.snapshot()
        assert daemon.terminate() == 0
        verdicts = daemon.of("verdict")
        stats = daemon.stopped()["outputs"]["plc_modbus"]
    assert_every_part_matches_its_verdict(program, verdicts, list(range(1, N_PARTS + 1)))
    assert (last["trigger_count"], last["ok_count"] + last["ng_count"] + last["error_count"]) == (N_PARTS, N_PARTS)
    assert last["ok_count"] == sum(v["verdict"] == "OK" for v in verdicts)
    assert stats["handshake"]["acknowledged"] == N_PARTS and stats["undelivered"] == {}


def test_client_role_survives_plc_restarts_without_losing_or_repeating_a_part(tmp_path) -> None:
    port, rmap = free_port(), RegisterMap()
    program = PlcProgram(range(1, N_PARTS + 1), in_flight=2)
    plc = PlcServer(program, rmap, port).start()
    try:
        with station(tmp_path, {"role": "client", "port": port, "reconnect_delay_s": 0.1},
                     heartbeat_s=0.1) as daemon:
            for restart in (1, 2):
                wait_until(lambda r=restart: len(program.results) >= r * N_PARTS // 3, DEADLINE_S, "results flow")
                plc.restart(down_s=0.5)
            wait_until(program.done, DEADLINE_S, "every part answered")
            assert daemon.terminate() == 0
            verdicts = daemon.of("verdict")
            heartbeats = [h["outputs"]["plc_modbus"] for h in daemon.of("heartbeat")]
    finally:
        plc.close()
    assert_every_part_matches_its_verdict(program, verdicts, list(range(1, N_PARTS + 1)))
    # the outage showed in heartbeats (connected false, with the reason) and the station came back
    assert any(not h["connected"] and h["last_error"] for h in heartbeats) and heartbeats[-1]["connected"]


def test_client_role_a_plc_away_for_seconds_shows_in_status_messages_lost_then_back(tmp_path) -> None:
    port, rmap = free_port(), RegisterMap()
    program = PlcProgram(range(1, N_PARTS + 1), in_flight=2)
    plc = PlcServer(program, rmap, port).start()

    def links(daemon: RunningDaemon) -> list[dict[str, Any]]:
        return [s for s in daemon.of("status") if "plc_modbus" in (s.get("reason") or "")]

    try:
        with station(tmp_path, {"role": "client", "port": port, "reconnect_delay_s": 0.1}) as daemon:
            wait_until(lambda: len(program.results) >= N_PARTS // 3, DEADLINE_S, "results flow")
            before = len(links(daemon))  # a slow first connection (over 1 s) would be reported too
            plc.restart(down_s=3.0)  # longer than the 1 s a link change must hold to be reported
            wait_until(program.done, DEADLINE_S, "every part answered")
            daemon.wait_for(lambda d: len(links(d)) >= before + 2, DEADLINE_S, "status messages: link lost, then back")
            assert daemon.terminate() == 0
            statuses = links(daemon)[before:]
    finally:
        plc.close()
    lost, back = statuses[0], statuses[1]
    assert lost["reason"].startswith("output plc_modbus disconnected") and not lost["outputs"]["plc_modbus"]["connected"]
    assert back["reason"] == "output plc_modbus connected" and back["outputs"]["plc_modbus"]["connected"]
    assert lost["subject"] == back["subject"] == "output"
    assert lost["camera"] == back["camera"] == "up" and len(statuses) == 2  # one outage, one pair of messages


def test_a_plc_that_stops_acknowledging_fills_the_buffer_sets_overrun_and_counts_exactly(tmp_path) -> None:
    port, rmap = free_port(), RegisterMap()
    buffer_size, unread = 4, 9  # 1 presented + 4 waiting; 4 dropped
    with station(tmp_path, {"role": "server", "port": port, "buffer_size": buffer_size}) as daemon:
        program = PlcProgram([1, 2], in_flight=1)
        driver = ClientDriver(program, rmap, "127.0.0.1", port).start()
        wait_until(program.done, DEADLINE_S, "the first parts answered")
        program.set_acknowledging(False)
        program.feed(range(3, 3 + unread), in_flight=100)
        wait_until(lambda: program.snapshot()[1].get("ok_count", 0) + program.snapshot()[1]["ng_count"]
                   + program.snapshot()[1]["error_count"] == 2 + unread and not program.to_trigger
                   and not program.snapshot()[1]["trigger_ack"], DEADLINE_S, "every verdict in the station")
        _, full = program.snapshot()
        dropped = unread - 1 - buffer_size
        assert (full["results_valid"], full["part_id_echo"], full["buffer_count"]) == (1, 3, buffer_size)
        assert (full["overrun"], full["overrun_count"]) == (1, dropped)
        program.clear_overrun(True)
        wait_until(lambda: program.snapshot()[1]["overrun"] == 0, DEADLINE_S, "overrun cleared")
        program.set_acknowledging(True)
        kept = [1, 2, 3] + list(range(3 + unread - buffer_size, 3 + unread))  # 4..7, the oldest waiting, dropped
        wait_until(lambda: len(program.results) == len(kept) and not program.snapshot()[1]["buffer_count"],
                   DEADLINE_S, "the buffered results read")
        driver.close()
        assert daemon.terminate() == 0
        verdicts = daemon.of("verdict")
        stats = daemon.stopped()["outputs"]["plc_modbus"]
    # the presented result (3) and the newest waiting ones were read, each with its own part id
    results, _ = program.snapshot()
    assert [r.part_id for r in results] == kept
    by_seq = {v["seq"]: v for v in verdicts}
    assert all(by_seq[r.seq]["part_id"] == r.part_id for r in results)
    assert stats["undelivered"] == {"overrun": dropped} and stats["handshake"]["acknowledged"] == len(kept)


MBPOLL = shutil.which("mbpoll")


def mbpoll(port: int, *args: str) -> str:
    """One mbpoll (libmodbus) request against the station; 0-based addresses, once."""
    proc = subprocess.run(["mbpoll", "-m", "tcp", "-p", str(port), "-0", "-1", "-o", "5", *args],
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def read_values(port: int, address: int, count: int, kind: str = "4") -> dict[int, int]:
    """{address: value} as mbpoll prints it (``[ref]: value``; ``4:int -B`` = 32-bit, high word first)."""
    out = mbpoll(port, "-t", kind, "-r", str(address), "-c", str(count), "127.0.0.1")
    return {int(a): int(v) for a, v in re.findall(r"^\[(\d+)\]:\s+(-?\d+)", out, re.MULTILINE)}


@pytest.mark.skipif(MBPOLL is None and not os.environ.get("CI"), reason="mbpoll (apt-get install mbpoll) missing")
def test_libmodbus_mbpoll_reads_and_writes_the_same_wire_format(tmp_path) -> None:
    port = free_port()
    with station(tmp_path, {"role": "server", "port": port, "reject_pulse_ms": 60000}) as daemon:
        wait_until(lambda: read_values(port, 100, 1).get(100) == 1, DEADLINE_S, "ready")
        # part_id 70000 as mbpoll encodes a 32-bit integer (big endian words), then trigger
        mbpoll(port, "-t", "4:int", "-B", "-r", "0", "127.0.0.1", "70000")
        mbpoll(port, "-t", "4", "-r", "2", "127.0.0.1", "1")
        wait_until(lambda: read_values(port, 103, 1).get(103) == 1, DEADLINE_S, "results_valid")
        mbpoll(port, "-t", "4", "-r", "2", "127.0.0.1", "0")
        daemon.wait_for(lambda d: bool(d.of("verdict")), DEADLINE_S, "the verdict")
        verdict = daemon.of("verdict")[0]
        words = read_values(port, 100, 8)
        echo = mbpoll(port, "-t", "4:int", "-B", "-r", "108", "-c", "2", "127.0.0.1")
        part_echo, seq = (int(v) for v in re.findall(r"^\[\d+\]:\s+(-?\d+)", echo, re.MULTILINE))
        coil = read_values(port, 0, 1, "0")[0]
        mbpoll(port, "-t", "4", "-r", "3", "127.0.0.1", "1")  # ack
        wait_until(lambda: read_values(port, 103, 1).get(103) == 0, DEADLINE_S, "results_valid cleared")
        mbpoll(port, "-t", "4", "-r", "3", "127.0.0.1", "0")
        refused = subprocess.run(["mbpoll", "-m", "tcp", "-p", str(port), "-0", "-1", "-o", "5", "-t", "4", "-r",
                                  "104", "127.0.0.1", "1"], capture_output=True, text=True, timeout=30, check=False)
        assert daemon.terminate() == 0
        stats = daemon.stopped()["outputs"]["plc_modbus"]
    assert verdict["part_id"] == 70000 and (part_echo, seq) == (70000, verdict["seq"])
    assert words[104] == code_of(verdict) and words[102] == 0  # result; trigger_ack dropped with the trigger
    assert coil == (verdict["verdict"] == "NG")
    assert refused.returncode != 0  # the station block is read-only for the PLC
    assert stats["handshake"]["acknowledged"] == 1 and stats["delivered"] >= 1
