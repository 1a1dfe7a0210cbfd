"""Resize rules: windows cover the frame, padding is cropped, tiles stitch back to frame coordinates."""

import itertools

import cv2
import numpy as np
import pytest

from edge.model.inspector import find_regions
from edge.model.layout import WINDOW_ALIGN, cover_frame, map_to_frame, plan, stitch
from edge.model.preprocess import InputSpec, prepare, to_rgb


def _ramp(height: int, width: int) -> np.ndarray:
    """A frame whose pixels say where they are (values wrap, which is fine for equality checks)."""
    yy, xx = np.mgrid[0:height, 0:width]
    return ((yy * 7 + xx * 3) % 251).astype(np.uint8)


def _normalised(rgb: np.ndarray, spec: InputSpec) -> np.ndarray:
    mean = np.asarray(spec.mean, np.float32)
    std = np.asarray(spec.std, np.float32)
    return ((rgb.astype(np.float32) * np.float32(spec.scale) - mean) / std).transpose(2, 0, 1)


def test_stretch_is_one_window_with_the_frame_scaled_to_the_input():
    frame = np.dstack([_ramp(300, 120)] * 3)
    spec = InputSpec(height=64, width=96)
    prepared = prepare(frame, spec)
    assert prepared.tensor.shape == (1, 3, 64, 96) and prepared.layout.is_identity_crop
    expected = _normalised(to_rgb(cv2.resize(frame, (96, 64), interpolation=cv2.INTER_LINEAR)), spec)
    np.testing.assert_allclose(prepared.tensor[0], expected, atol=1e-5)


@pytest.mark.parametrize("frame_shape", [(300, 100), (100, 300), (256, 256), (50, 400)])
def test_letterbox_keeps_the_aspect_ratio_and_pads_with_the_border(frame_shape):
    height, width = frame_shape
    spec = InputSpec(height=128, width=128, resize="letterbox", pad="replicate")
    prepared = prepare(_ramp(height, width), spec)
    layout = prepared.layout
    (top, left), = layout.windows
    scale = min(128 / height, 128 / width)
    assert layout.scaled == (round(height * scale), round(width * scale))
    assert -top % WINDOW_ALIGN == 0 and -left % WINDOW_ALIGN == 0
    # The content sits at (-top, -left) in the window; outside it, padding repeats the border.
    scaled = cv2.resize(_ramp(height, width), (layout.scaled[1], layout.scaled[0]), interpolation=cv2.INTER_LINEAR)
    window = cv2.copyMakeBorder(scaled, -top, 128 - layout.scaled[0] + top, -left, 128 - layout.scaled[1] + left,
                                cv2.BORDER_REPLICATE)
    np.testing.assert_allclose(prepared.tensor[0], _normalised(to_rgb(window), spec), atol=1e-5)


def test_tiles_cover_the_frame_with_the_promised_overlap():
    layout = plan((1000, 700), (256, 256), "tile", tile_scale=1.0, tile_overlap=32)
    covered = np.zeros(layout.scaled, bool)
    for top, left in layout.windows:
        assert top % WINDOW_ALIGN == 0 and left % WINDOW_ALIGN == 0
        covered[max(0, top) : top + 256, max(0, left) : left + 256] = True
    assert covered.all()
    rows = sorted({t for t, _ in layout.windows})
    assert all(b - a <= 256 - 32 for a, b in itertools.pairwise(rows))
    assert len(layout.windows) == len(rows) * len({c for _, c in layout.windows})


@pytest.mark.parametrize("rule,frame_shape,scale", [("tile", (1000, 700), 1.0), ("tile", (300, 100), 0.5),
                                                    ("tile", (90, 600), 1.0), ("letterbox", (300, 100), 1.0),
                                                    ("stretch", (300, 100), 1.0)])
def test_stitching_puts_every_window_cell_back_where_it_came_from(rule, frame_shape, scale):
    stride = 4
    layout = plan(frame_shape, (128, 128), rule, tile_scale=scale, tile_overlap=32)
    # Each window's map holds the global cell coordinates of its cells: stitched, they must agree.
    maps = np.empty((len(layout.windows), 32, 32), np.float32)
    for index, (top, left) in enumerate(layout.windows):
        rr, cc = np.mgrid[0:32, 0:32]
        maps[index] = (rr + top // stride) * 1000 + (cc + left // stride)
    stitched = stitch(maps, layout)
    rows, cols = layout.map_shape(stride)
    assert stitched.shape == (rows, cols)
    if rule != "stretch":
        rr, cc = np.mgrid[0:rows, 0:cols]
        np.testing.assert_array_equal(stitched, rr * 1000 + cc)
    assert map_to_frame(stitched, layout, stride).shape == frame_shape


def test_region_boxes_use_the_cell_size_of_the_layout():
    layout = plan((300, 100), (128, 128), "letterbox")
    rows, cols = layout.map_shape(4)
    frame_map = np.zeros((rows, cols), np.float32)
    frame_map[10:15, 2:5] = 3.0
    (region,) = find_regions(frame_map, 1.0, (300, 100), layout.frame_per_cell(4))
    per_row, per_col = layout.frame_per_cell(4)
    assert (region.x, region.y) == (int(2 * per_col), int(10 * per_row))
    assert (region.w, region.h) == (round(3 * per_col), round(5 * per_row))


@pytest.mark.parametrize("rule,frame_shape", [("letterbox", (110, 630)), ("tile", (110, 630)), ("tile", (90, 600))])
def test_the_published_map_stretched_over_the_frame_puts_each_cell_where_it_came_from(rule, frame_shape):
    # Overlays and the live view stretch the published map over the frame. These frames' scaled
    # heights are not a multiple of the stride, so the stitched map's last row reaches past the
    # frame; cover_frame resamples it so that the stretch lands every cell within a quarter cell
    # of the exact mapping, where stretching the stitched map drifts further towards the far end.
    stride = 4
    layout = plan(frame_shape, (128, 128), rule, tile_overlap=32)
    rows, cols = layout.map_shape(stride)
    per_row = layout.frame_per_cell(stride)[0]
    assert layout.scaled[0] % stride  # the case that needs resampling

    def centre_row(frame_map: np.ndarray) -> float:
        weight = frame_map.sum(axis=1)
        return float((weight * np.arange(weight.size)).sum() / weight.sum())

    covered, naive = [], []
    for row in range(rows):
        stitched = np.zeros((rows, cols), np.float32)
        stitched[row, cols // 2] = 1.0
        exact = centre_row(map_to_frame(stitched, layout, stride))
        size = (frame_shape[1], frame_shape[0])
        covered.append(abs(centre_row(cv2.resize(cover_frame(stitched, layout, stride), size)) - exact) / per_row)
        naive.append(abs(centre_row(cv2.resize(stitched, size)) - exact) / per_row)
    assert max(covered) <= 0.25 < max(naive)


def test_unknown_rules_and_bad_tile_settings_are_refused():
    with pytest.raises(ValueError, match="resize"):
        InputSpec(resize="crop").check()
    with pytest.raises(ValueError, match="tile_overlap"):
        InputSpec(resize="tile", tile_overlap=200).check()
    with pytest.raises(ValueError, match="pad"):
        InputSpec(pad="mirror").check()


def test_per_frame_intensity_gives_the_same_input_for_another_exposure():
    frame = (_ramp(120, 90).astype(np.float32) * 0.4 + 20).astype(np.uint8)  # values 20..120
    brighter = (frame.astype(np.float32) * 2.0).astype(np.uint8)  # twice the exposure, no clipping
    spec = InputSpec(height=64, width=64, intensity="per_frame")
    a, b = prepare(frame, spec).tensor, prepare(brighter, spec).tensor
    assert np.abs(a - b).max() < 0.05  # uint8 rounding only; fixed scaling differs by about 1.0 here
    fixed = InputSpec(height=64, width=64)
    assert np.abs(prepare(frame, fixed).tensor - prepare(brighter, fixed).tensor).mean() > 0.5
    # The frame's statistics land on the target before the channel normalisation.
    plane = a[0, 0] * spec.std[0] + spec.mean[0]
    assert plane.mean() == pytest.approx(0.45, abs=0.01) and plane.std() == pytest.approx(0.225, abs=0.01)
