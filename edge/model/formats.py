"""The formats table: graph formats, precisions, and which pairs exist.

One table, written once, read by the exporter (to refuse an unsupported ``--format/--precision``
before it starts), by the bundle manifest (``graph.format`` and ``graph.precision`` are these
enums, so a bundle naming another pair is refused on load) and by the engines registry (which
engine runs which format). Each row also says which files make up a graph of that format: an
OpenVINO IR is an ``.xml`` topology plus a ``.bin`` of weights, an ONNX graph one ``.onnx`` file.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class GraphFormat(str, Enum):
    """How the graph is stored (``graph.format`` in ``bundle.yaml``)."""

    ONNX = "onnx"
    OPENVINO = "openvino"


class Precision(str, Enum):
    """Numeric precision of the graph's weights and compute (``graph.precision``)."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


@dataclass(frozen=True)
class FormatInfo:
    """One row: the graph file suffix, the companion weights file suffix (if any), the precisions."""

    suffix: str
    precisions: tuple[Precision, ...]
    weights_suffix: str | None = None


FORMATS: dict[GraphFormat, FormatInfo] = {
    GraphFormat.ONNX: FormatInfo(suffix=".onnx", precisions=(Precision.FP32, Precision.INT8)),
    GraphFormat.OPENVINO: FormatInfo(
        suffix=".xml", precisions=(Precision.FP32, Precision.FP16, Precision.INT8), weights_suffix=".bin"
    ),
}


def supported_pairs() -> list[str]:
    """Every ``format/precision`` pair of the table, e.g. ``onnx/fp32``."""
    return [f"{fmt.value}/{p.value}" for fmt, info in FORMATS.items() for p in info.precisions]


def check_format(fmt: str, precision: str) -> tuple[GraphFormat, Precision]:
    """Return the validated pair or raise ``ValueError`` listing what is supported."""
    try:
        graph_format, prec = GraphFormat(fmt), Precision(precision)
    except ValueError:
        graph_format, prec = None, None
    if graph_format is None or prec not in FORMATS[graph_format].precisions:
        raise ValueError(f"unsupported format/precision {fmt}/{precision}; supported: {', '.join(supported_pairs())}")
    return graph_format, prec
