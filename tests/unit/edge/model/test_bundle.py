"""Bundle validation refuses every broken bundle with one line naming the problem."""

import shutil
from pathlib import Path

import pytest
import yaml

from edge.model.bundle import (
    BUNDLE_FILE,
    BundleError,
    load_bundle,
    read_bundle_yaml,
    write_bundle_yaml,
)

DEMO_BUNDLE = Path(__file__).resolve().parents[4] / "edge" / "demo" / "bundle"


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):
    return shutil.copytree(tiny_bundle, tmp_path / "bundle")


@pytest.fixture
def demo_copy(tmp_path):
    return shutil.copytree(DEMO_BUNDLE, tmp_path / "demo")


def edit(bundle_dir, change):
    """Change the raw bundle.yaml data and write it back as plain YAML (the writer would refuse a broken one)."""
    meta = read_bundle_yaml(bundle_dir)
    change(meta)
    (Path(bundle_dir) / BUNDLE_FILE).write_text(yaml.safe_dump(meta, sort_keys=False))


def refusal(bundle_dir, **kwargs) -> str:
    with pytest.raises(BundleError) as info:
        load_bundle(bundle_dir, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_calibrated_bundle_loads_with_its_contract(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    manifest = bundle.manifest
    assert bundle.thresholds is not None and bundle.thresholds.image > 0
    stride = manifest.model.config["map_stride"]
    assert manifest.outputs.anomaly_map.shape == (1, 1, bundle.spec.height // stride, bundle.spec.width // stride)
    assert bundle.map_shape == (bundle.spec.height // stride, bundle.spec.width // stride)
    assert manifest.model.family == "patchcore"
    assert manifest.tools is not None and set(manifest.tools) >= {"python", "torch", "onnx", "onnxruntime", "edge"}
    assert manifest.training is not None and manifest.training.n_train_images > 0
    assert manifest.export is not None and manifest.export.parity is not None
    assert manifest.export.parity.max_rel_score_diff <= manifest.export.parity.tolerance


def test_the_demo_bundle_loads_and_is_rewritten_byte_for_byte(demo_copy):
    """The writer keeps every key of an existing bundle, in the order bundle.yaml has always had."""
    original = (demo_copy / BUNDLE_FILE).read_text()
    bundle = load_bundle(demo_copy)
    assert bundle.manifest.selftest is not None and bundle.manifest.thresholds is not None
    write_bundle_yaml(demo_copy, bundle.manifest)
    assert (demo_copy / BUNDLE_FILE).read_text() == original


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
    assert "bundle.yaml: thresholds.image: Field required" in refusal(bundle_copy)
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
    edit(bundle_copy, lambda m: m["input"].update(resize="crop"))
    assert "input.resize: Input should be 'stretch', 'letterbox' or 'tile' (got 'crop')" in refusal(bundle_copy)


def test_write_is_atomic_and_leaves_no_temp_files(bundle_copy):
    manifest = load_bundle(bundle_copy).manifest
    manifest.training.seed = 7
    write_bundle_yaml(bundle_copy, manifest)
    assert yaml.safe_load((bundle_copy / BUNDLE_FILE).read_text())["training"]["seed"] == 7
    assert not list(bundle_copy.glob(".bundle.*"))


def test_the_writer_refuses_a_manifest_the_edge_would_refuse(demo_copy):
    manifest = load_bundle(demo_copy).manifest
    manifest.thresholds.image = -1.0  # plain assignment is not validated; the writer is
    with pytest.raises(BundleError, match="thresholds.image: Input should be greater than 0"):
        write_bundle_yaml(demo_copy, manifest)
    assert load_bundle(demo_copy).thresholds.image > 0  # the file on disk is untouched


def _drop(path):
    def change(meta):
        *parents, key = path
        node = meta
        for part in parents:
            node = node[part]
        del node[key]
    return change


def _set(path, value):
    def change(meta):
        *parents, key = path
        node = meta
        for part in parents:
            node = node[part]
        node[key] = value
    return change


@pytest.mark.parametrize(("change", "expected"), [
    # a field removed
    (_drop(["bundle_id"]), "bundle_id: Field required"),
    (_drop(["graph", "file"]), "graph.file: Field required"),
    (_drop(["outputs", "score", "name"]), "outputs.score.name: Field required"),
    (_drop(["normalization", "method"]), "normalization.method: Field required"),
    (_drop(["files", "model.onnx", "sha256"]), "files.model.onnx.sha256: Field required"),
    (_drop(["selftest", "score"]), "selftest.score: Field required"),
    # a field of the wrong type
    (_set(["input", "height"], "tall"), "input.height: Input should be a valid integer"),
    (_set(["thresholds", "image"], "high"), "thresholds.image: Input should be a valid number"),
    (_set(["graph", "format"], "tflite"), "graph.format: Input should be 'onnx' or 'openvino'"),
    (_set(["files"], ["model.onnx"]), "files: Input should be a valid dictionary"),
    (_set(["input", "mean"], [0.5, 0.5]), "input.mean.2: Field required"),
    # a value out of range
    (_set(["thresholds", "image"], -1.0), "thresholds.image: Input should be greater than 0 (got -1.0)"),
    (_set(["thresholds", "pixel"], float("nan")), "thresholds.pixel: Input should be a finite number"),
    (_set(["input", "height"], 16), "input.height: Input should be greater than or equal to 32"),
    (_set(["input", "std"], [0.2, 0.0, 0.2]), "input.std.1: Input should be greater than 0"),
    (_set(["graph", "precision"], "fp16"), "graph: unsupported format/precision onnx/fp16"),
    (_set(["graph", "file"], "model.xml"), "graph: graph file 'model.xml' does not end in .onnx"),
    (_set(["files", "model.onnx", "sha256"], "abc"), "files.model.onnx.sha256: String should match pattern"),
    (_set(["files"], {}), "files: Dictionary should have at least 1 item"),
    # a key the edge would otherwise silently ignore
    (_set(["graph", "input"], "image"), "graph.input: Extra inputs are not permitted"),
    (_set(["thresholdz"], {"image": 1.0}), "thresholdz: Extra inputs are not permitted"),
])
def test_a_field_removed_retyped_or_out_of_range_is_refused_naming_it(demo_copy, change, expected):
    edit(demo_copy, change)
    message = refusal(demo_copy)
    assert message.startswith(f"{demo_copy / BUNDLE_FILE}: {expected}"), message


def test_extra_keys_in_the_records_of_how_a_bundle_was_made_are_kept(demo_copy):
    edit(demo_copy, _set(["training", "operator"], "line 3 night shift"))
    bundle = load_bundle(demo_copy)
    write_bundle_yaml(demo_copy, bundle.manifest)
    assert read_bundle_yaml(demo_copy)["training"]["operator"] == "line 3 night shift"


@pytest.mark.parametrize("shape", [[1, 1, 100, 64], [1, 2, 64, 64], [1, 1, 64], "256x256"])
def test_an_anomaly_map_shape_that_is_not_the_input_divided_by_one_stride_is_refused(bundle_copy, shape):
    edit(bundle_copy, lambda m: m["outputs"]["anomaly_map"].update(shape=shape))
    assert "outputs.anomaly_map.shape" in refusal(bundle_copy)


def test_a_hand_edited_pixel_threshold_that_does_not_say_so_is_refused(demo_copy):
    edit(demo_copy, lambda meta: meta["thresholds"].update(pixel=9.0))
    message = refusal(demo_copy)
    assert "thresholds.pixel 9 differs from thresholds.image" in message
    assert "pixel_strategy is same_as_image" in message and "edge-calibrate BUNDLE --set-threshold" in message


def test_a_pixel_threshold_recorded_as_manual_loads(demo_copy):
    edit(demo_copy, lambda meta: meta["thresholds"].update(pixel=9.0, pixel_strategy="manual"))
    assert load_bundle(demo_copy).thresholds.pixel == 9.0
