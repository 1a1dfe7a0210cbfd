"""The load-time self-test: a bundle must score its own probe image as it did at export.

``bundle.yaml`` records a probe image (``selftest.png``, in the bundle and hash-checked) and the
score the exported graph gave it, run through this same edge code at export. Before a bundle is
allowed to decide anything, at start and on every reload, the daemon scores the probe again and
compares. This is the parity check carried to the line: hashes prove the files are the ones
exported, the self-test proves that this machine's engine, version and settings execute them
the same way (a different onnxruntime/OpenVINO build, a changed preprocessing, an INT8 graph on
a CPU that mis-executes it). Bundles exported before the self-test existed have no probe; they
load with a warning.
"""

from __future__ import annotations

import logging
from typing import Any

from edge.model.bundle import Bundle, BundleError
from edge.model.imageio import ImageReadError, read_image
from edge.model.inspector import Inspector

log = logging.getLogger(__name__)

SELFTEST_IMAGE = "selftest.png"


def run_selftest(bundle: Bundle, inspector: Inspector) -> dict[str, Any] | None:
    """Score the probe; the measured figures, None when the bundle has no probe; BundleError on a mismatch."""
    spec = bundle.manifest.selftest  # its fields were validated with the rest of bundle.yaml
    if spec is None:
        log.warning("bundle %s has no self-test probe (exported before it existed): not checked", bundle.bundle_id)
        return None
    expected, tolerance = spec.score, spec.tolerance
    try:
        image = read_image(bundle.root / spec.image)
    except ImageReadError as exc:
        raise BundleError(f"{bundle.root}: self-test probe unreadable: {exc}") from None
    inspector.trained_channels = 1 if image.ndim == 2 else int(image.shape[2])  # the probe is a held-out image
    score = inspector.run(image).score
    diff = abs(score - expected)
    limit = tolerance * max(1.0, abs(expected))
    result = {"score": score, "expected": expected, "abs_diff": diff, "limit": limit}
    if not diff <= limit:
        raise BundleError(
            f"{bundle.root}: self-test failed on {inspector.backend.name}: probe scored {score:.6g}, export recorded "
            f"{expected:.6g} (|diff| {diff:.3g} > {limit:.3g})"
        )
    log.info("self-test passed on %s: probe score %.6g (export %.6g, |diff| %.2g)", inspector.backend.name, score,
             expected, diff)
    return result
