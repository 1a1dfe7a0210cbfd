"""End to end on real images, through the console commands a user types.

train (a few bottle images) -> export -> calibrate -> eval on the full bottle test set -> the
daemon over the same 83 images with a real ZeroMQ subscriber: every frame gets one verdict, the
sequence has no gap, and each decision equals the one edge-eval made at the same threshold.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge.model.bundle import load_bundle
from edge.tools.harness import RunningDaemon, free_port

BIN = Path(sys.executable).parent


def cli(name: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([str(BIN / name), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, bottle):
    work = tmp_path_factory.mktemp("pipeline")
    # Seeded split and coreset on the CPU: the same run, hence the same figures, every time.
    cli("edge-train", "--data", bottle, "--out", work / "run", "--max-images", 16, "--coreset-ratio", 0.05,
        "--device", "cpu", "--seed", 0)
    cli("edge-export", work / "run", "--out", work / "bundle")
    cli("edge-calibrate", work / "bundle", "--target-frr", 0.05)  # 21 held-out images: 1/0.05 = 20 needed
    report = cli("edge-eval", work / "bundle", "--data", bottle, "--json", work / "eval.json")
    return work, json.loads((work / "eval.json").read_text()), report.stdout


def test_eval_reports_every_figure_per_defect_type_and_overall(pipeline, bottle):
    _, figures, stdout = pipeline
    assert figures["n_images"] == 83
    for key in ("image_auroc", "pixel_auroc", "f1", "false_reject_rate", "escape_rate", "n_images"):
        assert key in figures
        for per_type in figures["per_defect_type"].values():
            assert key in per_type
    assert set(figures["per_defect_type"]) == {"broken_large", "broken_small", "contamination"}
    # Even 16 training images separate bottle defects far better than chance.
    assert figures["image_auroc"] > 0.9
    assert figures["pixel_auroc"] > 0.9
    assert "overall" in stdout


def test_daemon_publishes_one_verdict_per_frame_matching_eval_decisions(pipeline, bottle, tmp_path):
    work, figures, _ = pipeline
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    args = ["--camera", "sim", "--bundle", str(work / "bundle"), "--source", str(bottle / "test"),
            "--publish", endpoint, "--wait-subscriber", "30", "--station", "line1"]
    with RunningDaemon(tmp_path, args=args, endpoint=endpoint, command=[str(BIN / "edge-inspect")]) as daemon:
        assert daemon.wait(timeout_s=600) == 0, daemon.log_tail()
    messages = daemon.of("verdict")
    assert len(messages) == 83 and all(m["station"] == "line1" for m in messages)
    assert daemon.stopped()["counters"]["frames"] == 83 and daemon.stopped()["balanced"]
    seqs = [m["seq"] for m in messages]
    assert seqs == list(range(seqs[0], seqs[0] + 83))
    eval_verdicts = {Path(r["path"]).resolve(): r["verdict"] for r in figures["images"]}
    daemon_verdicts = {Path(m["source"]).resolve(): m["verdict"] for m in messages}
    assert daemon_verdicts == eval_verdicts
    threshold = load_bundle(work / "bundle").thresholds.image
    assert all(m["threshold"] == pytest.approx(threshold) for m in messages)
    assert all(m["bundle_id"] == figures["bundle_id"] for m in messages)
