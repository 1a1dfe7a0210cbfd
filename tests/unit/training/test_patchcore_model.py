"""The PatchCore module: output shapes, and an ONNX graph that scores like the torch model."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from training.backbones import BACKBONES
from training.patchcore import PatchCore, PatchCoreConfig


def _fitted_model(chunk_size: int) -> PatchCore:
    model = PatchCore(PatchCoreConfig(input_size=(96, 128), chunk_size=chunk_size)).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        bank = model.embed(torch.randn(2, 3, 96, 128, generator=generator))
    model.set_memory_bank(bank[::3])  # 2 * 12 * 16 / 3 = 128 rows
    return model


def test_forward_returns_a_full_size_map_and_its_maximum_as_score(torch_home: Path) -> None:
    model = _fitted_model(chunk_size=50)
    with torch.no_grad():
        anomaly_map, score = model(torch.randn(2, 3, 96, 128))
    assert anomaly_map.shape == (2, 1, 96, 128) and anomaly_map.dtype == torch.float32
    assert score.shape == (2,) and torch.equal(score, anomaly_map.amax(dim=(1, 2, 3)))
    assert (anomaly_map >= 0).all()


def test_chunk_size_does_not_change_the_scores(torch_home: Path) -> None:
    x = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    model = _fitted_model(chunk_size=50)
    with torch.no_grad():
        chunked = model(x)[0]
        model.config = replace(model.config, chunk_size=4096)
        reference = model(x)[0]
    torch.testing.assert_close(chunked, reference, rtol=1e-4, atol=1e-4)


def test_onnx_export_matches_torch_score(torch_home: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    model = _fitted_model(chunk_size=50)  # 128 rows: chunks of 50, 50 and 28
    x = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(2))
    path = tmp_path / "patchcore.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["image"], output_names=["anomaly_map", "score"],
                      opset_version=18, dynamo=True, external_data=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_map, onnx_score = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        torch_map, torch_score = model(x)
    np.testing.assert_allclose(onnx_score, torch_score.numpy(), rtol=1e-4)
    np.testing.assert_allclose(onnx_map, torch_map.numpy(), rtol=1e-3, atol=1e-3 * float(torch_score))


def test_config_round_trips_through_its_dict_and_refuses_unknown_keys() -> None:
    config = PatchCoreConfig(backbone="efficientnet_lite0", input_size=(224, 320), coreset_ratio=0.05).resolved()
    assert PatchCoreConfig.from_dict(config.to_dict()) == config
    assert config.layers == BACKBONES["efficientnet_lite0"].default_layers
    with pytest.raises(ValueError, match="unknown keys"):
        PatchCoreConfig.from_dict({**config.to_dict(), "k": 3})
