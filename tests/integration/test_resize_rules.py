"""Letterbox and tiles end to end on non-square frames: the region box lands on the defect in frame pixels.

The strips are drawn by the project (:mod:`training.synthetic_strips`): every frame has another
length, so every frame has another letterbox padding or another number of tiles. Each rule is
trained, exported (parity-checked), calibrated and run through the edge Inspector; the most
anomalous region of every defect frame must overlap the drawn defect, in the frame's own pixels,
and the map the overlays and the live view stretch over the frame must peak on it.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.model.bundle import load_bundle
from edge.model.imageio import read_image
from edge.model.inspector import Inspector, Region
from edge.ops.overlay import heat_from_png
from training.synthetic_strips import write_dataset

RULES = {
    "letterbox": {"size": (64, 256), "resize": "letterbox"},
    "tile": {"size": (64, 128), "resize": "tile", "tile_scale": 1.0},
}


@pytest.fixture(scope="module")
def strips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("strips"), n_train=20, n_test_good=2, n_test_per_defect=3,
                         height=64, min_length=200, max_length=420, seed=3)


def _bundle(strips: Path, work: Path, rule: dict[str, object]) -> Path:
    pytest.importorskip("torch")
    from calibration.calibrate import calibrate
    from export.build import build_bundle
    from training.inputs import InputRule
    from training.patchcore import PatchCoreConfig
    from training.train import fit

    run = fit(strips, work / "run", PatchCoreConfig(coreset_ratio=0.1), val_fraction=0.2, device="cpu",
              progress=False, input_rule=InputRule(**rule))  # type: ignore[arg-type]
    bundle = build_bundle(run, work / "bundle")
    calibrate(bundle, allow_few=True)  # 4 validation strips: thresholds for this test, not a line
    return bundle


def _defect_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask > 127)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _overlaps(region: Region, box: tuple[int, int, int, int]) -> bool:
    x0, y0, x1, y1 = box
    return region.x < x1 and region.x + region.w > x0 and region.y < y1 and region.y + region.h > y0


@pytest.mark.parametrize("name", list(RULES))
def test_the_top_region_lies_on_the_defect_in_frame_pixels(name: str, strips: Path, tmp_path: Path) -> None:
    bundle = load_bundle(_bundle(strips, tmp_path, RULES[name]))
    assert bundle.spec.resize == name
    inspector = Inspector(bundle, threads=1)
    defects = sorted(p for p in (strips / "test").glob("*/*.png") if p.parent.name != "good")
    for path in defects:
        image = read_image(path)
        mask = read_image(strips / "ground_truth" / path.parent.name / f"{path.stem}_mask.png")
        result = inspector.inspect(image)
        assert result.verdict == "NG", path
        top = result.regions[0]
        assert 0 <= top.x and top.x + top.w <= image.shape[1] and top.y + top.h <= image.shape[0]
        assert _overlaps(top, _defect_box(mask)), (path, top, _defect_box(mask))
        # The map covers the frame, whatever the rule: its frame-pixel version has the frame's shape
        # and peaks inside the defect.
        frame_map = result.raw.frame_map() if result.raw else None
        assert frame_map is not None and frame_map.shape == image.shape[:2]
        peak = np.unravel_index(int(np.argmax(frame_map)), frame_map.shape)
        near = cv2.dilate((mask > 127).astype(np.uint8), np.ones((17, 17), np.uint8))
        assert near[peak], (path, peak)
        # The archive's overlay and the live view stretch the wire's map PNG over the frame
        # (edge.ops.overlay.draw_overlay, view/static/common.js): its hottest area must be centred
        # there too (the PNG saturates at twice the threshold, so the centre of that plateau).
        heat = cv2.resize(heat_from_png(result.map_png()), (image.shape[1], image.shape[0]),
                          interpolation=cv2.INTER_LINEAR)
        hottest = tuple(np.round(np.argwhere(heat >= heat.max() - 1 / 255).mean(axis=0)).astype(int))
        assert near[hottest], (path, hottest)
