"""Every model family runs in the daemon from its bundle alone, with the edge's own decisions.

PaDiM on the RGB bottle and the autoencoder on the grayscale magnetic tiles (the one-channel
rule in the graph) are trained on a few real images by ``edge-train``, exported and calibrated by
the project's commands in child processes, then run by the daemon over real test images with a
real ZeroMQ subscriber: one verdict per frame, no sequence gap, the bundle's id on every verdict,
and each verdict and score equal to what ``edge``'s ``Inspector`` decides for the same image, so
the daemon needs nothing but ``bundle.yaml`` to run a family it has never heard of.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge.model.bundle import load_bundle
from edge.model.imageio import read_image
from edge.model.inspector import Inspector
from edge.tools.harness import RunningDaemon, daemon_env, free_port

TRAIN = {
    "padim": ["--set", "n_features=40", "--input-size", "128"],
    "autoencoder": ["--set", "epochs=1", "--set", "loss.perceptual=0", "--set", "widths=[8,16,32]",
                    "--set", "bottleneck=32", "--input-size", "64", "--batch-size", "4"],
}
DATASET = {"padim": "bottle", "autoencoder": "magnetic_tile"}
IMAGES_PER_FOLDER = 3


def _run(*command: str) -> None:
    result = subprocess.run([sys.executable, *command], capture_output=True, text=True, timeout=1200,
                            env=daemon_env())
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"


def _source(data: Path, out: Path) -> list[Path]:
    """A folder of real test images: the first few good ones and the first few of every defect type."""
    out.mkdir()
    picked = []
    for folder in sorted(p for p in (data / "test").iterdir() if p.is_dir()):
        for image in sorted(folder.iterdir())[:IMAGES_PER_FOLDER]:
            link = out / f"{folder.name}_{image.name}"
            link.symlink_to(image)
            picked.append(link)
    return picked


@pytest.fixture(scope="module", params=sorted(TRAIN))
def family_bundle(request, tmp_path_factory, bottle, magnetic_tile) -> tuple[str, Path, Path]:
    family = request.param
    data = bottle if DATASET[family] == "bottle" else magnetic_tile
    work = tmp_path_factory.mktemp(family)
    _run("-m", "training.cli", "--model", family, "--data", str(data), "--out", str(work / "run"),
         "--max-images", "8", "--device", "cpu", "--quiet", *TRAIN[family])
    _run("-c", "from export.cli import main; main()", str(work / "run"), "--out", str(work / "bundle"))
    _run("-c", "from calibration.cli import calibrate_main; calibrate_main()", str(work / "bundle"), "--allow-few")
    return family, work / "bundle", data


def test_the_daemon_runs_the_family_from_its_bundle_with_the_inspectors_decisions(family_bundle,
                                                                                    tmp_path) -> None:
    family, bundle_dir, data = family_bundle
    images = _source(data, tmp_path / "images")
    bundle = load_bundle(bundle_dir)
    assert bundle.manifest.model.family == family
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    args = ["--camera", "sim", "--bundle", str(bundle_dir), "--source", str(tmp_path / "images"),
            "--publish", endpoint, "--wait-subscriber", "30", "--station", family]
    with RunningDaemon(tmp_path / "daemon", args=args, endpoint=endpoint) as daemon:
        assert daemon.wait(timeout_s=600) == 0, daemon.log_tail()
    verdicts = daemon.of("verdict")
    assert len(verdicts) == len(images) and daemon.stopped()["balanced"]
    seqs = [m["seq"] for m in verdicts]
    assert seqs == list(range(seqs[0], seqs[0] + len(images)))
    assert {m["bundle_id"] for m in verdicts} == {bundle.bundle_id}

    inspector = Inspector(bundle)
    expected = {path.name: inspector.inspect(read_image(path)) for path in images}
    for message in verdicts:
        result = expected[Path(message["source"]).name]
        assert message["verdict"] == result.verdict
        assert message["score"] == pytest.approx(result.score, rel=1e-4)
