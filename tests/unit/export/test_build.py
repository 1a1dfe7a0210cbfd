"""Export writes a self-contained, hashed bundle only when the graph agrees with torch."""

import onnx
import pytest
import torch

import export.build
from edge.model.bundle import load_bundle, sha256_file
from export.build import ExportError, build_bundle


def test_bundle_is_one_self_contained_graph_with_recorded_parity(tiny_bundle, tiny_run):
    bundle = load_bundle(tiny_bundle)
    files = sorted(p.name for p in tiny_bundle.iterdir())
    assert files == ["bundle.yaml", "model.onnx", "selftest.png", "train_images.sha256"]
    graph = onnx.load(str(bundle.graph_path))
    assert [i.name for i in graph.graph.input] == ["image"]
    assert [o.name for o in graph.graph.output] == ["anomaly_map", "score"]
    parity = bundle.manifest.export.parity
    assert parity.n_images > 0
    assert parity.max_rel_score_diff <= parity.tolerance == export.build.PARITY_TOLERANCE
    for name, entry in bundle.manifest.files.items():
        assert sha256_file(tiny_bundle / name) == entry.sha256


def test_training_manifest_lists_every_training_image(tiny_bundle, tiny_run):
    from training.train import load_run

    _, run = load_run(tiny_run)
    lines = (tiny_bundle / "train_images.sha256").read_text().splitlines()
    assert len(lines) == run["n_train_images"] == len(run["train_images"])


def test_export_refuses_to_overwrite_without_flag(tiny_run, tiny_bundle):
    with pytest.raises(ExportError, match="already exists"):
        build_bundle(tiny_run, tiny_bundle)


def test_graph_that_disagrees_with_torch_is_refused_and_nothing_is_left(tiny_run, tmp_path, monkeypatch):
    """An exporter bug is a fault no real part produces on demand: fake it by exporting a perturbed bank."""
    real_export = export.build.export_onnx

    def export_perturbed(model, height, width, path, **options):
        original = {k: v.clone() for k, v in model.state_dict().items()}
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                if "bank" in name and buffer.dtype.is_floating_point:
                    buffer.mul_(1.5)
        try:
            return real_export(model, height, width, path, **options)
        finally:
            model.load_state_dict(original)

    monkeypatch.setattr(export.build, "export_onnx", export_perturbed)
    with pytest.raises(ExportError, match="parity check failed"):
        build_bundle(tiny_run, tmp_path / "bad")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("stride", [1, 8])
def test_map_stride_override_exports_the_map_it_declares_and_still_matches_torch(tiny_run, tmp_path, bottle, stride):
    from calibration.calibrate import calibrate
    from edge.model.engines import RuntimeOptions
    from edge.model.imageio import read_image
    from edge.model.inspector import Inspector
    from training.families.registry import family_of, load_run
    from training.scorer import TorchScorer

    out = build_bundle(tiny_run, tmp_path / f"s{stride}", map_stride=stride)
    bundle = load_bundle(out, require_thresholds=False)
    size = (bundle.spec.height // stride, bundle.spec.width // stride)
    assert bundle.manifest.outputs.anomaly_map.shape == (1, 1, *size)
    assert bundle.manifest.model.config["map_stride"] == stride
    parity = bundle.manifest.export.parity
    assert parity.max_rel_score_diff <= parity.tolerance
    calibrate(out, allow_few=True)
    image = read_image(min((bottle / "test" / "broken_large").glob("*.png")))
    # The graph is the run's model at the new stride with its wide-map scale fitted again at it.
    model, run = load_run(tiny_run)
    family_of(tiny_run).set_map_stride(model, run, stride)
    assert model.combines_maps
    torch_score, _ = TorchScorer(model, bundle.spec)(image)
    for backend in ("onnxruntime", "openvino"):
        inspection = Inspector(load_bundle(out), backend=backend,
                               options=RuntimeOptions(threads=1, cache=False)).inspect(image)
        assert inspection.anomaly_map.shape == size
        assert inspection.score == pytest.approx(torch_score, rel=1e-3)
        for region in inspection.regions:  # boxes are in image pixels whatever the map's size
            assert 0 <= region.x < image.shape[1] and region.x + region.w <= image.shape[1] + 1
            assert 0 <= region.y < image.shape[0] and region.y + region.h <= image.shape[0] + 1


def test_bundle_carries_a_self_test_probe_that_the_edge_scores_as_recorded(tiny_bundle, tmp_path):
    import shutil

    import yaml

    from edge.model.bundle import BundleError
    from edge.model.inspector import Inspector
    from edge.model.selftest import run_selftest

    bundle = load_bundle(tiny_bundle)
    spec = bundle.manifest.selftest
    assert spec.image in bundle.manifest.files and spec.tolerance == export.build.PARITY_TOLERANCE
    result = run_selftest(bundle, Inspector(bundle))
    assert result is not None and result["abs_diff"] <= result["limit"]
    for backend in ("openvino",):  # the same ONNX graph on the other engine passes too
        assert run_selftest(bundle, Inspector(bundle, backend=backend)) is not None

    tampered = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, tampered)
    meta = yaml.safe_load((tampered / "bundle.yaml").read_text())
    meta["selftest"]["score"] = spec.score * 1.01 + 0.01
    (tampered / "bundle.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    moved = load_bundle(tampered)
    with pytest.raises(BundleError, match="self-test failed"):
        run_selftest(moved, Inspector(moved))
