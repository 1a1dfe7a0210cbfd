"""The export formats table: which graph formats and precisions this tool can write.

One table, checked once, so that an unsupported format/precision pair is refused up front with
the list of supported ones rather than failing half way through an export. Each row also says
which files make up the graph (an OpenVINO IR is an ``.xml`` topology plus a ``.bin`` of weights)
and whether the precision needs calibration images (INT8) and the accuracy guard (anything but
FP32, which is checked against torch by the parity check instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class GraphFormat(str, Enum):
    ONNX = "onnx"
    OPENVINO = "openvino"


class Precision(str, Enum):
    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


@dataclass(frozen=True)
class FormatInfo:
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
    return [f"{fmt.value}/{p.value}" for fmt, info in FORMATS.items() for p in info.precisions]


def needs_calibration(precision: Precision) -> bool:
    """INT8 needs activation ranges, hence calibration images."""
    return precision is Precision.INT8


def needs_accuracy_guard(precision: Precision) -> bool:
    """Every reduced precision is compared with the FP32 graph before the bundle is written."""
    return precision is not Precision.FP32


def check_format(fmt: str, precision: str) -> tuple[GraphFormat, Precision]:
    """Return the validated pair or raise ``ValueError`` listing what is supported."""
    try:
        graph_format, prec = GraphFormat(fmt), Precision(precision)
    except ValueError:
        graph_format, prec = None, None
    if graph_format is None or prec not in FORMATS[graph_format].precisions:
        raise ValueError(f"unsupported format/precision {fmt}/{precision}; supported: {', '.join(supported_pairs())}")
    return graph_format, prec
