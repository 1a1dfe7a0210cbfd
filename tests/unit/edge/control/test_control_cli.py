"""``edge-inspect keygen`` says where each file goes; ``edge-inspect ctl`` prints the reply and exits 0/1/2."""

from __future__ import annotations

import json
import threading

import pytest
from click.testing import CliRunner

from edge.cli import main
from edge.control import COMMANDS
from edge.control.keys import load_public_key, load_secret_keypair
from edge.control.server import ControlConfig, ControlServer
from tests.unit.edge.control.curve_keys import CurveKeys, make_keys

TIMEOUT = "1"


@pytest.fixture
def keys(tmp_path) -> CurveKeys:
    return make_keys(tmp_path)


@pytest.fixture
def calls() -> list[tuple[str, dict]]:
    return []


@pytest.fixture
def server(keys, calls):
    def status(args: dict) -> dict:
        calls.append(("status", args))
        return {"camera": "sim", "paused": False}

    def pause(args: dict) -> dict:
        calls.append(("pause", args))
        raise RuntimeError("already paused")

    config = ControlConfig(enabled=True, endpoint="tcp://127.0.0.1:0", curve=keys.server_config())
    control = ControlServer(config, {"status": status, "pause": pause}, threading.Event())
    control.start()
    yield control
    control.close()


def ctl(server: ControlServer, keys: CurveKeys, *extra: str, client_secret=None):
    args = ["ctl", server.bound_endpoint, *extra, "--server-key", str(keys.server_public),
            "--client-key", str(client_secret or keys.client_secret), "--timeout", TIMEOUT]
    return CliRunner().invoke(main, args)


def test_keygen_writes_the_pair_and_says_what_to_do_with_each_file(tmp_path):
    result = CliRunner().invoke(main, ["keygen", str(tmp_path / "keys"), "--name", "mes-bridge"])
    assert result.exit_code == 0, result.output
    public_path, secret_path = tmp_path / "keys" / "mes-bridge.key", tmp_path / "keys" / "mes-bridge.key_secret"
    assert load_secret_keypair(secret_path)[0] == load_public_key(public_path)
    assert f"public key: {load_public_key(public_path).decode()}" in result.output
    assert "allowed_clients" in result.output and "never copy it" in result.output


def test_keygen_refuses_to_overwrite_without_force(tmp_path):
    runner = CliRunner()
    assert runner.invoke(main, ["keygen", str(tmp_path), "--name", "line3"]).exit_code == 0
    first = load_public_key(tmp_path / "line3.key")
    refused = runner.invoke(main, ["keygen", str(tmp_path), "--name", "line3"])
    assert refused.exit_code == 2 and "--force" in refused.output
    assert load_public_key(tmp_path / "line3.key") == first
    assert runner.invoke(main, ["keygen", str(tmp_path), "--name", "line3", "--force"]).exit_code == 0
    assert load_public_key(tmp_path / "line3.key") != first


def test_ctl_prints_the_reply_and_exits_0(server, keys, calls):
    result = ctl(server, keys, "status", "--arg", "verbose=true", "--arg", "n=3", "--arg", "who=tech")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"ok": True, "result": {"camera": "sim", "paused": False}}
    assert calls == [("status", {"verbose": True, "n": 3, "who": "tech"})]


def test_ctl_exits_1_when_the_daemon_answers_with_an_error(server, keys):
    result = ctl(server, keys, "pause")
    assert result.exit_code == 1
    assert "already paused" in json.loads(result.output)["error"]


def test_ctl_refuses_an_unknown_command_before_sending_it_and_lists_the_known_ones(server, keys, calls):
    result = ctl(server, keys, "statuss")
    assert result.exit_code == 2
    assert result.output.strip() == ("edge-inspect ctl: error: unknown command 'statuss' "
                                     f"(known: {', '.join(COMMANDS)})")
    assert calls == []  # nothing was sent: no reply timeout to wait out


def test_the_daemon_answers_exactly_the_commands_ctl_offers(tmp_path):
    from edge.daemon.config import load_config
    from edge.daemon.supervisor import InspectionDaemon
    from edge.tools.harness import DEMO_BUNDLE, DEMO_IMAGES

    config = load_config(None, {"bundle": str(DEMO_BUNDLE), "camera.type": "sim", "camera.source": str(DEMO_IMAGES)})
    assert tuple(InspectionDaemon(config, threading.Event()).handlers()) == COMMANDS


def test_ctl_with_a_key_that_is_not_allowed_exits_2_with_a_clear_message(server, keys, calls):
    result = ctl(server, keys, "pause", client_secret=keys.stranger_secret)
    assert result.exit_code == 2
    assert "no reply from" in result.output and "key is not allowed" in result.output
    assert calls == []


def test_ctl_with_a_missing_key_file_exits_2(server, keys, tmp_path):
    result = ctl(server, keys, "status", client_secret=tmp_path / "absent.key_secret")
    assert result.exit_code == 2 and "absent.key_secret: no such key file" in result.output


def test_ctl_rejects_an_argument_without_equals(server, keys):
    result = ctl(server, keys, "status", "--arg", "verbose")
    assert result.exit_code == 2 and "KEY=VALUE" in result.output
