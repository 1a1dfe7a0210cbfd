"""Bundle validation refuses every broken bundle with one line naming the problem."""

import shutil

import pytest
import yaml

from edge.model.bundle import BUNDLE_FILE, BundleError, load_bundle, read_bundle_yaml, write_bundle_yaml


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):
    return shutil.copytree(tiny_bundle, tmp_path / "bundle")


def edit(bundle_dir, change):
    meta = read_bundle_yaml(bundle_dir)
    change(meta)
    write_bundle_yaml(bundle_dir, meta)


def refusal(bundle_dir, **kwargs) -> str:
    with pytest.raises(BundleError) as info:
        load_bundle(bundle_dir, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_calibrated_bundle_loads_with_its_contract(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    assert bundle.thresholds is not None and bundle.thresholds.image > 0
    stride = bundle.meta["model"]["config"]["map_stride"]
    assert bundle.meta["outputs"]["anomaly_map"]["shape"] == [1, 1, bundle.spec.height // stride,
                                                              bundle.spec.width // stride]
    assert bundle.map_shape == (bundle.spec.height // stride, bundle.spec.width // stride)
    assert bundle.meta["model"]["family"] == "patchcore"
    assert set(bundle.meta["tools"]) >= {"python", "torch", "onnx", "onnxruntime", "edge"}
    assert bundle.meta["training"]["n_train_images"] > 0
    assert bundle.meta["export"]["parity"]["max_rel_score_diff"] <= bundle.meta["export"]["parity"]["tolerance"]


def test_hash_mismatch_is_refused(bundle_copy):
    graph = bundle_copy / "model.onnx"
    data = bytearray(graph.read_bytes())
    data[-1] ^= 0xFF
    graph.write_bytes(bytes(data))
    assert "sha256 mismatch" in refusal(bundle_copy)


def test_missing_model_file_is_refused(bundle_copy):
    (bundle_copy / "model.onnx").unlink()
    assert "missing file" in refusal(bundle_copy)


def test_unknown_schema_version_is_refused(bundle_copy):
    edit(bundle_copy, lambda m: m.update(schema_version=99))
    assert "unknown schema_version 99" in refusal(bundle_copy)


def test_missing_threshold_is_refused_unless_calibrating(bundle_copy):
    edit(bundle_copy, lambda m: m["thresholds"].pop("image"))
    assert "missing threshold thresholds.image" in refusal(bundle_copy)
    edit(bundle_copy, lambda m: m.update(thresholds=None))
    assert "edge-calibrate" in refusal(bundle_copy)
    assert load_bundle(bundle_copy, require_thresholds=False).thresholds is None


def test_missing_bundle_yaml_and_garbage_yaml_are_refused(bundle_copy, tmp_path):
    assert "bundle directory not found" in refusal(tmp_path / "nope")
    (bundle_copy / BUNDLE_FILE).write_text("schema_version: [1\n")
    assert "unreadable YAML" in refusal(bundle_copy)
    (bundle_copy / BUNDLE_FILE).unlink()
    assert f"missing {BUNDLE_FILE}" in refusal(bundle_copy)


def test_unsupported_input_spec_is_refused_by_field(bundle_copy):
    edit(bundle_copy, lambda m: m["input"].update(resize="letterbox"))
    assert "resize rule 'letterbox'" in refusal(bundle_copy)


def test_write_is_atomic_and_leaves_no_temp_files(bundle_copy):
    edit(bundle_copy, lambda m: m.update(note="x"))
    assert yaml.safe_load((bundle_copy / BUNDLE_FILE).read_text())["note"] == "x"
    assert not list(bundle_copy.glob(".bundle.*"))


@pytest.mark.parametrize("shape", [[1, 1, 100, 64], [1, 2, 64, 64], [1, 1, 64], "256x256"])
def test_an_anomaly_map_shape_that_is_not_the_input_divided_by_one_stride_is_refused(bundle_copy, shape):
    edit(bundle_copy, lambda m: m["outputs"]["anomaly_map"].update(shape=shape))
    assert "outputs.anomaly_map.shape" in refusal(bundle_copy)
