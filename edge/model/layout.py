"""Where each graph input comes from in the frame, and how its anomaly maps go back onto the frame.

A frame rarely has the graph's input size. The resize rule of :class:`~edge.model.preprocess.InputSpec`
decides how it is fitted, and this module is the one place that knows the geometry, for training,
export, calibration and the daemon alike:

* ``stretch``: the whole frame scaled to ``height x width`` (aspect ratio ignored).
* ``letterbox``: scaled by one factor so that it fits, centred, the rest padded; the pad is cropped
  off the anomaly map again, so the score and the regions never come from padding.
* ``tile``: scaled by ``tile_scale`` (1.0: native pixels) and cut into overlapping windows of the
  input size that cover it (a frame smaller than a window is padded like a letterbox); the windows
  run as one batch and their maps are stitched back, each map cell taken from the window whose
  centre is nearest (the overlap is split down the middle, away from the windows' borders).

A layout is a list of windows in the *scaled* frame. Window offsets are multiples of
``WINDOW_ALIGN`` (16) input pixels, so the backbone's feature grids of neighbouring windows line up
and map cells line up exactly for every map stride that divides 16. The stitched map covers the
scaled frame at the map stride, and :meth:`FrameLayout.frame_per_cell` converts its cells to frame
pixels (regions are reported there). The last row or column of cells may reach past the scaled
frame (a partial cell); :func:`cover_frame` resamples the map so that its cells evenly span exactly
the frame, which is what the Inspector publishes: every consumer that stretches a map over its
frame (overlays, the live view, evaluation) is then right without knowing the rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

RESIZE_RULES = ("stretch", "letterbox", "tile")
WINDOW_ALIGN = 16


@dataclass(frozen=True)
class FrameLayout:
    """How one frame is cut into graph inputs.

    ``scaled`` is the frame's (height, width) after scaling; ``windows`` holds the (top, left) of
    each input window in scaled pixels (negative or past the end: padding); ``window`` is the input
    (height, width).
    """

    frame: tuple[int, int]
    scaled: tuple[int, int]
    window: tuple[int, int]
    windows: tuple[tuple[int, int], ...]

    def map_shape(self, stride: int) -> tuple[int, int]:
        """(rows, cols) of the stitched map: the scaled frame at map ``stride`` (last cell may be partial)."""
        return math.ceil(self.scaled[0] / stride), math.ceil(self.scaled[1] / stride)

    def frame_per_cell(self, stride: int) -> tuple[float, float]:
        """Frame pixels per stitched-map cell at map ``stride``, (vertical, horizontal)."""
        return (stride * self.frame[0] / self.scaled[0], stride * self.frame[1] / self.scaled[1])

    def content_mask(self, stride: int) -> np.ndarray:
        """Per window, which map cells show the frame (True) rather than padding: ``(N, h, w)`` bool."""
        cells = self.window[0] // stride, self.window[1] // stride
        mask = np.zeros((len(self.windows), *cells), bool)
        rows, cols = self.map_shape(stride)
        for index, (top, left) in enumerate(self.windows):
            r0, c0 = top // stride, left // stride
            mask[index, max(0, -r0) : max(0, rows - r0), max(0, -c0) : max(0, cols - c0)] = True
        return mask

    @property
    def is_identity_crop(self) -> bool:
        """One window that is exactly the scaled frame: the graph's own map and score are the frame's."""
        return len(self.windows) == 1 and self.windows[0] == (0, 0) and self.scaled == self.window


def _axis_starts(length: int, window: int, overlap: int, stride: int = WINDOW_ALIGN) -> list[int]:
    """Window starts (multiples of ``stride``) covering ``[0, length)`` with at least ``overlap`` shared."""
    if length <= window:
        return [-((window - length) // 2 // stride) * stride]  # centred, padded on both sides
    step = window - overlap
    count = max(2, math.ceil((length - overlap) / step))
    last = math.ceil((length - window) / stride) * stride  # may end a few pixels past the frame
    return [round(i * last / (count - 1) / stride) * stride for i in range(count)]


def plan(frame: tuple[int, int], window: tuple[int, int], rule: str, tile_scale: float = 1.0,
         tile_overlap: int = 0) -> FrameLayout:
    """The layout of a frame of (height, width) ``frame`` for an input ``window`` under ``rule``."""
    height, width = int(frame[0]), int(frame[1])
    if height < 1 or width < 1:
        raise ValueError(f"frame must be at least 1x1, got {height}x{width}")
    win_h, win_w = window
    if rule == "stretch":
        return FrameLayout((height, width), (win_h, win_w), (win_h, win_w), ((0, 0),))
    if rule == "letterbox":
        scale = min(win_h / height, win_w / width)
        scaled = (min(win_h, max(1, round(height * scale))), min(win_w, max(1, round(width * scale))))
        top, left = _axis_starts(scaled[0], win_h, 0)[0], _axis_starts(scaled[1], win_w, 0)[0]
        return FrameLayout((height, width), scaled, (win_h, win_w), ((top, left),))
    if rule == "tile":
        scaled = (max(1, round(height * tile_scale)), max(1, round(width * tile_scale)))
        rows = _axis_starts(scaled[0], win_h, tile_overlap)
        cols = _axis_starts(scaled[1], win_w, tile_overlap)
        return FrameLayout((height, width), scaled, (win_h, win_w), tuple((r, c) for r in rows for c in cols))
    raise ValueError(f"unknown resize rule {rule!r}; known: {', '.join(RESIZE_RULES)}")


def _owned(starts: list[int], window: int, length: int) -> list[tuple[int, int]]:
    """Per window along one axis, the [begin, end) of ``length`` it owns (overlaps split at the middle)."""
    bounds = [0] + [(starts[i] + window + starts[i + 1]) // 2 for i in range(len(starts) - 1)] + [length]
    return [(min(max(bounds[i], 0), length), min(max(bounds[i + 1], 0), length)) for i in range(len(starts))]


def stitch(maps: np.ndarray, layout: FrameLayout) -> np.ndarray:
    """The frame's anomaly map (``layout.map_shape(stride)``) from the windows' maps ``(N, h, w)``.

    The map stride is the window's size over the maps' size.
    """
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim == 4:
        maps = maps[:, 0]
    if maps.shape[0] != len(layout.windows):
        raise ValueError(f"expected {len(layout.windows)} window maps, got {maps.shape[0]}")
    if layout.is_identity_crop:
        return maps[0]
    stride = layout.window[0] // maps.shape[1]
    cell_h, cell_w = layout.window[0] // stride, layout.window[1] // stride
    if maps.shape[1:] != (cell_h, cell_w) or WINDOW_ALIGN % stride:
        raise ValueError(f"window maps of {maps.shape[1:]} do not tile a {layout.window} input at a map stride "
                         f"dividing {WINDOW_ALIGN}")
    rows = sorted({top // stride for top, _ in layout.windows})
    cols = sorted({left // stride for _, left in layout.windows})
    out_h, out_w = layout.map_shape(stride)
    row_owned = dict(zip(rows, _owned(rows, cell_h, out_h)))
    col_owned = dict(zip(cols, _owned(cols, cell_w, out_w)))
    out = np.empty((out_h, out_w), np.float32)
    for index, (top, left) in enumerate(layout.windows):
        top, left = top // stride, left // stride
        (r0, r1), (c0, c1) = row_owned[top], col_owned[left]
        out[r0:r1, c0:c1] = maps[index, r0 - top : r1 - top, c0 - left : c1 - left]
    return out


def map_to_frame(frame_map: np.ndarray, layout: FrameLayout, stride: int) -> np.ndarray:
    """The stitched map resampled (bilinear) to frame pixels, ``layout.frame`` in shape.

    Map cell (r, c) covers frame pixels ``[r, r + 1) * frame_per_cell``; the last row and column
    of cells may reach past the frame (a partial cell), which is cropped off.
    """
    per_row, per_col = layout.frame_per_cell(stride)
    rows, cols = frame_map.shape
    height, width = layout.frame
    full = cv2.resize(np.ascontiguousarray(frame_map, np.float32),
                      (max(width, round(cols * per_col)), max(height, round(rows * per_row))),
                      interpolation=cv2.INTER_LINEAR)
    return full[:height, :width]


def cover_frame(frame_map: np.ndarray, layout: FrameLayout, stride: int) -> np.ndarray:
    """The stitched map, same shape, resampled (bilinear) so that its cells evenly span exactly the frame.

    Stitched cell ``c`` covers scaled pixels ``[c, c + 1) * stride``, and the last one may end past
    the scaled frame; output cell ``j`` covers ``[j, j + 1) * scaled / cols``. Unchanged when the
    scaled frame is a whole number of cells.
    """
    rows, cols = frame_map.shape
    along_y, along_x = layout.scaled[0] / (rows * stride), layout.scaled[1] / (cols * stride)
    if along_y == 1.0 and along_x == 1.0:
        return frame_map
    # Output cell centre j + 0.5 sits at stitched-cell coordinate (j + 0.5) * along - 0.5.
    warp = np.array([[along_x, 0.0, 0.5 * along_x - 0.5], [0.0, along_y, 0.5 * along_y - 0.5]], np.float64)
    return cv2.warpAffine(np.ascontiguousarray(frame_map, np.float32), warp, (cols, rows),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
