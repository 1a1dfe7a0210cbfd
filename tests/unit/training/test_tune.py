"""--tune: candidates, held-out split and the synthetic ranking, on strips drawn by the project."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.data import list_train_images
from training.inputs import InputRule
from training.patchcore import PatchCoreConfig
from training.synthetic_strips import write_dataset
from training.train import input_spec_for
from training.tune import MIN_HOLDOUT, candidates, holdout_split, tune


@pytest.fixture(scope="module")
def strips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("strips"), n_train=20, n_test_good=1, n_test_per_defect=1,
                         height=64, min_length=200, max_length=360, seed=4)


def test_the_holdout_is_seeded_disjoint_and_at_least_four_images(strips: Path) -> None:
    paths = list_train_images(strips)
    fit, holdout = holdout_split(paths, seed=0)
    assert len(holdout) == MIN_HOLDOUT and not set(fit) & set(holdout) and len(fit) + len(holdout) == len(paths)
    assert holdout_split(list(reversed(paths)), seed=0) == (fit, holdout)
    assert holdout_split(paths, seed=1) != (fit, holdout)


def test_candidates_differ_from_the_automatic_choice_one_setting_each(strips: Path) -> None:
    config = PatchCoreConfig().resolved()
    options = candidates(list_train_images(strips), config, input_spec_for(config), InputRule())
    assert options[0].name == "auto"
    settings = [c.settings() for c in options]
    assert len({str(s) for s in settings}) == len(settings)
    for other in settings[1:]:
        assert sum(other[k] != settings[0][k] for k in settings[0]) == 1


def test_tuning_scores_every_candidate_and_records_the_choice(strips: Path, torch_home: Path) -> None:
    config = PatchCoreConfig().resolved()
    chosen, record = tune(list_train_images(strips), strips / "train" / "good", config, input_spec_for(config),
                          InputRule(), measure=False, progress=False)
    names = [row["name"] for row in record["candidates"]]
    assert record["chosen"] == chosen.name in names and len(record["holdout_images"]) == MIN_HOLDOUT
    assert record["synthetic_defects"] == 3 * MIN_HOLDOUT
    keys = {row["name"]: row["synthetic"]["key"] for row in record["candidates"]}
    assert keys[chosen.name] == max(keys.values())
    for row in record["candidates"]:
        assert 0.0 <= row["synthetic"]["image_auroc"] <= 1.0 and 0.0 <= row["synthetic"]["pixel_auroc"] <= 1.0
