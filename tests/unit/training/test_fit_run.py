"""fit() writes a self-contained run directory that load_run() and the CLI agree on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from edge.model.preprocess import InputSpec
from training.backbones import BACKBONES
from training.cli import main
from training.data import load_input
from training.patchcore import PatchCoreConfig
from training.train import RunError, fit, load_run


def test_fit_on_a_few_bottle_images_writes_a_run_that_loads_and_scores(
    bottle: Path, torch_home: Path, tmp_path: Path
) -> None:
    config = PatchCoreConfig(backbone="mobilenet_v2", input_size=(128, 128), coreset_ratio=0.05, chunk_size=64)
    out = fit(bottle, tmp_path / "run", config, seed=1, device="cpu", batch_size=4, max_images=10, progress=False)

    run = yaml.safe_load((out / "run.yaml").read_text())
    assert run["run_format"] == 1
    assert run["n_train_images"] == 10 and len(run["train_images"]) == 10
    assert run["n_validation_images"] == 21
    assert not set(run["train_images"]) & set(run["validation_images"])
    assert all(Path(p).is_absolute() for p in run["train_images"] + run["validation_images"])
    assert run["dataset"] == str(bottle.resolve())
    assert run["device"] == "cpu" and run["seed"] == 1
    assert run["config"]["layers"] == list(BACKBONES["mobilenet_v2"].default_layers)
    assert run["memory_bank_shape"][0] == round(10 * 16 * 16 * 0.05)
    assert set(run["seconds"]) >= {"embedding", "coreset", "map_scale"}
    assert run["config"]["wide_sigma"] == PatchCoreConfig().wide_sigma and run["map_scale"]["images"] == 21
    assert set(run["versions"]) == {"python", "torch", "torchvision", "timm"}

    checkpoint = torch.load(out / "model.pt", weights_only=True)
    assert set(checkpoint) == {"config", "input_spec", "state_dict"}
    assert list(checkpoint["state_dict"]["memory_bank"].shape) == run["memory_bank_shape"]
    spec = InputSpec.from_dict(checkpoint["input_spec"])
    assert (spec.height, spec.width) == (128, 128)

    model, loaded = load_run(out)
    assert loaded == run and not model.training
    assert tuple(model.memory_bank.shape) == tuple(run["memory_bank_shape"])
    assert model.combines_maps and model.map_scale.tolist() == pytest.approx(run["map_scale"]["values"], abs=1e-5)
    good = torch.from_numpy(load_input(Path(run["validation_images"][0]), spec))
    broken = torch.from_numpy(load_input(bottle / "test" / "broken_large" / "000.png", spec))
    with torch.no_grad():
        good_map, good_score = model(good)
        _, broken_score = model(broken)
    assert good_map.shape == (1, 1, *model.config.map_size) and good_score.shape == (1,)
    assert model.config.map_size == (128 // model.config.map_stride, 128 // model.config.map_stride)
    assert broken_score.item() > good_score.item()


def test_grayscale_magnetic_tile_images_train(magnetic_tile: Path, torch_home: Path, tmp_path: Path) -> None:
    config = PatchCoreConfig(input_size=(96, 96), coreset_ratio=0.1)
    out = fit(magnetic_tile, tmp_path / "tile", config, device="cpu", max_images=3, progress=False)
    model, run = load_run(out)
    assert run["n_train_images"] == 3 and model.memory_bank.shape[0] == round(3 * 12 * 12 * 0.1)


def test_load_run_rejects_missing_and_corrupt_run_directories(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="does not exist"):
        load_run(tmp_path / "nowhere")
    with pytest.raises(RunError, match="no run.yaml"):
        load_run(tmp_path)
    (tmp_path / "run.yaml").write_text("run_format: 1\n")
    with pytest.raises(RunError, match="no model.pt"):
        load_run(tmp_path)
    (tmp_path / "model.pt").write_bytes(b"truncated")
    with pytest.raises(RunError, match="cannot load"):
        load_run(tmp_path)
    (tmp_path / "run.yaml").write_text("run_format: [unclosed\n")
    with pytest.raises(RunError, match="cannot parse"):
        load_run(tmp_path)


def test_cli_reports_a_user_error_as_one_line_with_exit_status_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--data", str(tmp_path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "train/good" in result.output
    assert "Traceback" not in result.output


def test_cli_help_lists_every_option() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for option in ("--data", "--out", "--backbone", "--coreset-ratio", "--input-size", "--val-fraction",
                   "--seed", "--device", "--batch-size", "--max-images"):
        assert option in result.output


def test_the_cli_names_the_training_defaults_it_cannot_import_for_help() -> None:
    """--help imports no torch, so the CLI repeats two defaults; they must stay equal to the real ones."""
    from training import cli
    from training.backbones import SUPPORTED_BACKBONES
    from training.embedding import DEFAULT_BATCH_SIZE

    assert tuple(cli.BACKBONE_NAMES) == tuple(SUPPORTED_BACKBONES)
    assert cli.DEFAULT_BATCH_SIZE == DEFAULT_BATCH_SIZE


def test_edge_train_wide_sigma_0_writes_the_fine_map_alone(bottle: Path, torch_home: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--data", str(bottle), "--out", str(tmp_path / "run"), "--input-size", "96",
                                       "--coreset-ratio", "0.05", "--max-images", "4", "--wide-sigma", "0", "-q"])
    assert result.exit_code == 0, result.output
    model, run = load_run(tmp_path / "run")
    assert run["config"]["wide_sigma"] == 0.0 and "map_scale" not in run and "map_scale" not in run["seconds"]
    assert not model.combines_maps
