"""From one frame to one decision: preprocess, run the graph, normalise, threshold, find regions.

:class:`Inspector` is the single inference path of the project. The daemon uses it for every
frame; calibration and evaluation use it on held-out images, so the thresholds are set on exactly
the code and graph that will be deployed. :meth:`Inspector.run` gives raw scores (calibration
needs them before any threshold exists); :meth:`Inspector.inspect` adds the decision. The map it
returns always covers the frame, whatever the bundle's resize rule: letterbox padding is cropped
off and tiles are stitched back (:mod:`edge.model.layout`), so the score is never taken from
padding and the region boxes, the archived map and the live view land on the part in frame pixels.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from edge.model.bundle import Bundle, BundleError
from edge.model.engines import RuntimeOptions, create_backend
from edge.model.layout import FrameLayout, cover_frame, stitch
from edge.model.preprocess import prepare

log = logging.getLogger(__name__)

MAX_REGIONS = 32
CHANNEL_NAMES = {1: "grayscale", 3: "colour"}


@dataclass(frozen=True)
class Region:
    """A connected area of the anomaly map above the pixel threshold, in original image pixels."""

    x: int
    y: int
    w: int
    h: int
    area: int
    peak: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass
class RawResult:
    """The graph's outputs for one image, before any decision.

    ``anomaly_map`` covers exactly the frame (stitched, padding cropped, resampled so that its
    cells evenly span the frame: :func:`edge.model.layout.cover_frame`), so anything that stretches
    it over the frame (regions, the archive's overlay, the live view, evaluation) puts each cell
    where it came from. ``layout`` and ``stride`` record how the frame was cut.
    """

    score: float
    anomaly_map: np.ndarray
    timings_ms: dict[str, float] = field(default_factory=dict)
    layout: FrameLayout | None = None
    stride: int = 1

    def frame_map(self) -> np.ndarray:
        """The anomaly map resampled (bilinear) to the frame's pixels."""
        if self.layout is None:
            raise ValueError("no layout recorded for this result")
        height, width = self.layout.frame
        return cv2.resize(self.anomaly_map, (width, height), interpolation=cv2.INTER_LINEAR)


@dataclass
class Inspection:
    """The decision for one image."""

    score: float
    normalized_score: float
    verdict: str
    image_threshold: float
    pixel_threshold: float
    regions: list[Region]
    anomaly_map: np.ndarray
    timings_ms: dict[str, float]
    raw: RawResult | None = None

    def map_png(self) -> bytes:
        """The anomaly map as an 8-bit PNG, scaled so that the pixel threshold is mid-grey."""
        scaled = normalize(self.anomaly_map, self.pixel_threshold)
        ok, png = cv2.imencode(".png", (scaled * 255.0 + 0.5).astype(np.uint8))
        if not ok:
            raise RuntimeError("PNG encoding of the anomaly map failed")
        return png.tobytes()


def normalize(score: np.ndarray | float, threshold: float) -> np.ndarray:
    """Bundle normalisation ``threshold_ratio``: 0 at score 0, 0.5 at the threshold, 1 at twice it."""
    return np.clip(0.5 * np.asarray(score, dtype=np.float32) / np.float32(threshold), 0.0, 1.0)


def find_regions(anomaly_map: np.ndarray, threshold: float, image_shape: tuple[int, ...],
                 cell: tuple[float, float] | None = None) -> list[Region]:
    """Bounding boxes of the map above ``threshold`` in frame pixels (largest peak first).

    ``cell`` is the frame pixels one map cell spans (vertical, horizontal); by default the map is
    taken to cover ``image_shape`` exactly. Boxes are clipped to the frame.
    """
    mask = (anomaly_map > threshold).astype(np.uint8)
    if not mask.any():
        return []
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    sy, sx = cell or (image_shape[0] / anomaly_map.shape[0], image_shape[1] / anomaly_map.shape[1])
    height, width = int(image_shape[0]), int(image_shape[1])
    regions = []
    for label in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[label])
        peak = float(anomaly_map[y : y + h, x : x + w][labels[y : y + h, x : x + w] == label].max())
        left, top = min(int(x * sx), width - 1), min(int(y * sy), height - 1)
        regions.append(
            Region(
                x=left, y=top, w=max(1, min(round(w * sx), width - left)), h=max(1, min(round(h * sy), height - top)),
                area=max(1, round(area * sx * sy)), peak=peak,
            )
        )
    regions.sort(key=lambda r: r.peak, reverse=True)
    return regions[:MAX_REGIONS]


class Inspector:
    """Runs one bundle on frames; not thread-safe (one per inference thread)."""

    def __init__(
        self,
        bundle: Bundle,
        threads: int | None = None,
        backend: str | None = None,
        options: RuntimeOptions | None = None,
    ) -> None:
        self.bundle = bundle
        self.backend = create_backend(bundle, backend, threads, options)
        # Channels of the images the model was made from (1 or 3), from the bundle's self-test probe when it has
        # one (edge.model.selftest sets it); None = unknown, not checked.
        self.trained_channels: int | None = None
        self._channels_warned = False

    def run(self, image: np.ndarray) -> RawResult:
        """Raw anomaly map (covering the frame, at the map stride) and image score for a gray or BGR
        ``uint8`` image."""
        t0 = time.perf_counter()
        prepared = prepare(image, self.bundle.spec)
        t1 = time.perf_counter()
        maps, scores = self.backend.run(prepared.tensor)
        t2 = time.perf_counter()
        layout = prepared.layout
        anomaly_map, score = maps[0], float(scores[0])
        stride = self.bundle.spec.height // maps.shape[1]
        if not layout.is_identity_crop:  # the frame's map and its maximum, never a padded cell
            stitched = stitch(maps, layout)
            anomaly_map, score = cover_frame(stitched, layout, stride), float(stitched.max())
        timings = {"preprocess": (t1 - t0) * 1e3, "inference": (t2 - t1) * 1e3,
                   "postprocess": (time.perf_counter() - t2) * 1e3}  # stitching, when tiled or padded
        return RawResult(score, anomaly_map, timings, layout, stride)

    def _check_channels(self, image: np.ndarray) -> None:
        """Warn once when a grayscale frame meets a colour-trained bundle, or the reverse: scored, but not alike."""
        channels = 1 if image.ndim == 2 else int(image.shape[2])
        if self.trained_channels is None or channels == self.trained_channels or self._channels_warned:
            return
        self._channels_warned = True
        log.warning("bundle %s was made from %s images but this frame is %s (%s): it is scored with %s, so its "
                    "scores may not compare with the calibrated threshold; set the camera's pixel format to match "
                    "(this warning is given once per bundle load)", self.bundle.bundle_id,
                    CHANNEL_NAMES.get(self.trained_channels, "?"), CHANNEL_NAMES.get(channels, "?"),
                    "x".join(str(v) for v in image.shape),
                    "its plane replicated to RGB" if channels == 1 else "its colour kept")

    def inspect(self, image: np.ndarray) -> Inspection:
        """Decide OK/NG for ``image`` with the bundle's calibrated thresholds."""
        thresholds = self.bundle.thresholds
        if thresholds is None:
            raise BundleError(f"{self.bundle.root}: bundle has no thresholds (run edge-calibrate)")
        self._check_channels(image)
        raw = self.run(image)
        t0 = time.perf_counter()
        verdict = "NG" if raw.score > thresholds.image else "OK"
        regions = find_regions(raw.anomaly_map, thresholds.pixel, image.shape)
        timings = dict(raw.timings_ms)
        timings["postprocess"] += (time.perf_counter() - t0) * 1e3
        return Inspection(
            score=raw.score,
            normalized_score=float(normalize(raw.score, thresholds.image)),
            verdict=verdict,
            image_threshold=thresholds.image,
            pixel_threshold=thresholds.pixel,
            regions=regions,
            anomaly_map=raw.anomaly_map,
            timings_ms=timings,
            raw=raw,
        )
