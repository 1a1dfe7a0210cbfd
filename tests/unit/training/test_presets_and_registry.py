"""Families come from one registry; presets, flags and --set layer into a family's settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from training.augment import Augmentation
from training.backbones import SUPPORTED_BACKBONES
from training.cli import BACKBONE_NAMES, FAMILY_SUMMARIES, main
from training.cli import DEFAULT_FAMILY as CLI_DEFAULT
from training.families.autoencoder import AutoencoderConfig
from training.families.registry import DEFAULT_FAMILY, FAMILIES, family_of, get_family, load_run
from training.fit_autoencoder import TrainerConfig
from training.presets import Preset, assemble, available_presets, load_preset, parse_set
from training.train import RunError

AE = FAMILIES["autoencoder"]


def test_registry_names_every_family_and_refuses_unknown_ones() -> None:
    assert list(FAMILIES) == ["patchcore", "padim", "autoencoder"]
    assert all(name == family.name for name, family in FAMILIES.items())
    with pytest.raises(ValueError, match="supported: patchcore, padim, autoencoder"):
        get_family("vae")


def test_runs_written_before_the_registry_are_patchcore(tmp_path: Path) -> None:
    (tmp_path / "run.yaml").write_text("run_format: 1\n")
    assert family_of(tmp_path).name == "patchcore"
    (tmp_path / "run.yaml").write_text("run_format: 1\nfamily: vae\n")
    with pytest.raises(RunError, match="unknown model family"):
        load_run(tmp_path)


def test_settings_layer_preset_then_flags_then_set() -> None:
    preset = Preset(name="p", path=Path("p.yaml"), model="autoencoder", config={"sigma": 3.0, "score": "max"},
                    train={"epochs": 5, "loss": {"ssim": 0.2, "mse": 1.0}})
    config, train = assemble("autoencoder", AE.config_keys, AE.train_keys, preset, {"input_size": (64, 64)},
                             parse_set(["score=topk_mean", "loss.ssim=0.7", "augment.rotation=15", "epochs=9"]))
    assert config == {"sigma": 3.0, "score": "topk_mean", "input_size": (64, 64)}
    assert train == {"epochs": 9, "loss": {"ssim": 0.7, "mse": 1.0}, "augment": {"rotation": 15}}


def test_settings_a_family_does_not_have_are_refused_by_name() -> None:
    pc = FAMILIES["patchcore"]
    with pytest.raises(ValueError, match="--coreset-ratio does not apply to --model autoencoder"):
        assemble("autoencoder", AE.config_keys, AE.train_keys, None, {"coreset_ratio": 0.1}, {})
    with pytest.raises(ValueError, match="--set epochs: patchcore has no such setting"):
        assemble("patchcore", pc.config_keys, pc.train_keys, None, {}, {"epochs": 3})
    with pytest.raises(ValueError, match="is for --model autoencoder"):
        assemble("padim", (), (), Preset(name="b", path=Path("b"), model="autoencoder"), {}, {})
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_set(["epochs"])


@pytest.mark.parametrize("name", available_presets())
def test_every_shipped_preset_is_valid_for_its_family(name: str) -> None:
    preset = load_preset(name)
    family = get_family(preset.model)
    config, train = assemble(preset.model, family.config_keys, family.train_keys, preset, {}, {})
    assert preset.description and preset.categories
    if preset.model == "autoencoder":
        AutoencoderConfig.from_dict(config)
        trainer = TrainerConfig.from_dict(train)
        assert isinstance(trainer.augment, Augmentation)


def test_a_preset_file_that_is_not_a_preset_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("model: autoencoder\nepochs: 3\n")
    with pytest.raises(ValueError, match="unknown preset keys"):
        load_preset(str(path))
    with pytest.raises(ValueError, match="no such file or shipped preset"):
        load_preset("no-such-preset")


def test_cli_refuses_a_flag_of_another_family_in_one_line(tmp_path: Path, bottle: Path) -> None:
    result = CliRunner().invoke(main, ["--model", "padim", "--coreset-ratio", "0.1", "--data", str(bottle),
                                       "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "--coreset-ratio does not apply to --model padim" in result.output
    result = CliRunner().invoke(main, ["--model", "padim", "--resume", "--data", str(bottle),
                                       "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "nothing to resume" in result.output


def test_the_cli_names_the_families_and_backbones_without_importing_torch_as_the_registry_does() -> None:
    assert tuple(BACKBONE_NAMES) == tuple(SUPPORTED_BACKBONES)
    assert FAMILY_SUMMARIES == {name: family.summary for name, family in FAMILIES.items()}
    assert CLI_DEFAULT == DEFAULT_FAMILY
