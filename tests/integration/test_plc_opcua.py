"""The OPC UA output against a real asyncua client: logins, the Trigger method, one notification per part."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from edge.tools.harness import DEMO_IMAGES, RunningDaemon, free_port

asyncua = pytest.importorskip("asyncua", reason="the plc extra (pip install 'edge-inspect[plc]') is not installed")
from asyncua import Client, ua

N_PARTS = 12
DEADLINE_S = 180


class Notifications:
    def __init__(self) -> None:
        self.values: list[dict[str, Any]] = []

    def datachange_notification(self, _node: Any, value: Any, _data: Any) -> None:
        if value:
            self.values.append(json.loads(value))


async def play(url: str, station: str, user: str | None, password: str | None) -> tuple[list[dict[str, Any]], int]:
    client = Client(url, timeout=30)
    if user is not None:
        client.set_user(user)
        client.set_password(password or "")
    handler = Notifications()
    async with client:
        idx = await client.get_namespace_index("urn:edge-inspect")
        node = await client.nodes.objects.get_child([f"{idx}:{station}"])
        heartbeat = await node.get_child([f"{idx}:Heartbeat"])
        subscription = await client.create_subscription(10, handler)
        await subscription.subscribe_data_change(await node.get_child([f"{idx}:LastVerdict"]), queuesize=0)
        for part in range(1, N_PARTS + 1):
            await node.call_method(f"{idx}:Trigger", ua.Variant(1000 + part, ua.VariantType.UInt32))
        deadline = time.monotonic() + DEADLINE_S
        while len(handler.values) < N_PARTS and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # the client's wait for notifications, bounded by the deadline
        return handler.values, int(await heartbeat.read_value())


async def refused(url: str) -> bool:
    try:
        async with Client(url, timeout=30):
            return False
    except ua.UaStatusCodeError:
        return True


def test_a_user_triggers_parts_by_method_and_gets_one_notification_per_verdict_anonymous_refused(tmp_path) -> None:
    users = tmp_path / "users"
    users.write_text("line-plc:s3cret\n")
    users.chmod(0o600)
    url = f"opc.tcp://127.0.0.1:{free_port()}/edge-inspect/"
    config = {"camera": {"type": "sim", "source": str(DEMO_IMAGES), "trigger": "software", "loop": True},
              "pipeline": {"acquisition": "on_demand"},
              "outputs": {"plc": {"enabled": True, "opcua": {"endpoint": url, "users_file": str(users)}}}}
    with RunningDaemon(tmp_path / "d", config) as daemon:
        daemon.wait_for(lambda d: bool(d.events("started")), DEADLINE_S, "the started event")
        assert asyncio.run(refused(url))  # anonymous is off unless configured
        notified, heartbeat = asyncio.run(play(url, daemon.config["station"], "line-plc", "s3cret"))
        daemon.wait_for(lambda d: len(d.of("verdict")) >= N_PARTS, DEADLINE_S, "every verdict")
        assert daemon.terminate() == 0
        verdicts = daemon.of("verdict")
        stats = daemon.stopped()["outputs"]["plc_opcua"]
    assert [n["part_id"] for n in notified] == [1000 + p for p in range(1, N_PARTS + 1)]
    by_seq = {v["seq"]: v for v in verdicts}
    for n in notified:
        v = by_seq[n["seq"]]
        assert (v["part_id"], v["verdict"], v["score"]) == (n["part_id"], n["verdict"], n["score"])
    assert len(verdicts) == N_PARTS and heartbeat >= N_PARTS
    assert stats["undelivered"] == {} and stats["delivered"] >= N_PARTS
