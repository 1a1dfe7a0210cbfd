"""End to end on real images, through the console commands a user types.

train (a few bottle images) -> export -> calibrate -> eval on the full bottle test set -> the
daemon over the same 83 images with a real ZeroMQ subscriber: every frame gets one verdict, the
sequence has no gap, and each decision equals the one edge-eval made at the same threshold.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import zmq

from edge.model.bundle import load_bundle

BIN = Path(sys.executable).parent


def cli(name: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([str(BIN / name), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, bottle):
    work = tmp_path_factory.mktemp("pipeline")
    cli("edge-train", "--data", bottle, "--out", work / "run", "--max-images", 16, "--coreset-ratio", 0.05,
        "--device", "cpu")
    cli("edge-export", work / "run", "--out", work / "bundle")
    cli("edge-calibrate", work / "bundle")
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


def test_daemon_publishes_one_verdict_per_frame_matching_eval_decisions(pipeline, bottle):
    work, figures, _ = pipeline
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    context = zmq.Context.instance()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"verdict.")
    sub.setsockopt(zmq.RCVTIMEO, 60_000)
    sub.connect(endpoint)
    daemon = subprocess.Popen(
        [str(BIN / "edge-inspect"), "--camera", "sim", "--bundle", work / "bundle", "--source", bottle / "test",
         "--publish", endpoint, "--wait-subscriber", "30", "--station", "line1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        messages = []
        for _ in range(83):
            topic, payload, *_ = sub.recv_multipart()
            assert topic == b"verdict.line1"
            messages.append(json.loads(payload))
        _, stderr = daemon.communicate(timeout=60)
        assert daemon.returncode == 0, stderr
    finally:
        daemon.kill()
        sub.close(linger=0)
    seqs = [m["seq"] for m in messages]
    assert seqs == list(range(seqs[0], seqs[0] + 83))
    eval_verdicts = {Path(r["path"]).resolve(): r["verdict"] for r in figures["images"]}
    daemon_verdicts = {Path(m["source"]).resolve(): m["verdict"] for m in messages}
    assert daemon_verdicts == eval_verdicts
    threshold = load_bundle(work / "bundle").thresholds.image
    assert all(m["threshold"] == pytest.approx(threshold) for m in messages)
    assert all(m["bundle_id"] == figures["bundle_id"] for m in messages)
