"""The overlay draws the heatmap where the map is high, the region boxes, the mask outline and a caption."""

from __future__ import annotations

import numpy as np

from edge.model.inspector import Inspection, Region, normalize
from edge.ops.overlay import BOX_COLOR, MASK_COLOR, draw_overlay, heat_from_png

GREY = np.full((60, 80, 3), 128, np.uint8)


def test_boxes_are_drawn_on_their_edges_and_nothing_else_changes_without_heat():
    out = draw_overlay(GREY, None, [Region(x=10, y=20, w=30, h=15, area=450, peak=3.0)])
    box = np.all(out == BOX_COLOR, axis=2)
    assert box[20, 10:40].all() and box[34, 10:40].all() and box[20:35, 10].all() and box[20:35, 39].all()
    assert not box[21:34, 11:39].any()  # inside the box: untouched
    assert (out[~box] == 128).all()


def test_regions_as_verdict_dicts_draw_the_same_box():
    as_region = draw_overlay(GREY, None, [Region(x=5, y=5, w=20, h=10, area=200, peak=1.0)])
    as_dict = draw_overlay(GREY, None, [{"x": 5, "y": 5, "w": 20, "h": 10, "area": 200, "peak": 1.0}])
    assert np.array_equal(as_region, as_dict)


def test_heat_colours_above_the_threshold_and_fades_out_well_below_it():
    heat = np.zeros((60, 80), np.float32)
    heat[:, 40:] = 0.8  # right half above the threshold (0.5), left half at 0
    out = draw_overlay(GREY, heat).astype(int)
    assert (out[:, :30] == 128).all()
    assert np.abs(out[:, 50:] - 128).max(axis=2).min() > 20


def test_mask_outline_is_green_and_the_result_can_be_resized():
    mask = np.zeros((60, 80), bool)
    mask[10:30, 10:30] = True
    out = draw_overlay(GREY, None, [{"x": 40, "y": 10, "w": 20, "h": 20}], mask=mask, width=160)
    assert out.shape == (120, 160, 3)
    green = np.all(out == MASK_COLOR, axis=2)
    assert green[20:60, 20].any() and not green[30:50, 30:50].any()  # on the outline, not inside
    box = np.all(out == BOX_COLOR, axis=2)
    assert box[20:60, 80].any() and not box[:, :70].any()  # box scaled by 2 with the picture


def test_caption_adds_a_band_under_the_picture():
    out = draw_overlay(GREY, None, caption="NG score 3.2\nsecond line", verdict="NG")
    assert out.shape[0] > GREY.shape[0] and out.shape[1] == GREY.shape[1]
    assert np.array_equal(out[: GREY.shape[0]], GREY)


def test_heat_from_the_map_png_is_the_normalised_map():
    anomaly_map = np.linspace(0, 6, 100, dtype=np.float32).reshape(10, 10)
    found = Inspection(score=6.0, normalized_score=1.0, verdict="NG", image_threshold=3.0, pixel_threshold=3.0,
                       regions=[], anomaly_map=anomaly_map, timings_ms={})
    assert np.abs(heat_from_png(found.map_png()) - normalize(anomaly_map, 3.0)).max() <= 0.5 / 255 + 1e-6
