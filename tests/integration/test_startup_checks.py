"""What start-up refuses, ``--validate-config`` refuses first, with the same one line and exit 2.

Each case is a config a new user or a copied unit file could bring; the daemon runs as a real
subprocess twice on it, once with ``--validate-config`` (what systemd's ``ExecStartPre=`` runs)
and once without, and both must print the same single line on stderr and exit 2. A camera
device that is merely late (a PoE camera still booting) is the one thing start-up does not
refuse: it is retried with the reconnect backoff, and the run goes on once it appears.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edge.tools.harness import DEMO_BUNDLE, DEMO_IMAGES, REPO, RunningDaemon, daemon_env, free_port

TLSIMU = Path(__import__("os").environ.get("EDGE_TEST_TLSIMU_CTI", "/nonexistent/TLSimu.cti"))


def base(tmp_path: Path) -> dict:
    return {"station": "t1", "bundle": str(DEMO_BUNDLE), "runtime": {"threads": 1},
            "camera": {"type": "sim", "source": str(DEMO_IMAGES), "max_frames": 1},
            "publish": {"endpoint": f"tcp://127.0.0.1:{free_port()}"}}


def a_file(tmp_path: Path) -> Path:
    """A regular file: a folder below it can be neither created nor written, even by root."""
    path = tmp_path / "plain-file"
    path.write_text("not a folder")
    return path


CASES = {
    "sim source missing": (lambda c, t: c["camera"].update(source=str(t / "no-such-folder")),
                           "sim camera: source {tmp}/no-such-folder does not exist"),
    "producer file missing": (lambda c, t: c.update(camera={"type": "gentl", "producers": [str(t / "vendor.cti")]}),
                              "gentl camera: producer {tmp}/vendor.cti does not exist"),
    "no producer on the path": (lambda c, t: c.update(camera={"type": "gentl"}),
                                ("gentl camera: no GenTL producer (.cti) found; set camera.producers or "
                                 "GENICAM_GENTL64_PATH (looked in: {tmp})")),
    "port above 65535": (lambda c, t: c["publish"].update(endpoint="tcp://127.0.0.1:99999"),
                         "publish.endpoint: tcp://127.0.0.1:99999: port '99999' is not a number from 1 to 65535"),
    "negative port": (lambda c, t: c["publish"].update(endpoint="tcp://127.0.0.1:-5"),
                      "publish.endpoint: tcp://127.0.0.1:-5: port '-5' is not a number from 1 to 65535"),
    "port not a number": (lambda c, t: c.update(control={"endpoint": "tcp://127.0.0.1:abc"}),
                          "control.endpoint: tcp://127.0.0.1:abc: port 'abc' is not a number from 1 to 65535"),
    "state_dir not writable": (lambda c, t: c.update(state_dir=str(a_file(t) / "state")),
                               "state_dir {tmp}/plain-file/state: cannot write there (Not a directory)"),
    "archive folder not writable": (
        lambda c, t: c.update(archive={"enabled": True, "directory": str(a_file(t) / "archive")}),
        "archive.directory {tmp}/plain-file/archive: cannot write there (Not a directory)"),
    "key folder missing": (
        lambda c, t: c["publish"].update(curve={"secret_key": str(t / "k.key_secret"),
                                                "allowed_clients": str(t / "allowed")}),
        "publish.curve: {tmp}/k.key_secret: no such key file"),
}


def run(config_path: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge", "--config", str(config_path), *args], cwd=REPO,
                          env=daemon_env(env), capture_output=True, text=True, timeout=120, check=False)


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """stderr without the JSON log lines (INFO from the steps that ran before the refusal)."""
    return [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("{")]


@pytest.mark.parametrize("case", list(CASES))
def test_validate_config_refuses_what_start_up_refuses_with_the_same_line(case, tmp_path):
    change, expected = CASES[case]
    config = base(tmp_path)
    change(config, tmp_path)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {"GENICAM_GENTL64_PATH": str(tmp_path)}  # a folder without any .cti
    validated, started = run(path, "--validate-config", env=env), run(path, env=env)
    assert (validated.returncode, started.returncode) == (2, 2), validated.stderr + started.stderr
    assert error_lines(validated) == error_lines(started), (validated.stderr, started.stderr)
    (line,) = error_lines(validated)
    assert expected.format(tmp=tmp_path) in line, line
    assert "Traceback" not in started.stderr


def test_a_valid_config_passes_and_says_how_long_a_stop_may_take(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**base(tmp_path), "state_dir": str(tmp_path / "state")}))
    result = run(path, "--validate-config", env={})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("config OK: station t1") and "stops within" in result.stdout


def test_a_camera_absent_at_boot_is_retried_with_the_backoff_and_the_run_goes_on(tmp_path):
    config = {"camera": {"type": "sim", "source": str(DEMO_IMAGES), "faults": {"absent_at_start_s": 1.0}},
              "watchdog": {"reconnect_delay_s": 0.2, "reconnect_max_delay_s": 0.4, "reconnect_budget": 50}}
    with RunningDaemon(tmp_path, config) as daemon:
        assert daemon.wait() == 0, daemon.log_tail()
    states = [m["camera"] for m in daemon.of("status")]
    assert states[0] == "down" and states[-1] == "up" and "gave_up" not in states
    assert "absent at start" in daemon.of("status")[0]["reason"]
    assert [m["seq"] for m in daemon.of("verdict")] == list(range(1, 16))


@pytest.mark.skipif(not TLSIMU.is_file(), reason="EDGE_TEST_TLSIMU_CTI (TLSimu.cti) not found")
def test_a_gentl_device_that_never_appears_ends_in_exit_1_after_the_budget_not_exit_2(tmp_path):
    config = {"camera": {"type": "gentl", "producers": [str(TLSIMU)], "serial_number": "not-on-this-producer"},
              "watchdog": {"reconnect_delay_s": 0.1, "reconnect_max_delay_s": 0.2, "reconnect_budget": 2}}
    with RunningDaemon(tmp_path, config) as daemon:
        assert daemon.wait() == 1, daemon.log_tail()
    assert [m["camera"] for m in daemon.of("status")][-1] == "gave_up"
    assert "no device matches serial_number='not-on-this-producer'" in daemon.stopped()["failure"]


def test_a_streak_of_error_frames_raises_a_status_and_its_end_another(tmp_path):
    source = tmp_path / "frames"
    source.mkdir()
    for index in range(3):
        (source / f"a{index}.png").write_bytes(b"\x89PNG not really")
    (source / "b.png").write_bytes((DEMO_IMAGES / "good" / "000.png").read_bytes())
    config = {"camera": {"type": "sim", "source": str(source)}, "watchdog": {"error_frames_alarm": 3}}
    with RunningDaemon(tmp_path, config) as daemon:
        assert daemon.wait() == 0, daemon.log_tail()
    streaks = [(m["error_frames_in_row"], m["reason"]) for m in daemon.of("status")]
    assert len(streaks) == 2 and streaks[0][0] == 3 and "a2.png" in streaks[0][1] and streaks[1] == (0, None)
    assert [m["subject"] for m in daemon.of("status")] == ["errors", "errors"]  # not news about the camera
    assert [m["error"] is not None for m in daemon.of("verdict")] == [True, True, True, False]


def test_a_frame_above_max_pixels_is_an_error_verdict_without_decoding(tmp_path):
    config = {"camera": {"type": "sim", "source": str(DEMO_IMAGES / "good"), "max_frames": 2, "max_pixels": 1000}}
    with RunningDaemon(tmp_path, config) as daemon:
        assert daemon.wait() == 0, daemon.log_tail()
    errors = [m["error"] for m in daemon.of("verdict")]
    assert len(errors) == 2 and all("frame too large: 256x256 = 0.1 Mpx, above camera.max_pixels" in e
                                    for e in errors)
    assert daemon.stopped()["camera"]["stats"]["decode_errors"] == 2


def test_each_verdict_counts_the_runs_verdicts_so_far_for_a_subscriber_that_joins_late(tmp_path):
    """What ``subscribe`` reads to say how many verdicts of a run it missed before it joined."""
    with RunningDaemon(tmp_path, {"camera": {"type": "sim", "source": str(DEMO_IMAGES), "max_frames": 3}}) as d:
        assert d.wait() == 0
    assert [m["counters"]["verdicts"] for m in d.of("verdict")] == [1, 2, 3]


@pytest.mark.skipif(not TLSIMU.is_file(), reason="EDGE_TEST_TLSIMU_CTI (TLSimu.cti) not found")
def test_a_feature_the_device_refuses_is_a_start_up_error_not_a_retry(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**base(tmp_path), "camera": {
        "type": "gentl", "producers": [str(TLSIMU)], "index": 0, "features": {"NoSuchFeature": 1}}}))
    result = run(path, env={})
    assert result.returncode == 2, result.stderr
    assert error_lines(result)[-1] == "edge-inspect: error: gentl camera: the device has no feature 'NoSuchFeature'"
