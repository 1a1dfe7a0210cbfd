"""``edge-tradeoff`` sweeps coreset ratio x map stride through the real pipeline and prints the curve."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from studies.tradeoff import main


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    """A small run on the project's own synthetic parts (128 px, so each export is quick)."""
    pytest.importorskip("torch")
    from training.patchcore import PatchCoreConfig
    from training.synthetic import write_dataset
    from training.train import fit

    work = tmp_path_factory.mktemp("tradeoff")
    data = write_dataset(work / "data", n_train=12, n_test_good=3, n_test_per_defect=2, size=128, seed=0)
    config = PatchCoreConfig(input_size=(128, 128), coreset_ratio=0.05)
    run = fit(data, work / "run", config, val_fraction=0.25, seed=0, device="cpu", batch_size=4, progress=False)
    return run, data, work


def test_sweep_prints_one_row_per_ratio_and_stride_and_writes_them_as_json(synthetic_run, tmp_path):
    run, data, _ = synthetic_run
    json_path = tmp_path / "curve.json"
    result = CliRunner().invoke(main, [
        str(run), "--data", str(data), "--work", str(tmp_path / "work"), "--ratios", "0.02,0.1",
        "--map-strides", "2,8", "--frames", "4", "--rounds", "2", "--warmup", "1", "--threads", "1",
        "--json", str(json_path)])
    assert result.exit_code == 0, result.output
    rows = json.loads(json_path.read_text())["rows"]
    assert [(r["coreset_ratio"], r["map_stride"]) for r in rows] == [(0.02, 2), (0.02, 8), (0.1, 2), (0.1, 8)]
    assert rows[0]["bank_rows"] < rows[2]["bank_rows"]  # a larger ratio keeps more patches
    assert [r["map"] for r in rows[:2]] == [[64, 64], [16, 16]]
    for row in rows:
        assert 0.0 <= row["image_auroc"] <= 1.0 and 0.0 <= row["pixel_auroc"] <= 1.0
        assert len(row["e2e_p50_ms_rounds"]) == 2 and row["frame_size"] == 128
    table = result.stdout.splitlines()  # the progress note goes to stderr
    assert "img AUROC" in table[0] and len(table) == 1 + len(rows)


def test_sweep_refuses_a_stride_that_does_not_divide_the_input(synthetic_run, tmp_path):
    run, data, _ = synthetic_run
    result = CliRunner().invoke(main, [str(run), "--data", str(data), "--work", str(tmp_path / "w"),
                                       "--ratios", "0.05", "--map-strides", "3", "--frames", "2"])
    assert result.exit_code != 0
    assert "map_stride" in str(result.exception) or "map_stride" in result.output
