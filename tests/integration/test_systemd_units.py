"""The shipped systemd units pass systemd's own parser (``systemd-analyze verify``), warnings included.

``systemd-analyze verify`` exits 0 on a unit with an unknown directive or a bad value: it prints
``FILE:LINE: Unknown key ...`` / ``Failed to parse ..., ignoring`` and systemd would then run the
service without that setting (no watchdog, no sandbox). So the check fails on any output line that
names our unit, not only on the exit status, and negative tests prove it catches both kinds.

verify also insists that every ``Exec*=`` binary exists and is executable, and
``/opt/edge/venv/bin/edge-inspect`` is not installed here. ``--root=`` does not fit: it moves the
unit search path too, so the standard targets (``sysinit.target``) are not found. Instead each
test checks a copy of the unit in ``tmp_path`` whose ``Exec*=`` paths point at executable stubs
of the same name in ``tmp_path``; nothing else in the unit is changed.

systemd-analyze missing: the test skips on a workstation; under CI (``CI`` set), where ``.ci/run``
installs it, tests/conftest.py turns that skip into a failure, as for every other test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SINGLE = REPO / "systemd" / "edge-inspect.service"
TEMPLATE = REPO / "systemd" / "edge-inspect@.service"
INSTANCE_NAME = "edge-inspect@line1.service"
# Exec*= lines: the command, after systemd's optional prefixes (-, @, :, +, !, |).
EXEC_COMMAND = re.compile(r"^(Exec\w+=[-@:+!|]*)(/\S+)", re.MULTILINE)


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze not installed (apt-get install systemd; .ci/run installs it)")
    return path


def stage(text: str, name: str, tmp_path: Path) -> Path:
    """Write ``text`` as unit ``name`` in tmp_path, its Exec*= commands replaced by stubs that exist."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)

    def to_stub(match: re.Match[str]) -> str:
        stub = bin_dir / Path(match.group(2)).name
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
        return match.group(1) + str(stub)

    unit_dir = tmp_path / "units"
    unit_dir.mkdir(exist_ok=True)
    unit = unit_dir / name
    unit.write_text(EXEC_COMMAND.sub(to_stub, text))
    return unit


def verify_problems(systemd_analyze: str, unit: Path) -> list[str]:
    """Every output line of ``systemd-analyze verify`` that names the unit, plus a non-zero exit."""
    env = {**os.environ, "SYSTEMD_LOG_COLOR": "0", "LC_ALL": "C"}
    result = subprocess.run(
        [systemd_analyze, "verify", "--man=no", str(unit)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    output = (result.stdout + result.stderr).splitlines()
    problems = [line for line in output if unit.name in line]
    if result.returncode != 0:
        problems.append(f"exit status {result.returncode}: " + " | ".join(output))
    return problems


def directives(unit: Path) -> dict[str, list[str]]:
    """``Key -> [values]`` of a unit file (keys may repeat, e.g. Environment=)."""
    found: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_single_station_unit_verifies_clean(systemd_analyze: str, tmp_path: Path) -> None:
    unit = stage(SINGLE.read_text(), SINGLE.name, tmp_path)
    assert verify_problems(systemd_analyze, unit) == []


def test_station_template_verifies_clean_as_an_instance(systemd_analyze: str, tmp_path: Path) -> None:
    # A template is only loaded through an instance; %i then expands to "line1".
    unit = stage(TEMPLATE.read_text(), INSTANCE_NAME, tmp_path)
    assert verify_problems(systemd_analyze, unit) == []


@pytest.mark.parametrize(("good", "bad"), [
    ("WatchdogSec=30", "WatchdogSecs=30"),  # typo'd directive: "Unknown key", exit status 0
    ("Restart=on-failure", "Restart=sometimes"),  # bad value: "Failed to parse", exit status 0
    ("StartLimitBurst=5", "StartLimitBurts=5"),  # typo in [Unit]
])
def test_verify_check_catches_a_warning_in_the_template(
    systemd_analyze: str, tmp_path: Path, good: str, bad: str,
) -> None:
    text = TEMPLATE.read_text()
    assert f"\n{good}\n" in text
    unit = stage(text.replace(f"\n{good}\n", f"\n{bad}\n"), INSTANCE_NAME, tmp_path)
    problems = verify_problems(systemd_analyze, unit)
    assert problems, f"systemd-analyze verify did not report {bad!r}"
    assert any(bad.split("=")[1] in line or bad.split("=")[0] in line for line in problems)


def test_verify_check_catches_a_missing_executable(systemd_analyze: str, tmp_path: Path) -> None:
    unit = stage(SINGLE.read_text(), SINGLE.name, tmp_path)
    missing = tmp_path / "not-installed" / "edge-inspect"
    unit.write_text(EXEC_COMMAND.sub(lambda m: m.group(1) + str(missing), unit.read_text()))
    problems = verify_problems(systemd_analyze, unit)
    assert any(line.startswith("exit status") for line in problems)
    assert any(str(missing) in line for line in problems)


def test_template_differs_from_the_single_unit_only_in_per_station_lines() -> None:
    single, template = directives(SINGLE), directives(TEMPLATE)
    assert set(template) - set(single) == {"SyslogIdentifier"}
    assert set(single) <= set(template)
    drifted = {k: (single[k], template[k]) for k in single
               if single[k] != template[k] and not any("%i" in v for v in template[k])}
    assert drifted == {}
    for key in ("ExecStartPre", "ExecStart", "StateDirectory", "LogsDirectory", "RuntimeDirectory", "WorkingDirectory"):
        assert all("%i" in v for v in template[key]), key


@pytest.mark.parametrize("unit", [SINGLE, TEMPLATE], ids=lambda p: p.name)
def test_unit_is_supervised_and_sandboxed_without_hiding_the_cameras(unit: Path) -> None:
    d = directives(unit)
    assert d["Type"] == ["notify"] and d["NotifyAccess"] == ["main"] and d["WatchdogSec"]
    # The sandbox must leave USB3 Vision devices visible and JIT pages allowed.
    for forbidden in ("PrivateDevices", "MemoryDenyWriteExecute", "DeviceAllow", "DevicePolicy", "ProtectClock"):
        assert forbidden not in d, forbidden
    assert set(d["RestrictAddressFamilies"][0].split()) >= {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    assert d["CapabilityBoundingSet"] == [""]
    # The config systemd validates before starting is the one the daemon then runs with.
    (pre,), (start,) = d["ExecStartPre"], d["ExecStart"]
    assert pre == start + " --validate-config"
