"""Every model family exports to the same bundle contract, checked against torch, and runs in edge unchanged."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from calibration.calibrate import calibrate
from edge.model.bundle import load_bundle
from edge.model.imageio import read_image
from edge.model.inspector import Inspector
from export.build import build_bundle
from training.families.registry import train
from training.runs import TrainRequest

REPO = Path(__file__).resolve().parents[3]
RUNS = {
    "padim": {"config": {"input_size": [128, 128], "n_features": 40}, "train": {}},
    "autoencoder": {"config": {"input_size": [64, 64], "widths": [8, 16, 32], "bottleneck": 32},
                    "train": {"epochs": 1, "batch_size": 4, "loss": {"perceptual": 0.0}}},
}


@pytest.fixture(scope="module", params=sorted(RUNS))
def family_bundle(request, tmp_path_factory, bottle) -> tuple[str, Path]:
    pytest.importorskip("torch")
    name = request.param
    root = tmp_path_factory.mktemp(name)
    run, _ = train(name, TrainRequest(data_dir=bottle, out_dir=root / "run", config=RUNS[name]["config"],
                                      train=RUNS[name]["train"], device="cpu", max_images=8, progress=False))
    bundle = build_bundle(run, root / "bundle")
    calibrate(bundle, allow_few=True)  # a handful of validation images: fast, and not a line calibration
    return name, bundle


def test_bundle_declares_its_family_and_records_parity_with_torch(family_bundle) -> None:
    name, path = family_bundle
    bundle = load_bundle(path)
    manifest = bundle.manifest
    assert manifest.model.family == name and manifest.bundle_id.startswith(f"{name}-")
    parity = manifest.export.parity
    assert parity.n_images > 0 and parity.max_rel_score_diff <= parity.tolerance
    assert manifest.training.resources.cpu_s > 0 and manifest.training.resources.peak_rss_mb > 0
    graph = onnx.load(str(bundle.graph_path))
    assert [i.name for i in graph.graph.input] == ["image"]
    assert [o.name for o in graph.graph.output] == ["anomaly_map", "score"]
    height, width = bundle.map_shape
    assert manifest.outputs.anomaly_map.shape == (1, 1, height, width)
    if name == "padim":
        assert manifest.model.gaussians.features == RUNS["padim"]["config"]["n_features"]
    else:
        assert manifest.model.parameters > 0 and manifest.model.trainer["epochs_run"] == 1


def test_the_autoencoder_input_rule_is_plain_scale_mean_std_in_bundle_yaml(family_bundle) -> None:
    name, path = family_bundle
    spec = load_bundle(path).spec
    if name == "autoencoder":  # [-1, 1]: (x / 255 - 0.5) / 0.5
        assert (spec.scale, spec.mean, spec.std) == (1 / 255, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    else:
        assert spec.mean != (0.5, 0.5, 0.5)


def test_edge_inspects_a_real_defect_with_any_family(family_bundle, bottle) -> None:
    _, path = family_bundle
    inspector = Inspector(load_bundle(path))
    result = inspector.inspect(read_image(bottle / "test" / "broken_large" / "000.png"))
    assert result.anomaly_map.shape == load_bundle(path).map_shape
    assert result.verdict in ("OK", "NG") and result.score > 0


def test_edge_has_no_family_specific_code() -> None:
    """Only the manifest's record fields name families (in their descriptions); no edge code does."""
    for path in (REPO / "edge").rglob("*.py"):
        if path == REPO / "edge" / "model" / "manifest.py":
            continue
        text = path.read_text().lower()
        assert not any(name in text for name in ("patchcore", "padim", "autoencoder")), path
