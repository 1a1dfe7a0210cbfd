"""The report's galleries: which test images to show, drawn with the edge's own overlay.

Three questions, three galleries: which defects come closest to escaping (the lowest-scored
defect images, escapes first: what the model misses and why), which good parts come closest to
being rejected (the highest-scored good images), and what a correct detection of each defect
type looks like (NG defects spread over the type's score range). Each tile is the image beside
:func:`edge.ops.overlay.draw_overlay` of it (the heatmap scaled to the pixel threshold, the
region boxes the daemon would publish, the ground-truth outline in green), captioned with the
file name and the score against the threshold. Tiles are JPEG (a gallery of PNG photographs
would make the self-contained HTML tens of megabytes).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from calibration.evaluate import Evaluation, ImageResult, read_mask
from edge.model.imageio import read_image
from edge.model.inspector import normalize
from edge.ops.overlay import draw_overlay

TILE_WIDTH = 300  # per picture; a tile is the image and its overlay side by side
JPEG_QUALITY = 88


def lowest_defects(evaluation: Evaluation, count: int) -> list[ImageResult]:
    """Defect images with the lowest scores (escapes, if any, come first since they score lowest)."""
    return sorted((r for r in evaluation.results if r.is_defect), key=lambda r: r.score)[:count]


def highest_good(evaluation: Evaluation, count: int) -> list[ImageResult]:
    """Good images with the highest scores (false rejects, if any, come first)."""
    return sorted((r for r in evaluation.results if not r.is_defect), key=lambda r: -r.score)[:count]


def detections_by_type(evaluation: Evaluation, per_type: int) -> dict[str, list[ImageResult]]:
    """Per defect type, up to ``per_type`` correctly rejected images evenly spread over their score range."""
    out: dict[str, list[ImageResult]] = {}
    for defect_type in sorted({r.item.defect_type for r in evaluation.results if r.is_defect}):
        found = sorted((r for r in evaluation.results if r.item.defect_type == defect_type and r.verdict == "NG"),
                       key=lambda r: r.score)
        if found:
            picks = np.unique(np.linspace(0, len(found) - 1, min(per_type, len(found))).round().astype(int))
            out[defect_type] = [found[i] for i in picks]
    return out


def caption(result: ImageResult, threshold: float) -> str:
    """``type/file.png  score 1.234 > thr 1.100  NG (2 regions)``, and whether that is an escape or false reject."""
    relation = ">" if result.score > threshold else "<="
    outcome = ""
    if result.is_defect and result.verdict == "OK":
        outcome = " ESCAPE"
    elif not result.is_defect and result.verdict == "NG":
        outcome = " FALSE REJECT"
    return (f"{result.item.defect_type}/{result.item.path.name}  score {result.score:.4f} {relation} "
            f"threshold {threshold:.4f}: {result.verdict}{outcome} ({len(result.regions)} regions)")


def draw_tile(result: ImageResult, image_threshold: float, pixel_threshold: float) -> np.ndarray:
    """The image and its overlay side by side, with a two-line caption band under both."""
    image = read_image(result.item.path)
    mask = read_mask(result.item, result.shape) if result.is_defect else None
    heat = normalize(result.anomaly_map, pixel_threshold)
    overlay = draw_overlay(image, heat, result.regions, mask=mask, width=TILE_WIDTH)
    plain = draw_overlay(image, None, width=TILE_WIDTH)
    both = np.hstack([plain, np.full((plain.shape[0], 6, 3), 255, np.uint8), overlay])
    name = f"{result.item.defect_type}/{result.item.path.name}"
    relation = ">" if result.score > image_threshold else "<="
    line2 = f"score {result.score:.4f} {relation} {image_threshold:.4f} ({result.normalized_score:.3f} normalised)"
    return draw_overlay(both, None, caption=f"{name}: {result.verdict}\n{line2}", verdict=result.verdict)


def write_tiles(evaluation: Evaluation, results: Sequence[ImageResult], folder: Path,
                prefix: str) -> list[tuple[Path, str]]:
    """Draw and write the tiles as JPEG into ``folder``; (path, caption) for each."""
    assert evaluation.bundle.thresholds is not None
    thresholds = evaluation.bundle.thresholds
    folder.mkdir(parents=True, exist_ok=True)
    tiles = []
    for index, result in enumerate(results):
        tile = draw_tile(result, thresholds.image, thresholds.pixel)
        path = folder / f"{prefix}-{index:02d}-{result.item.defect_type}-{result.item.path.stem}.jpg"
        ok, buf = cv2.imencode(".jpg", tile, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError(f"cannot encode the tile for {result.item.path}")
        path.write_bytes(buf.tobytes())
        tiles.append((path, caption(result, thresholds.image)))
    return tiles
