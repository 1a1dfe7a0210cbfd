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
    """Whether a plain client (no security, anonymous) is turned away: no such endpoint or login refused."""
    try:
        async with Client(url, timeout=30):
            return False
    except ua.UaError:  # a status code (BadIdentityTokenInvalid) or no endpoint without security at all
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


async def make_certificate(folder, name: str) -> tuple[Any, Any]:
    """A self-signed application certificate and key, as an integrator makes them with asyncua's tools.

    The tool writes the certificate in DER whatever the file is called; the server is given it under a
    ``.pem`` name on purpose (it must tell the encoding from the content), the test's client a ``.der`` copy.
    """
    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    folder.mkdir(parents=True, exist_ok=True)
    key, cert = folder / f"{name}.key.pem", folder / f"{name}.cert.pem"
    await setup_self_signed_certificate(key, cert, f"urn:edge-inspect:test:{name}", "127.0.0.1",
                                        [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH],
                                        {"commonName": name, "organizationName": "edge-inspect tests"})
    der = folder / f"{name}.der"
    der.write_bytes(cert.read_bytes())
    return der, key


async def read_with_certificate(url: str, station: str, cert: Any, key: Any, server_cert: Any) -> int:
    """Log in with a client certificate on the signed and encrypted endpoint; the heartbeat counter read."""
    client = Client(url, timeout=30)
    client.application_uri = f"urn:edge-inspect:test:{cert.stem}"
    await client.set_security_string(f"Basic256Sha256,SignAndEncrypt,{cert},{key},{server_cert}")
    await client.load_client_certificate(str(cert))  # the same certificate as the X509 identity token
    await client.load_private_key(str(key))
    async with client:
        idx = await client.get_namespace_index("urn:edge-inspect")
        node = await client.nodes.objects.get_child([f"{idx}:{station}"])
        return int(await (await node.get_child([f"{idx}:Heartbeat"])).read_value())


async def certificate_refused(url: str, cert: Any, key: Any, server_cert: Any) -> bool:
    try:
        await read_with_certificate(url, "station1", cert, key, server_cert)
    except (ua.UaError, OSError, asyncio.TimeoutError, TimeoutError):
        return True
    return False


def test_a_trusted_client_certificate_logs_in_encrypted_and_an_unknown_one_and_anonymous_do_not(tmp_path) -> None:
    pki = tmp_path / "pki"
    server_cert, server_key = asyncio.run(make_certificate(pki / "server", "station"))
    trusted_cert, trusted_key = asyncio.run(make_certificate(pki / "plc", "plc"))
    stranger_cert, stranger_key = asyncio.run(make_certificate(pki / "stranger", "stranger"))
    (pki / "trusted").mkdir()
    (pki / "trusted" / "plc.der").write_bytes(trusted_cert.read_bytes())
    url = f"opc.tcp://127.0.0.1:{free_port()}/edge-inspect/"
    config = {"camera": {"type": "sim", "source": str(DEMO_IMAGES), "loop": True, "fps": 5},
              "outputs": {"plc": {"enabled": True, "opcua": {
                  "endpoint": url, "certificate": str(server_cert.with_suffix(".cert.pem")),
                  "private_key": str(server_key),
                  "trusted_certificates": str(pki / "trusted")}}}}
    with RunningDaemon(tmp_path / "d", config) as daemon:
        daemon.wait_for(lambda d: len(d.of("verdict")) >= 3, DEADLINE_S, "verdicts")
        station = daemon.config["station"]
        heartbeat = asyncio.run(read_with_certificate(url, station, trusted_cert, trusted_key, server_cert))
        assert heartbeat >= 1
        assert asyncio.run(certificate_refused(url, stranger_cert, stranger_key, server_cert))
        assert asyncio.run(refused(url))  # no NoSecurity endpoint and no anonymous login with a certificate set
        assert daemon.terminate() == 0
