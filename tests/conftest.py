"""Shared fixtures: paths to the shared datasets and a small real bundle built once per session.

The bundle is made by the project's own pipeline (train on a few real bottle images, export,
calibrate) so that tests of every package exercise real parts. Tests that need the shared data
skip with the reason when ``../shared`` is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATASETS = SHARED / "datasets"
BOTTLE = DATASETS / "mvtec_bottle"
MAGNETIC_TILE = DATASETS / "magnetic_tile"
DEMO = REPO / "edge" / "demo"

if "TORCH_HOME" not in os.environ and (SHARED / "torch_home").is_dir():
    os.environ["TORCH_HOME"] = str(SHARED / "torch_home")


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not found (tests need ../shared beside the checkout)")
    return path


@pytest.fixture(scope="session")
def bottle() -> Path:
    return need(BOTTLE)


@pytest.fixture(scope="session")
def magnetic_tile() -> Path:
    return need(MAGNETIC_TILE)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, bottle) -> Path:
    """A PatchCore run fitted on a handful of real bottle images (fast, CPU)."""
    pytest.importorskip("torch")
    from training.patchcore import PatchCoreConfig
    from training.train import fit

    out = tmp_path_factory.mktemp("run")
    config = PatchCoreConfig(backbone="mobilenet_v2", coreset_ratio=0.05)
    return fit(bottle, out, config, val_fraction=0.3, seed=0, device="cpu", batch_size=4, max_images=12)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, tiny_run) -> Path:
    """The tiny run exported and calibrated on its own validation split."""
    from calibration.calibrate import calibrate
    from export.build import build_bundle

    out = tmp_path_factory.mktemp("bundles") / "bottle"
    build_bundle(tiny_run, out)
    calibrate(out)
    return out
