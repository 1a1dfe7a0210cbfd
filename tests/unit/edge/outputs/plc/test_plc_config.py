"""The outputs.plc section: refused in one line without the plc extra, and safe by default."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge.daemon.config import ConfigError, load_config
from edge.tools.harness import DEMO_BUNDLE, DEMO_IMAGES, daemon_env

BASE = f"bundle: {DEMO_BUNDLE}\ncamera: {{type: sim, source: {DEMO_IMAGES}}}\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "station.yaml"
    path.write_text(BASE + text)
    return path


def test_a_plc_section_without_the_extra_is_refused_by_validate_config_in_one_line_naming_pip(tmp_path) -> None:
    # A pymodbus that cannot be imported, first on the path: what a plain install looks like to the daemon.
    hidden = tmp_path / "hidden" / "pymodbus"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('not installed (test)')\n")
    config = write(tmp_path, "outputs:\n  plc:\n    enabled: true\n    modbus: {role: server}\n")
    env = daemon_env()
    env["PYTHONPATH"] = f"{hidden.parent}:{env['PYTHONPATH']}"
    proc = subprocess.run([sys.executable, "-m", "edge", "--config", str(config), "--validate-config"],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "station.yaml:4: outputs.plc:" in lines[0] and "pip install 'edge-inspect[plc]'" in lines[0]


def test_with_the_extra_the_same_config_validates_and_names_the_outputs(tmp_path) -> None:
    config = write(tmp_path, "outputs:\n  plc:\n    enabled: true\n    modbus: {role: client, host: 10.1.2.3}\n")
    proc = subprocess.run([sys.executable, "-m", "edge", "--config", str(config), "--validate-config"],
                          capture_output=True, text=True, env=daemon_env(), timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "outputs plc (modbus client)" in proc.stdout


def test_defaults_listen_on_loopback_and_opcua_admits_nobody_unless_told(tmp_path) -> None:
    config = load_config(write(tmp_path, "outputs:\n  plc:\n    modbus: {}\n    opcua: {anonymous: true}\n"))
    assert config.outputs.plc.modbus.host == "127.0.0.1" and config.outputs.plc.modbus.resolved_port == 5020
    assert "//127.0.0.1:" in config.outputs.plc.opcua.endpoint
    with pytest.raises(ConfigError, match=r"outputs.plc.opcua: set anonymous: true, users_file or "
                                          r"trusted_certificates"):
        load_config(write(tmp_path, "outputs:\n  plc:\n    opcua: {}\n"))


def test_a_users_file_readable_by_others_is_refused(tmp_path) -> None:
    users = tmp_path / "users"
    users.write_text("plc:secret\n")
    users.chmod(0o644)
    text = f"outputs:\n  plc:\n    opcua: {{users_file: {users}}}\n"
    with pytest.raises(ConfigError, match="readable by group or others"):
        load_config(write(tmp_path, text))
    users.chmod(0o600)
    assert load_config(write(tmp_path, text)).outputs.plc.opcua.users_file == users
