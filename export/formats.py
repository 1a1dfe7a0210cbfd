"""The export formats table: which graph formats and precisions this tool can write.

One table, checked once, so that an unsupported format/precision pair is refused up front with
the list of supported ones rather than failing half way through an export.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class GraphFormat(str, Enum):
    ONNX = "onnx"


class Precision(str, Enum):
    FP32 = "fp32"


@dataclass(frozen=True)
class FormatInfo:
    suffix: str
    precisions: tuple[Precision, ...]


FORMATS: dict[GraphFormat, FormatInfo] = {
    GraphFormat.ONNX: FormatInfo(suffix=".onnx", precisions=(Precision.FP32,)),
}


def supported_pairs() -> list[str]:
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
