"""``edge-inspect camera-bench`` prints its figures from a real daemon run, and fails when a figure does."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge.tools.harness import REPO, daemon_env

TLSIMU = Path(os.environ.get("EDGE_TEST_TLSIMU_CTI", REPO / "build" / "gentl" / "TLSimu.cti"))


def bench(*args: str, cwd: Path) -> tuple[int, dict, str]:
    proc = subprocess.run([sys.executable, "-m", "edge", "camera-bench", *args], cwd=cwd, env=daemon_env(),
                          capture_output=True, text=True, timeout=120, check=False)
    figure = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc.returncode, figure, proc.stderr


def test_help_lists_the_three_benches():
    proc = subprocess.run([sys.executable, "-m", "edge", "camera-bench", "--help"], env=daemon_env(),
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0
    assert all(name in proc.stdout for name in ("viky", "triggers", "device-loss"))


def test_device_loss_bench_announces_each_loss_down_then_up_and_loses_no_verdict(tmp_path):
    code, figure, err = bench("device-loss", "--frames", "5", "--lose-after", "2", "--down-for", "0.3",
                              "--reconnect-delay", "0.1", "--fps", "0", cwd=tmp_path)
    assert code == 0, err
    assert figure["verdicts"] == 5 and figure["seq_gaps"] == [] and figure["frame_ids_consecutive"]
    assert figure["reconnects"] == 2 and figure["exit_code"] == 0  # lost after frames 2 and 4
    # Each loss is announced down, then up when the camera is back. Status messages go out at once and
    # acquisition runs ahead of publishing, so where they fall between verdicts depends on the machine's
    # speed: only their order is asserted, and that a pause in the verdicts holds a status message.
    # A failed retry while the device is still away repeats "down" (how often depends on timing).
    states = [e["camera"] for e in figure["timeline"] if e["kind"] == "status"]
    assert [state for state, _ in itertools.groupby(states)] == ["down", "up", "down", "up"]
    assert figure["pauses_with_status"] and all(p["status"] for p in figure["pauses_with_status"])


def test_device_loss_bench_without_return_ends_in_exit_1_after_the_budget(tmp_path):
    code, figure, err = bench("device-loss", "--never-returns", "--lose-after", "2", "--reconnect-delay", "0.05",
                              "--max-delay", "0.1", "--budget", "3", "--fps", "0", cwd=tmp_path)
    assert code == 0, err  # the figure shows what was expected: exit 1 from the daemon
    states = [e["camera"] for e in figure["timeline"] if e["kind"] == "status"]
    assert figure["exit_code"] == 1 and states == ["down", "down", "down", "gave_up"]


@pytest.mark.skipif(not TLSIMU.is_file(), reason=f"no TLSimu.cti at {TLSIMU} (set EDGE_TEST_TLSIMU_CTI)")
def test_trigger_bench_counts_one_verdict_per_trigger(tmp_path):
    pytest.importorskip("harvesters", reason="needs the 'camera' extra")
    code, figure, err = bench("triggers", "-n", "5", "--cti", str(TLSIMU), cwd=tmp_path)
    assert code == 0, err
    assert (figure["triggers_sent"], figure["verdicts"], figure["seq_gaps"]) == (5, 5, [])
