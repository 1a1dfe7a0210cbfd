"""Fuzzed bundles: every field of bundle.yaml removed, fields retyped or out of range, model files broken.

A bundle is the file a plant receives by USB stick or network share: it must load, or be
refused by :func:`edge.model.bundle.load_bundle` (and, for the model file, by the engine and the
self-test, exactly as the daemon loads it) with one line naming the problem; never a traceback.
Model files are recorded with their new sha256, so the engine really gets to read them: cut
short, random bytes, and a valid ONNX graph of the wrong shape.
"""

from __future__ import annotations

import copy
import hashlib
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.model.bundle import BUNDLE_FILE, BundleError, load_bundle, read_bundle_yaml
from edge.model.inspector import Inspector
from edge.model.selftest import run_selftest
from edge.tools.harness import DEMO_BUNDLE
from tests.fuzz.conftest import Recorder, examples

ORIGINAL = read_bundle_yaml(DEMO_BUNDLE)
MODEL = (DEMO_BUNDLE / "model.onnx").read_bytes()
SETTINGS = {"deadline": None, "database": None, "suppress_health_check": [HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow]}
ODD = st.one_of(st.none(), st.booleans(), st.integers(-10**9, 10**9), st.floats(allow_nan=True, allow_infinity=True),
                st.text(max_size=20), st.lists(st.integers(-3, 3), max_size=5), st.just({}), st.just({"x": 1}))


def leaf_paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key and list item of the manifest, as a path from the top."""
    found: list[tuple[Any, ...]] = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            found += leaf_paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += leaf_paths(value, (*prefix, index))
    return found


PATHS = leaf_paths(ORIGINAL)


def changed(path: tuple[Any, ...], value: Any = ..., remove: bool = False) -> dict[str, Any]:
    meta = copy.deepcopy(ORIGINAL)
    parent = meta
    for key in path[:-1]:
        parent = parent[key]
    if remove:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return meta


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shutil.copytree(DEMO_BUNDLE, tmp_path_factory.mktemp("fuzz") / "bundle")


def try_load(root: Path, meta: dict[str, Any] | str, recorder: Recorder, run_engine: bool = False) -> None:
    (root / BUNDLE_FILE).write_text(meta if isinstance(meta, str) else yaml.safe_dump(meta, sort_keys=False))
    try:
        bundle = load_bundle(root)
        if run_engine:
            run_selftest(bundle, Inspector(bundle, threads=1))
    except BundleError as exc:
        assert "\n" not in str(exc), str(exc)
        recorder.refused(str(exc).replace(str(root), "BUNDLE"))
        return
    except Exception:
        recorder.crashed()
        raise
    recorder.accepted()


@pytest.mark.fuzz_target("bundle.yaml")
def test_every_field_removed_in_turn_loads_or_is_refused_in_one_line(work, recorder):
    for path in PATHS:
        try_load(work, changed(path, remove=True), recorder)
    assert recorder.stats.cases >= len(PATHS)


@pytest.mark.fuzz_target("bundle.yaml")
@settings(max_examples=examples(200), **SETTINGS)
@given(path=st.sampled_from(PATHS), value=ODD)
def test_any_field_retyped_or_out_of_range_loads_or_is_refused_in_one_line(work, recorder, path, value):
    try_load(work, changed(path, value), recorder)


@pytest.mark.fuzz_target("bundle.yaml")
@settings(max_examples=examples(40), **SETTINGS)
@given(text=st.one_of(st.text(max_size=300), st.sampled_from(["", "- a", "schema_version: 2", "{", "null"])))
def test_any_text_as_bundle_yaml_is_refused_in_one_line(work, recorder, text):
    try_load(work, text, recorder)


def wrong_shape_graph() -> bytes:
    """A valid ONNX graph with the bundle's input and output names, but a 32x32 map instead of 64x64."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    nodes = [helper.make_node("ReduceMean", ["image"], ["gray"], keepdims=1, axes=[1]),
             helper.make_node("AveragePool", ["gray"], ["anomaly_map"], kernel_shape=[8, 8], strides=[8, 8]),
             helper.make_node("ReduceMax", ["anomaly_map"], ["score4"], keepdims=0),
             helper.make_node("Reshape", ["score4", "one"], ["score"])]
    graph = helper.make_graph(
        nodes, "wrong_shape", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 256, 256])],
        [helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, [1, 1, 32, 32]),
         helper.make_tensor_value_info("score", TensorProto.FLOAT, [1])],
        initializer=[helper.make_tensor("one", TensorProto.INT64, [1], [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return bytes(model.SerializeToString()) if onnx is not None else b""


def with_model(root: Path, data: bytes) -> dict[str, Any]:
    (root / "model.onnx").write_bytes(data)
    meta = copy.deepcopy(ORIGINAL)
    meta["files"]["model.onnx"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    return meta


@pytest.mark.fuzz_target("model files")
@settings(max_examples=examples(20), **SETTINGS)
@given(data=st.one_of(st.integers(0, len(MODEL) - 1).map(lambda n: MODEL[:n]), st.binary(max_size=4096),
                      st.integers(0, len(MODEL) - 64).map(lambda n: MODEL[:n] + bytes(64) + MODEL[n + 64:])))
def test_a_broken_model_file_is_refused_in_one_line_by_the_engine_or_the_self_test(work, recorder, data):
    try_load(work, with_model(work, data), recorder, run_engine=True)


@pytest.mark.fuzz_target("model files")
def test_a_valid_graph_of_the_wrong_shape_is_refused_in_one_line(work, recorder):
    try_load(work, with_model(work, wrong_shape_graph()), recorder, run_engine=True)
    assert any("anomaly map but bundle.yaml declares" in r for r in recorder.stats.refusals)
