"""edge-train-batch trains, exports, calibrates and evaluates every category; a bad one stops only itself.

studies.family_table then puts the bundles the batch left side by side, with their parity record.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1].parent


def _category_with_corrupt_training_images(root: Path, bottle: Path) -> None:
    (root / "cracked" / "train" / "good").mkdir(parents=True)
    (root / "cracked" / "test" / "good").mkdir(parents=True)
    for index in range(4):
        (root / "cracked" / "train" / "good" / f"corrupt{index}.png").write_bytes(b"\x89PNG not really")
    good = min((bottle / "test" / "good").glob("*.png"))
    (root / "cracked" / "test" / "good" / good.name).symlink_to(good)


def _batch(root: Path, out: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "training.batch", str(root), "--out", str(out), "--models", "padim",
               "--max-images", "8", "--quiet",
               "--target-frr", "0.05"]  # 21 held-out bottle images: 1/0.05 = 20 needed
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)


@pytest.fixture(scope="module")
def first_batch(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    bottle = REPO.parent / "shared" / "datasets" / "mvtec_bottle"
    if not bottle.is_dir():
        pytest.skip(f"{bottle} not found")
    work = tmp_path_factory.mktemp("batch")
    root, out = work / "datasets", work / "batch"
    root.mkdir()
    (root / "bottle").symlink_to(bottle)
    _category_with_corrupt_training_images(root, bottle)
    (root / "notes").mkdir()  # not in MVTec layout: ignored
    return root, out, _batch(root, out)


def test_batch_runs_every_category_records_failures_and_resumes_without_redoing_work(first_batch) -> None:
    root, out, first = first_batch
    assert first.returncode == 1, first.stderr  # one job failed
    summary = json.loads((out / "summary.json").read_text())
    rows = {row["category"]: row for row in summary["rows"]}
    assert set(rows) == {"bottle", "cracked"}
    assert rows["bottle"]["status"] == "ok" and rows["bottle"]["family"] == "padim"
    assert 0.5 < rows["bottle"]["image_auroc"] <= 1.0 and rows["bottle"]["bundle_mb"] > 0
    assert rows["bottle"]["latency_p50_ms"] > 0 and rows["bottle"]["train_peak_rss_mb"] > 0
    assert rows["cracked"]["status"].startswith("failed: train:") and "corrupt" in rows["cracked"]["status"]
    markdown = (out / "summary.md").read_text()
    assert "| bottle | padim | ok |" in markdown and "| cracked | padim | failed: train:" in markdown
    assert summary["wall_s"] > 0

    done = json.loads((out / "bottle" / "padim" / "job.json").read_text())["steps"]
    second = _batch(root, out)
    assert second.returncode == 1
    again = json.loads((out / "bottle" / "padim" / "job.json").read_text())["steps"]
    assert again == done  # finished steps are not run again
    assert (out / "bottle" / "padim" / "train.log").read_text().count("$ ") == 1
    assert (out / "cracked" / "padim" / "train.log").read_text().count("$ ") == 2


def test_family_table_puts_the_batch_bundles_side_by_side_with_parity(first_batch, tmp_path: Path) -> None:
    _, out, _ = first_batch
    json_path = tmp_path / "table.json"
    command = [sys.executable, "-m", "studies.family_table", str(out), "--json", str(json_path)]
    result = subprocess.run(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                            text=True, timeout=1800)
    assert result.returncode == 0, result.stderr
    rows = json.loads(json_path.read_text())
    assert [(r["dataset"], r["family"]) for r in rows] == [("bottle", "padim")]  # the failed job has no bundle
    row = rows[0]
    assert 0.5 < row["image_auroc"] <= 1.0 and row["p50_ms"] > 0 and row["train_cpu_s"] > 0
    assert row["parity"]["max_rel_score_diff"] <= row["parity"]["tolerance"]
    assert "| padim | bottle |" in result.stdout
