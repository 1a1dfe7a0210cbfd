"""The view process: its command-line rules, its token, its image URLs, and latest-only WebSockets.

The view runs as a real subprocess (``python -m edge view``) subscribed to a real ZeroMQ
publisher in this process, which publishes verdicts of the demo bundle's real inspections; the
test's WebSocket and HTTP clients are real aiohttp and urllib clients on loopback.
"""

from __future__ import annotations

import asyncio
import json
import struct
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from edge.cameras.base import Frame
from edge.model.bundle import load_bundle
from edge.model.imageio import encode_jpeg, list_images, read_image
from edge.model.inspector import Inspector
from edge.tools.harness import daemon_env, free_port
from edge.tools.view_harness import RunningView
from edge.wire.publisher import Publisher
from edge.wire.verdict import build_verdict, encode_verdict

aiohttp = pytest.importorskip("aiohttp", reason="the view extra (pip install '.[view]') is not installed")

DEMO = Path(__file__).resolve().parents[4] / "edge" / "demo"
TOKEN = "s3cret-token-for-tests"
CLOSED = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)


def run_cli(*args: str, code: str = "") -> subprocess.CompletedProcess[str]:
    script = f"{code}\nfrom edge.cli import main\nmain({list(args)!r})"
    return subprocess.run([sys.executable, "-c", script], env=daemon_env(), capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.fixture(scope="module")
def demo_parts() -> list[tuple[Frame, object]]:
    inspector = Inspector(load_bundle(DEMO / "bundle"), threads=1)
    parts = []
    for index, path in enumerate(list_images(DEMO / "images")):
        image = read_image(path)
        parts.append((Frame(image=image, frame_id=index + 1, source=str(path)), inspector.inspect(image)))
    return parts


def publish(publisher: Publisher, frame: Frame, inspection, seq: int, image_jpeg: bytes) -> None:
    message = build_verdict(station="st1", seq=seq, frame=frame, bundle_id="demo", inspection=inspection,
                            counters={"frames": seq, "verdicts": seq, "errors": 0}, has_map=True, has_image=True,
                            run_id="r1", restart=seq == 1)
    publisher.send(encode_verdict(message, inspection.map_png(), image_jpeg=image_jpeg))


def test_without_the_view_extra_the_command_names_it_and_exits_2():
    result = run_cli("view", "--connect", "tcp://127.0.0.1:1", code="import sys; sys.modules['aiohttp'] = None")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'edge-inspect[view]'" in lines[0]


@pytest.mark.parametrize(("args", "message"), [
    (["--listen", "0.0.0.0:8080"], "needs --token or --token-file"),
    (["--listen", "8080"], "give HOST:PORT"),
    (["--token", "short"], "at least 8 characters"),
    (["--client-key", "x.key_secret"], "give both --server-key and --client-key"),
])
def test_operator_mistakes_are_one_line_and_exit_2(args, message):
    result = run_cli("view", "--connect", "tcp://127.0.0.1:1", *args)
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_taken_port_is_one_line_and_exit_2():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("view", "--connect", "tcp://127.0.0.1:1", "--listen", f"127.0.0.1:{port}")
    assert result.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in result.stderr.splitlines()[-1]


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def test_with_a_token_every_route_needs_it_and_a_cookie_keeps_it(tmp_path, demo_parts):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with Publisher(endpoint, linger_ms=0) as publisher, RunningView([endpoint], tmp_path, token=TOKEN) as view:
        assert publisher.wait_for_subscriber(30)
        frame, inspection = demo_parts[0]
        jpeg = encode_jpeg(frame.image, 128, 80)
        publish(publisher, frame, inspection, 1, jpeg)
        view.wait_state(lambda s: "st1" in s["states"], what="the first verdict")
        for path in ("/", "/station/st1", "/static/station.js", "/api/state", "/img/st1/1/frame.jpg"):
            assert get(view.url(path))[0] == 401, path
            assert get(view.url(path + ("&" if "?" in path else "?") + "token=wrong-token-x"))[0] == 401
        status, _, headers = get(view.url(f"/?token={TOKEN}"))
        assert status == 200 and "edge_view_token=" in headers["Set-Cookie"] and "HttpOnly" in headers["Set-Cookie"]
        cookie = {"Cookie": f"edge_view_token={TOKEN}"}
        status, body, _ = get(view.url("/img/st1/1/frame.jpg"), cookie)
        assert status == 200 and body == jpeg

        async def websocket(headers: dict[str, str]) -> int:
            async with aiohttp.ClientSession() as session:
                try:
                    async with session.ws_connect(view.url("/ws?station=st1"), headers=headers) as ws:
                        message = await ws.receive(timeout=30)
                        return 101 if message.type == aiohttp.WSMsgType.TEXT else -1
                except aiohttp.WSServerHandshakeError as exc:
                    return exc.status

        assert asyncio.run(websocket({})) == 401
        assert asyncio.run(websocket(cookie)) == 101
        assert asyncio.run(websocket({**cookie, "Origin": "http://evil.example"})) == 403


def test_image_urls_serve_the_parts_still_in_the_history(tmp_path, demo_parts):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with Publisher(endpoint, linger_ms=0) as publisher, RunningView([endpoint], tmp_path, ["--history", "3"]) as view:
        assert publisher.wait_for_subscriber(30)
        sent = []
        for seq, (frame, inspection) in enumerate(demo_parts[6:11], start=1):  # five good parts: no NG kept
            sent.append(encode_jpeg(frame.image, 96, 70))
            publish(publisher, frame, inspection, seq, sent[-1])
        state = view.wait_state(lambda s: "st1" in s["states"] and s["states"]["st1"]["total"]["parts"] == 5)
        assert [p["part"] for p in state["states"]["st1"]["history"]] == [3, 4, 5]
        assert get(view.url("/img/st1/5/frame.jpg"))[:2] == (200, sent[4])
        status, body, headers = get(view.url("/img/st1/5/map.png"))
        assert status == 200 and body.startswith(b"\x89PNG") and headers["Content-Type"] == "image/png"
        assert get(view.url("/img/st1/1/frame.jpg"))[0] == 404  # left the history


def read_update(data: bytes) -> dict:
    (length,) = struct.unpack_from(">I", data, 0)
    return json.loads(data[4:4 + length])["state"]


def test_a_client_that_stops_reading_skips_updates_and_then_gets_the_latest(tmp_path, demo_parts):
    """Frames of ~0.6 MB: a client that reads nothing has its socket full after a few updates (loopback
    buffers hold a few MB), and from then on the view keeps one pending update for it, not a queue."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8)  # incompressible: a big JPEG
    big = encode_jpeg(noise, 1024, 90)
    total = 60
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with Publisher(endpoint, sndhwm=100_000, linger_ms=0) as publisher, RunningView([endpoint], tmp_path) as view:
        assert publisher.wait_for_subscriber(30)
        frame, inspection = demo_parts[0]
        publish(publisher, frame, inspection, 1, big)
        view.wait_state(lambda s: "st1" in s["states"], what="the first verdict")

        async def clients() -> tuple[list[int], list[int], dict]:
            async with aiohttp.ClientSession() as session:
                slow = await session.ws_connect(view.url("/ws?station=st1"), max_msg_size=0)
                fast = await session.ws_connect(view.url("/ws?station=st1"), max_msg_size=0)
                fast_seqs: list[int] = []
                for seq in range(1, total + 1):  # paced by the fast client: it reads each before the next
                    if seq > 1:  # seq 1 is the state the view sends on connect
                        publish(publisher, frame, inspection, seq, big)
                    while not fast_seqs or fast_seqs[-1] != seq:
                        message = await fast.receive(timeout=60)
                        assert message.type not in CLOSED, message
                        if message.type == aiohttp.WSMsgType.BINARY:
                            fast_seqs.append(read_update(message.data)["latest"]["seq"])
                state = view.state()
                slow_seqs: list[int] = []
                while not slow_seqs or slow_seqs[-1] != total:  # now the slow one reads what is left
                    message = await slow.receive(timeout=60)
                    assert message.type not in CLOSED, message
                    if message.type == aiohttp.WSMsgType.BINARY:
                        slow_seqs.append(read_update(message.data)["latest"]["seq"])
                await slow.close()
                await fast.close()
                return fast_seqs, slow_seqs, state

        fast_seqs, slow_seqs, state = asyncio.run(clients())
    assert state["states"]["st1"]["total"]["parts"] == total  # the view itself missed nothing
    assert slow_seqs[-1] == total and len(slow_seqs) < total / 2  # it skipped to the latest, no backlog
    slow_stats = max(state["clients"], key=lambda c: c["skipped"])
    assert slow_stats["skipped"] > 0 and slow_stats["sent"] < total
    assert fast_seqs == list(range(1, total + 1))  # the state on connect, then one update per verdict


def test_the_daemon_never_loads_the_web_server_and_the_view_never_loads_a_model():
    code = ("import json, sys\n"
            "import edge.cli, edge.daemon.supervisor\n"
            "daemon = sorted(m for m in sys.modules if m.split('.')[0] == 'aiohttp')\n"
            "import edge.view.server, edge.view.cli\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('cv2', 'onnxruntime', 'openvino'))\n"
            "print(json.dumps([daemon, heavy]))\n")
    fresh = subprocess.run([sys.executable, "-c", code.replace("import edge.cli, edge.daemon.supervisor\n", "")],
                           env=daemon_env(), capture_output=True, text=True, check=True)
    assert json.loads(fresh.stdout)[1] == []  # the view's own modules, alone: no OpenCV, no engine
    both = subprocess.run([sys.executable, "-c", code], env=daemon_env(), capture_output=True, text=True, check=True)
    assert json.loads(both.stdout)[0] == []  # the daemon and the command line: no aiohttp


def test_an_encrypted_stream_reaches_the_view_with_keys_and_not_without(tmp_path, demo_parts):
    from edge.control.curve import CurveServerConfig
    from tests.unit.edge.control.curve_keys import make_keys

    (tmp_path / "keys").mkdir()
    keys = make_keys(tmp_path / "keys")
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    curve = CurveServerConfig(secret_key=keys.server_secret, allowed_clients=keys.allowed_clients)
    keyed = ["--server-key", str(keys.server_public), "--client-key", str(keys.client_secret)]
    with Publisher(endpoint, linger_ms=0, curve=curve) as publisher, \
            RunningView([endpoint], tmp_path / "keyed", keyed) as view, \
            RunningView([endpoint], tmp_path / "plain") as plain:
        assert publisher.wait_for_subscriber(30)  # the keyed view's subscription (a plain one never completes)
        frame, inspection = demo_parts[0]
        publish(publisher, frame, inspection, 1, encode_jpeg(frame.image, 64, 70))
        view.wait_state(lambda s: "st1" in s["states"], what="the encrypted verdict")
        publisher.wait_for_subscriber(0)  # read the subscriptions that arrived meanwhile
        assert publisher.subscriptions == 4  # the keyed view's four topics; the plain view was refused
        assert plain.state()["messages"]["received"] == 0
