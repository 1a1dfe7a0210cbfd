"""``edge-train --tune`` end to end: candidates exported, calibrated and benchmarked as subprocesses.

A budget no graph can meet must be refused in one line naming the fastest candidate's measured
latency (exit 2), which proves that every candidate went through export, calibration and the edge
benchmark; a generous budget must train a run whose run.yaml records the candidates and the choice.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from training.synthetic_strips import write_dataset

ROOT = Path(__file__).resolve().parents[2]


def _train(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "training.cli", "-q", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, check=False, timeout=1800)


def test_tune_measures_every_candidate_and_honours_the_budget(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    data = write_dataset(tmp_path / "strips", n_train=16, n_test_good=1, n_test_per_defect=1, height=64,
                         min_length=200, max_length=300, seed=5)
    refused = _train("--data", str(data), "--out", str(tmp_path / "none"), "--tune", "--max-latency-ms", "0.1")
    assert refused.returncode == 2, refused.stderr
    assert "no candidate meets --max-latency-ms 0.1" in refused.stderr and len(refused.stderr.splitlines()) == 1
    done = _train("--data", str(data), "--out", str(tmp_path / "run"), "--tune", "--max-latency-ms", "10000")
    assert done.returncode == 0, done.stderr
    run = yaml.safe_load((tmp_path / "run" / "run.yaml").read_text())
    rows = run["tune"]["candidates"]
    assert all(row["latency_p50_ms"] > 0 for row in rows)
    assert run["tune"]["chosen"] == run["input_choice"]["tuned"] in [row["name"] for row in rows]
    chosen = next(row for row in rows if row["name"] == run["tune"]["chosen"])
    assert run["config"]["input_size"] == chosen["settings"]["input_size"]
    assert run["config"]["layers"] == chosen["settings"]["layers"]
