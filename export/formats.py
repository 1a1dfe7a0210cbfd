"""What the exporter does differently per precision: calibration images (INT8) and the accuracy guard.

The formats table itself (formats, precisions, suffixes, the supported pairs) is
:mod:`edge.model.formats`, shared with the bundle manifest and the engines; only the rules that
concern making a graph live here.
"""

from __future__ import annotations

from edge.model.formats import Precision


def needs_calibration(precision: Precision) -> bool:
    """INT8 needs activation ranges, hence calibration images."""
    return precision is Precision.INT8


def needs_accuracy_guard(precision: Precision) -> bool:
    """Every reduced precision is compared with the FP32 graph before the bundle is written."""
    return precision is not Precision.FP32
