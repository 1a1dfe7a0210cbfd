"""Export writes a self-contained, hashed bundle only when the graph agrees with torch."""

import onnx
import pytest
import torch

import export.build
from edge.bundle import load_bundle, sha256_file
from export.build import ExportError, build_bundle


def test_bundle_is_one_self_contained_graph_with_recorded_parity(tiny_bundle, tiny_run):
    bundle = load_bundle(tiny_bundle)
    files = sorted(p.name for p in tiny_bundle.iterdir())
    assert files == ["bundle.yaml", "model.onnx", "train_images.sha256"]
    graph = onnx.load(str(bundle.graph_path))
    assert [i.name for i in graph.graph.input] == ["image"]
    assert [o.name for o in graph.graph.output] == ["anomaly_map", "score"]
    parity = bundle.meta["export"]["parity"]
    assert parity["n_images"] > 0
    assert parity["max_rel_score_diff"] <= parity["tolerance"] == export.build.PARITY_TOLERANCE
    for name, entry in bundle.meta["files"].items():
        assert sha256_file(tiny_bundle / name) == entry["sha256"]


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

    def export_perturbed(model, height, width, path):
        original = {k: v.clone() for k, v in model.state_dict().items()}
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                if "bank" in name and buffer.dtype.is_floating_point:
                    buffer.mul_(1.5)
        try:
            return real_export(model, height, width, path)
        finally:
            model.load_state_dict(original)

    monkeypatch.setattr(export.build, "export_onnx", export_perturbed)
    with pytest.raises(ExportError, match="parity check failed"):
        build_bundle(tiny_run, tmp_path / "bad")
    assert list(tmp_path.iterdir()) == []
