"""The map's smoothing chosen on the validation split with synthetic defects, and recorded."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from training.cli import main
from training.patchcore import PatchCoreConfig
from training.smoothing import SIGMA_CANDIDATES
from training.train import fit, load_run


def test_training_picks_the_sigma_with_the_best_synthetic_key_and_records_every_candidate(
    bottle: Path, torch_home: Path, tmp_path: Path
) -> None:
    config = PatchCoreConfig(input_size=(128, 128), coreset_ratio=0.05)
    out = fit(bottle, tmp_path / "run", config, device="cpu", max_images=8, progress=False, choose_smoothing=True)
    run = yaml.safe_load((out / "run.yaml").read_text())
    record = run["smoothing"]
    assert [row["sigma"] for row in record["candidates"]] == list(SIGMA_CANDIDATES)
    assert record["images"] == run["n_validation_images"] and record["synthetic_defects"] == 3 * record["images"]
    best = max(row["key"] for row in record["candidates"])
    chosen = min(row["sigma"] for row in record["candidates"] if row["key"] == best)
    assert record["chosen"] == chosen == run["config"]["sigma"]
    model, _ = load_run(out)  # the saved model smooths with it too
    assert model.config.sigma == chosen
    assert "smoothing" in run["seconds"]


def test_a_sigma_that_is_neither_auto_nor_a_number_is_one_line_with_exit_status_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--data", str(tmp_path), "--out", str(tmp_path / "run"), "--sigma", "wide"])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "--sigma" in result.output
