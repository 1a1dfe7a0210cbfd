"""Fixtures shared by the training tests: the real datasets and the pre-seeded torch cache.

The images and the MobileNet_V2 weights live in ``../shared`` beside the repository and are never
copied into it; tests that need them skip with a reason when they are absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).parents[3].parent / "shared"
DATASETS = SHARED / "datasets"
TORCH_HOME = SHARED / "torch_home"


@pytest.fixture(autouse=True)
def _two_threads() -> None:
    torch.set_num_threads(2)


def _dataset(name: str) -> Path:
    path = DATASETS / name
    if not (path / "train" / "good").is_dir():
        pytest.skip(f"dataset {path} is not present")
    return path


@pytest.fixture
def bottle() -> Path:
    return _dataset("mvtec_bottle")


@pytest.fixture
def magnetic_tile() -> Path:
    return _dataset("magnetic_tile")


@pytest.fixture
def torch_home(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point TORCH_HOME at the shared, pre-seeded cache (as on an offline plant PC)."""
    if not (TORCH_HOME / "hub" / "checkpoints" / "mobilenet_v2-b0353104.pth").is_file():
        pytest.skip(f"pre-seeded torch cache {TORCH_HOME} is not present")
    monkeypatch.setenv("TORCH_HOME", str(TORCH_HOME))
    return TORCH_HOME
