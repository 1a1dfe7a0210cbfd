"""The table of extras matches setup.py, and a missing module of an extra becomes the one line naming it."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
import setuptools

from edge.extras import EXTRA_MODULES, MissingExtra, explain, extra_of, require

REPO = Path(__file__).resolve().parents[3]


def setup_extras(monkeypatch) -> dict[str, list[str]]:
    monkeypatch.setattr(setuptools, "setup", lambda **_kwargs: None)
    return runpy.run_path(str(REPO / "setup.py"))["EXTRAS"]


IMPORTED_AS = {"paho_mqtt": "paho"}  # distributions whose top-level module has another name


def distribution(requirement: str) -> str:
    """The top-level module a requirement's distribution brings (its name, normalised, unless it differs)."""
    for sep in ("=", ">", "<", "[", " "):
        requirement = requirement.split(sep)[0]
    name = requirement.replace("-", "_").lower()
    return IMPORTED_AS.get(name, name)


def test_every_extra_but_dev_is_in_the_table_with_modules_its_packages_bring(monkeypatch):
    extras = setup_extras(monkeypatch)
    assert set(EXTRA_MODULES) == set(extras) - {"dev"}
    for extra, modules in EXTRA_MODULES.items():
        packages = {distribution(r) for r in extras[extra]}
        assert set(modules) <= packages, (extra, modules, packages)


def test_the_plain_install_has_one_engine(monkeypatch):
    runpy_globals = (monkeypatch.setattr(setuptools, "setup", lambda **_kwargs: None),
                     runpy.run_path(str(REPO / "setup.py")))[1]
    base = {distribution(r) for r in runpy_globals["EDGE_REQUIRES"]}
    assert "onnxruntime" in base and "openvino" not in base


@pytest.mark.parametrize(("module", "extra"), [("torch.nn", "train"), ("harvesters.core", "camera"),
                                                ("openvino", "openvino"), ("numpy", None)])
def test_extra_of_a_module(module, extra):
    assert extra_of(module) == extra


def test_a_missing_module_of_an_extra_is_one_line_naming_the_extra():
    missing = explain(ModuleNotFoundError("No module named 'torch'", name="torch"), "edge-train")
    assert str(missing) == ("edge-train needs the 'train' extra (module torch is not installed): "
                            "pip install 'edge-inspect[train]'")
    assert explain(ModuleNotFoundError("x", name="not_an_extra"), "edge-train") is None


def test_require_raises_missing_extra_for_an_absent_module():
    with pytest.raises(MissingExtra, match=r"needs the 'camera' extra \(module edge_no_such_module"):
        require("edge_no_such_module", "camera", "camera type gentl")
