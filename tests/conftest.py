"""Shared fixtures: paths to the shared datasets and a small real bundle built once per session.

The bundle is made by the project's own pipeline (train on a few real bottle images, export,
calibrate) so that tests of every package exercise real parts. Tests that need the shared data
(or an optional package, TLSimu.cti, systemd-analyze) skip with the reason on a workstation
where it is absent. Under CI (``CI`` set) a skip would hide exactly what CI is there to run, so
the hooks below turn every skip, at collection or in a test, into a failure with the same
reason; only tests marked ``real_camera`` (they need a camera attached) may still skip there.
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

UNDER_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
MAY_SKIP_UNDER_CI = "real_camera"

if "TORCH_HOME" not in os.environ and (SHARED / "torch_home").is_dir():
    os.environ["TORCH_HOME"] = str(SHARED / "torch_home")


def _skip_reason(longrepr: object) -> str:
    """The reason of a skip report (pytest keeps it as (path, line, "Skipped: reason"))."""
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _fail_instead(report: pytest.TestReport | pytest.CollectReport) -> None:
    report.outcome = "failed"
    report.longrepr = (f"skipped under CI (CI={os.environ.get('CI')!r}), where every test but the "
                       f"{MAY_SKIP_UNDER_CI} ones must run: {_skip_reason(report.longrepr)}")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Under CI a skipped test (skip, skipif, importorskip in it or a fixture) is a failed one."""
    outcome = yield
    report = outcome.get_result()
    if (UNDER_CI and report.skipped and not hasattr(report, "wasxfail")
            and item.get_closest_marker(MAY_SKIP_UNDER_CI) is None):
        _fail_instead(report)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_make_collect_report(collector: pytest.Collector):  # type: ignore[no-untyped-def]
    """Under CI a module that skips itself at import (``pytest.importorskip`` at the top) fails instead."""
    outcome = yield
    report = outcome.get_result()
    if UNDER_CI and report.skipped and collector.get_closest_marker(MAY_SKIP_UNDER_CI) is None:
        _fail_instead(report)


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
    calibrate(out, allow_few=True)  # a handful of validation images: fast, and not a line calibration
    return out
