"""The example configurations shipped in configs/ stay valid as the schema evolves."""

from pathlib import Path

import pytest

from edge.model.bundle import load_bundle
from edge.daemon.config import load_config

CONFIGS = sorted((Path(__file__).resolve().parents[4] / "configs").glob("*.yaml"))


def test_there_are_example_configs():
    assert {p.name for p in CONFIGS} >= {"sim.yaml", "gentl.yaml", "viky.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_example_config_validates_and_names_a_loadable_bundle(path):
    config = load_config(path)
    assert config.camera.type in ("sim", "gentl")
    assert load_bundle(config.bundle).thresholds is not None
