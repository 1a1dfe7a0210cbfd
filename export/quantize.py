"""Turning the FP32 ONNX graph into the other rows of the formats table: IR FP32/FP16, and INT8.

OpenVINO IR is made by ``openvino.convert_model`` and ``openvino.save_model`` (``compress_to_fp16``
only when FP16 is asked: OpenVINO's default would silently halve an "FP32" IR). OpenVINO INT8 is
NNCF post-training quantisation of that IR; ONNX INT8 is onnxruntime static quantisation in QDQ
form with unsigned 8-bit activations, signed 8-bit per-channel weights and ``reduce_range``
(7-bit weights), the scheme that does not saturate on CPUs without VNNI (AVX2's ``vpmaddubsw``
adds pairs of u8 x s8 products into int16, which overflows with full-range weights); NNCF's
``overflow_fix`` does the same for OpenVINO.

Only the backbone is quantised (:func:`head_names`). The memory-bank search (``|q|^2 - 2 q.b + |b|^2`` then a minimum)
stays FP32 because the distance of a normal patch to its nearest neighbour is a small difference
of large terms: 8-bit rounding of ``q.b`` is of the order of the distance itself and would turn
the nearest-neighbour score into noise. The upsampling, Gaussian blur and maximum that follow are
a negligible part of the time and stay FP32 too, so the scores keep their calibrated units; so does
the patch-feature pooling before the search (see :func:`head_names` for the measurement).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.model.imageio import list_images, read_image
from edge.model.manifest import CalibrationImages, QuantizationRecord
from edge.model.preprocess import InputSpec, preprocess

log = logging.getLogger(__name__)

DEFAULT_CALIB_COUNT = 32
FP32_PART = (
    "patch-feature pooling and concat, memory-bank search, upsampling, Gaussian blur, max "
    "(quantising them ruined the scores: see export/quantize.py)"
)


@dataclass(frozen=True)
class CalibrationSet:
    """Preprocessed calibration tensors and the record of where they came from (for bundle.yaml)."""

    tensors: list[np.ndarray]
    record: CalibrationImages


def select_calibration_images(paths: list[Path], count: int) -> list[Path]:
    """``count`` images evenly spaced over ``paths`` sorted by name (all of them if fewer)."""
    ordered = sorted(paths)
    if len(ordered) <= count:
        return ordered
    index = np.linspace(0, len(ordered) - 1, count).round().astype(int)
    return [ordered[i] for i in index]


def calibration_set(run: dict[str, Any], spec: InputSpec, calib_dir: Path | None, count: int) -> CalibrationSet:
    """Calibration tensors from ``calib_dir`` or, by default, the run's training images (good parts)."""
    if calib_dir is not None:
        available = list_images(calib_dir)
        source = str(Path(calib_dir).resolve())
    else:
        available = [Path(p) for p in run["train_images"]]
        source = "training images of the run (good parts)"
    if not available:
        raise ValueError(f"no calibration images in {source}")
    chosen = select_calibration_images(available, count)
    # One tensor per window (a tiled frame gives several), each 1x3xHxW.
    tensors = [window[None] for p in chosen for window in preprocess(read_image(p), spec)]
    record = CalibrationImages(
        source=source,
        n_available=len(available),
        count=len(chosen),
        sampling=f"{len(chosen)} evenly spaced over the {len(available)} images sorted by path",
        images=[str(p) for p in chosen],
    )
    return CalibrationSet(tensors=tensors, record=record)


def head_names(nodes: list[tuple[str, str, list[str]]], search_type: str, pool_type: str) -> list[str]:
    """Names of the nodes kept in FP32, from ``(name, type, names of producer nodes)`` in graph order.

    The backbone is what the search's query input depends on, up to the patch-feature pooling;
    the pooling and everything after it (aggregation, resize, concat, search, upsampling, blur,
    max) is the head. Measured on bottle: with the pooled features quantised, OpenVINO's low-
    precision transformations carry INT8 into the search and image AUROC fell to 0.48; with the
    head in FP32 it stays at 1.0.
    """
    inputs = {name: producers for name, _, producers in nodes}
    searches = [name for name, op_type, _ in nodes if op_type == search_type]
    if not searches:
        raise ValueError(f"graph has no {search_type}: cannot find the memory-bank search to keep in FP32")
    upstream: set[str] = set()
    stack = list(inputs[searches[0]][:1])
    while stack:
        name = stack.pop()
        if name not in upstream:
            upstream.add(name)
            stack.extend(inputs.get(name, []))
    head = {name for name, _, _ in nodes if name not in upstream}
    for name, op_type, producers in nodes:  # graph order: a node after a head node is head
        if op_type == pool_type or any(p in head and p in upstream for p in producers):
            head.add(name)
    return [name for name, _, _ in nodes if name in head]


def onnx_head_nodes(model: Any) -> list[str]:
    """Names of the ONNX nodes kept in FP32 (see :func:`head_names`)."""
    producers = {out: node.name for node in model.graph.node for out in node.output}
    nodes = [(n.name, n.op_type, [producers[i] for i in n.input if i in producers]) for n in model.graph.node]
    return head_names(nodes, "MatMul", "AveragePool")


def openvino_head_ops(model: Any) -> list[str]:
    """Friendly names of the OpenVINO ops kept in FP32 (see :func:`head_names`)."""
    skip = {"Parameter", "Constant", "Result"}
    nodes = [(op.get_friendly_name(), op.get_type_name(),
              [op.input_value(i).get_node().get_friendly_name() for i in range(op.get_input_size())])
             for op in model.get_ordered_ops()]
    return [name for name in head_names(nodes, "MatMul", "AvgPool") if name not in skip
            and next(t for n, t, _ in nodes if n == name) not in skip]


def save_openvino_ir(onnx_path: Path, xml_path: Path, fp16: bool) -> Path:
    """Convert the ONNX graph to IR (``.xml`` + ``.bin``), FP16 weights only when ``fp16``."""
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    ov.save_model(model, str(xml_path), compress_to_fp16=fp16)
    return xml_path


def quantize_openvino_int8(onnx_path: Path, xml_path: Path, calib: CalibrationSet) -> QuantizationRecord:
    """NNCF post-training INT8 of the backbone; write the IR; return what was done for bundle.yaml."""
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        OverflowFix,
    )

    model = ov.convert_model(str(onnx_path))
    head = openvino_head_ops(model)
    quantized = nncf.quantize(
        model,
        nncf.Dataset(calib.tensors),
        subset_size=len(calib.tensors),
        preset=nncf.QuantizationPreset.PERFORMANCE,
        ignored_scope=nncf.IgnoredScope(names=head, validate=False),
        advanced_parameters=AdvancedQuantizationParameters(overflow_fix=OverflowFix.ENABLE),
    )
    ov.save_model(quantized, str(xml_path), compress_to_fp16=False)
    return QuantizationRecord(
        tool=f"nncf {nncf.__version__} post-training quantisation",
        scheme="symmetric 8-bit (preset performance), overflow_fix enable (AVX2 without VNNI)",
        fp32_ops=len(head),
        fp32_part=FP32_PART,
    )


def quantize_onnx_int8(onnx_path: Path, out_path: Path, input_name: str, calib: CalibrationSet,
                       activation: str = "uint8", reduce_range: bool = True) -> QuantizationRecord:
    """onnxruntime static QDQ INT8 of the backbone (U8S8, reduce_range by default); return the record."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    model = onnx.load(str(onnx_path))
    head = onnx_head_nodes(model)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items: Iterator[dict[str, np.ndarray]] = iter([{input_name: t} for t in calib.tensors])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._items, None)

    activation_type = QuantType.QUInt8 if activation == "uint8" else QuantType.QInt8
    quantize_static(
        str(onnx_path), str(out_path), Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        reduce_range=reduce_range,
        activation_type=activation_type,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=head,
    )
    return QuantizationRecord(
        tool="onnxruntime static quantisation (QDQ, MinMax calibration)",
        scheme=f"activations {'u8' if activation == 'uint8' else 's8'}, weights s8 per channel, "
        f"reduce_range {reduce_range}",
        fp32_ops=len(head),
        fp32_part=FP32_PART,
    )
