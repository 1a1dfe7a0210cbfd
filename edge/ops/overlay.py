"""One picture of one inspection: the frame, its heatmap blended over it, and the region boxes.

A person asked "why was this part rejected?" looks at a picture, not at a 64x64 grey map. The NG
archive, ``edge-eval --report``'s galleries, the live view and ``subscribe --save`` all draw the
same picture with :func:`draw_overlay`, so a box or a colour means the same thing wherever it is
seen: red where the map is above the pixel threshold, boxes where the edge published regions,
a green outline for a ground-truth defect mask when one is known (evaluation only). OpenCV only:
it runs on the edge install, on the archive's writer thread, never in the inspection path.

The heatmap is the *normalised* map (0 at score 0, 0.5 at the pixel threshold, 1 at twice it:
what ``Inspection.map_png`` encodes), so callers that only have the PNG from the wire draw the
same thing as callers that have the raw map. It lives in :mod:`edge.ops` (the lowest layer of
``edge`` after config rules) so that the archive may use it; it imports nothing from ``edge``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

import cv2
import numpy as np

BOX_COLOR = (255, 0, 255)  # BGR magenta: distinct from every colour of the heatmap
MASK_COLOR = (0, 255, 0)  # BGR green: ground truth
OK_COLOR = (60, 160, 60)
FADE_FROM = 0.3  # normalised heat where the colour starts to show; full strength from the threshold (0.5) up
NG_COLOR = (40, 40, 220)


class Box(Protocol):
    """Anything with a region's box in image pixels (``edge.model.inspector.Region`` is one)."""

    @property
    def x(self) -> int:
        """Left edge."""
        ...

    @property
    def y(self) -> int:
        """Top edge."""
        ...

    @property
    def w(self) -> int:
        """Width."""
        ...

    @property
    def h(self) -> int:
        """Height."""
        ...


def heat_from_png(map_png: bytes) -> np.ndarray:
    """The normalised heatmap (0..1) back from an 8-bit map PNG (``Inspection.map_png``, the wire's third part)."""
    decoded = cv2.imdecode(np.frombuffer(map_png, np.uint8), cv2.IMREAD_GRAYSCALE)
    if decoded is None:
        raise ValueError("the anomaly-map PNG does not decode")
    return decoded.astype(np.float32) / 255.0


def _box(region: Box | Mapping[str, int]) -> tuple[int, int, int, int]:
    if isinstance(region, Mapping):
        return int(region["x"]), int(region["y"]), int(region["w"]), int(region["h"])
    return int(region.x), int(region.y), int(region.w), int(region.h)


def _bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image.copy()


def draw_overlay(
    image: np.ndarray,
    heat: np.ndarray | None,
    regions: Iterable[Box | Mapping[str, int]] = (),
    *,
    mask: np.ndarray | None = None,
    caption: str | None = None,
    verdict: str | None = None,
    alpha: float = 0.5,
    width: int | None = None,
) -> np.ndarray:
    """The frame (BGR or gray ``uint8``) with the heatmap, region boxes, mask outline and caption drawn on it.

    ``heat`` is the normalised map (float 0..1 or ``uint8`` 0..255, any size: it is resized to
    the frame), coloured with the JET map (blue-green below the threshold at 0.5, yellow to red
    above it); it fades in from ``FADE_FROM`` to the threshold and is blended at ``alpha`` above
    it, so a clean part stays readable and an anomaly stands out. ``regions`` are
    boxes in the frame's pixels (``Region`` objects or the verdict message's dicts). ``mask`` (any
    size, nonzero = defect) is outlined. ``width`` resizes the result (boxes and text drawn after,
    so they stay sharp). ``caption`` goes on a band under the picture, coloured by ``verdict``.
    Returns a new BGR ``uint8`` image; the input is not changed.
    """
    frame = _bgr(np.ascontiguousarray(image))
    height0, width0 = frame.shape[:2]
    scale = 1.0 if width is None else width / width0
    if heat is not None:
        level = heat.astype(np.float32) / np.float32(255.0 if heat.dtype == np.uint8 else 1.0)
        level = np.clip(cv2.resize(level, (width0, height0), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
        colours = cv2.applyColorMap((level * 255.0 + 0.5).astype(np.uint8), cv2.COLORMAP_JET)
        weight = (alpha * np.clip((level - FADE_FROM) / (0.5 - FADE_FROM), 0.0, 1.0))[..., None]
        frame = np.asarray(frame * (1.0 - weight) + colours * weight + 0.5).astype(np.uint8)
    if scale != 1.0:
        frame = cv2.resize(frame, (round(width0 * scale), round(height0 * scale)), interpolation=cv2.INTER_AREA)
    thickness = max(1, round(min(frame.shape[:2]) / 200))
    if mask is not None:
        binary = cv2.resize((np.asarray(mask) > 0).astype(np.uint8), (frame.shape[1], frame.shape[0]),
                            interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(frame, contours, -1, MASK_COLOR, thickness, cv2.LINE_8)
    for region in regions:
        left, top, box_w, box_h = _box(region)
        top_left = (round(left * scale), round(top * scale))
        bottom_right = (round((left + box_w) * scale) - 1, round((top + box_h) * scale) - 1)
        cv2.rectangle(frame, top_left, bottom_right, BOX_COLOR, thickness, cv2.LINE_8)
    if caption:
        frame = _with_caption(frame, caption, verdict)
    return frame


def _with_caption(frame: np.ndarray, caption: str, verdict: str | None) -> np.ndarray:
    """A band under the picture holding the caption, lines split on ``\\n``, sized to the picture's width."""
    lines = caption.split("\n")
    font, font_scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.4, frame.shape[1] / 700)
    line_h = int(30 * font_scale)
    band = np.full((line_h * len(lines) + line_h // 3, frame.shape[1], 3), 255, np.uint8)
    if verdict in ("OK", "NG"):
        band[:, : max(4, line_h // 4)] = OK_COLOR if verdict == "OK" else NG_COLOR
    for index, line in enumerate(lines):
        cv2.putText(band, line, (line_h // 2, line_h * (index + 1) - line_h // 5), font, font_scale, (20, 20, 20),
                    1, cv2.LINE_AA)
    return np.vstack([frame, band])


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of a BGR or gray ``uint8`` image."""
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"cannot encode a {image.shape} {image.dtype} image as PNG")
    return buf.tobytes()
