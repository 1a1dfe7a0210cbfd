"""Writing the PatchCore torch model as one self-contained ONNX graph.

The graph goes from the preprocessed image to the anomaly map and the image score, memory-bank
search included, so the edge runs one graph and nothing model-specific. The memory bank lives in
the graph as a constant and is searched in fixed-size chunks (see ``training.patchcore``), so no
(patches x memory bank) matrix is ever allocated at run time.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch

log = logging.getLogger(__name__)

OPSET = 18
INPUT_NAME = "image"
OUTPUT_NAMES = ("anomaly_map", "score")


def export_onnx(model: torch.nn.Module, height: int, width: int, path: Path, dynamic_batch: bool = False) -> Path:
    """Export ``model`` (eval mode, CPU) for a ``1x3xHxW`` input into a single ``.onnx`` file.

    ``dynamic_batch`` leaves the batch axis open, for tiled inputs whose window count varies with the
    frame (the windows of one frame run as one batch); otherwise it is fixed at 1.
    """
    model = model.eval().cpu()
    example = torch.zeros(2 if dynamic_batch else 1, 3, height, width, dtype=torch.float32)
    dynamic = ({0: torch.export.Dim("windows", min=1, max=1024)},) if dynamic_batch else None
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            opset_version=OPSET,
            dynamo=True,
            dynamic_shapes=dynamic,
            external_data=False,
            verbose=False,
        )
    data_file = Path(str(path) + ".data")
    if data_file.exists():  # the exporter must not split weights out: a bundle is self-contained files
        raise RuntimeError(f"{path}: exporter wrote external data {data_file.name}; refusing a split graph")
    log.info("wrote %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path
