"""onnxruntime and OpenVINO run the same bundle to the same scores; the bundle's format picks the engine."""

import shutil

import numpy as np
import pytest

from edge.model.bundle import BundleError, load_bundle, write_bundle_yaml
from edge.model.engines import BACKENDS, DEFAULT_BACKEND, RuntimeOptions, backend_for
from edge.model.formats import FORMATS, GraphFormat
from edge.model.imageio import read_image
from edge.model.inspector import Inspector

# Same FP32 graph, two engines: differences are float reordering only.
SCORE_RTOL = 1e-4
MAP_ATOL = 1e-3


def test_onnxruntime_and_openvino_agree_on_the_same_bundle_on_real_images(tiny_bundle, bottle, tmp_path):
    bundle = load_bundle(tiny_bundle)
    ort = Inspector(bundle, threads=1, backend="onnxruntime")
    ov = Inspector(bundle, backend="openvino", options=RuntimeOptions(threads=1, cache_dir=tmp_path / "cache"))
    paths = sorted((bottle / "test" / "good").glob("*.png"))[:3] + sorted((bottle / "test" / "contamination").glob("*.png"))[:3]
    for path in paths:
        image = read_image(path)
        a, b = ort.inspect(image), ov.inspect(image)
        assert b.score == pytest.approx(a.score, rel=SCORE_RTOL)
        assert np.abs(a.anomaly_map - b.anomaly_map).max() <= MAP_ATOL * max(1.0, a.score)
        assert a.verdict == b.verdict
    assert any((tmp_path / "cache").iterdir())  # the cache went where it was told


def test_openvino_cache_defaults_under_the_bundle_never_the_working_directory(tiny_bundle, bottle, tmp_path,
                                                                               monkeypatch):
    bundle_dir = shutil.copytree(tiny_bundle, tmp_path / "bundle")  # the cache lands in it: not the shared one
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    inspector = Inspector(load_bundle(bundle_dir), backend="openvino", options=RuntimeOptions(threads=1))
    assert inspector.backend.cache_dir == bundle_dir / ".cache" / "openvino"
    assert list(workdir.iterdir()) == []
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    inspector = Inspector(load_bundle(bundle_dir), backend="openvino", options=RuntimeOptions(threads=1))
    assert inspector.backend.cache_dir.is_relative_to(tmp_path / "state")


def test_bundle_format_picks_the_backend_and_onnxruntime_refuses_an_ir(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    assert backend_for(bundle) == "onnxruntime"
    assert backend_for(bundle, "openvino") == "openvino"
    ir_graph = bundle.manifest.graph.model_copy(update={"format": GraphFormat.OPENVINO, "file": "model.xml"})
    ir_bundle = type(bundle)(root=bundle.root, manifest=bundle.manifest.model_copy(update={"graph": ir_graph}))
    assert backend_for(ir_bundle) == "openvino"
    with pytest.raises(BundleError, match="backend onnxruntime cannot run a openvino graph"):
        backend_for(ir_bundle, "onnxruntime")


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_a_graph_whose_map_is_not_the_size_bundle_yaml_declares_is_refused(tiny_bundle, tmp_path, backend):
    """Region boxes are scaled by the declared map size: a mismatch would misplace them, so it is refused."""
    bundle_dir = shutil.copytree(tiny_bundle, tmp_path / "bundle")
    manifest = load_bundle(bundle_dir).manifest
    _, _, height, width = manifest.outputs.anomaly_map.shape
    manifest.outputs.anomaly_map.shape = (1, 1, height // 2, width // 2)
    write_bundle_yaml(bundle_dir, manifest)
    with pytest.raises(BundleError, match=f"outputs a {height}x{width} anomaly map but bundle.yaml declares "
                                          f"{height // 2}x{width // 2}"):
        Inspector(load_bundle(bundle_dir), backend=backend, options=RuntimeOptions(threads=1, cache=False))


def test_every_row_of_the_formats_table_has_a_default_engine_that_can_run_it():
    assert set(DEFAULT_BACKEND) == set(FORMATS)
    for graph_format, name in DEFAULT_BACKEND.items():
        assert graph_format in BACKENDS[name].formats


def test_onnxruntime_without_spinning_workers_gives_the_same_answers_and_says_so(tiny_bundle, bottle):
    """``runtime.spin`` (off by default) only changes how idle workers wait, never a score; it is reported."""
    bundle = load_bundle(tiny_bundle)
    spinning = Inspector(bundle, backend="onnxruntime", options=RuntimeOptions(threads=2, spin=True))
    sleeping = Inspector(bundle, backend="onnxruntime", options=RuntimeOptions(threads=2))
    assert spinning.backend.settings()["spin"] is True and sleeping.backend.settings()["spin"] is False
    for path in sorted((bottle / "test" / "contamination").glob("*.png"))[:2]:
        image = read_image(path)
        a, b = spinning.inspect(image), sleeping.inspect(image)
        assert b.score == pytest.approx(a.score, rel=1e-6)  # at most float reordering between two sessions
        assert np.allclose(a.anomaly_map, b.anomaly_map, rtol=1e-6, atol=1e-6)
