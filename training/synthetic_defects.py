"""Synthetic defects drawn onto good images, so settings can be compared without labelled defects.

A user has good images and rarely labelled defects; ``edge-train --tune`` still needs something to
rank candidate settings by. These are the three families the literature found to rank anomaly
detectors usefully when drawn from the good images themselves, all drawn here with numpy/OpenCV
(no data or model downloaded):

* ``cutpaste``: a patch of another good image (or another place of this one), rotated, rescaled
  and brightness-shifted, pasted with a feathered edge (Li et al., CutPaste, 2021);
* ``perlin``: a blemish shaped by thresholded Perlin noise, inside which the surface is replaced
  by a shifted, re-toned copy of itself (Zavrtanik et al., DRAEM, 2021);
* ``scratch``: a thin smooth curve, darker or brighter than the surface around it.

Each function returns the defective image (same shape and type as the input) and its mask
(``uint8`` 0/255). Defects cover 0.2 to 4 % of the frame, about the range of real ones.
"""

from __future__ import annotations

import cv2
import numpy as np

DEFECT_KINDS = ("cutpaste", "perlin", "scratch")


def perlin_noise(shape: tuple[int, int], cells: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """2-D Perlin gradient noise in about [-1, 1] over ``shape`` with ``cells`` lattice cells."""
    height, width = shape
    gy, gx = cells
    angles = rng.uniform(0, 2 * np.pi, (gy + 1, gx + 1))
    grads = np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    ys = np.linspace(0, gy, height, endpoint=False)
    xs = np.linspace(0, gx, width, endpoint=False)
    yi, xi = ys.astype(int), xs.astype(int)
    fy, fx = (ys - yi)[:, None], (xs - xi)[None, :]

    def corner(dy: int, dx: int) -> np.ndarray:
        g = grads[yi[:, None] + dy, xi[None, :] + dx]
        return g[..., 0] * (fx - dx) + g[..., 1] * (fy - dy)

    def fade(t: np.ndarray) -> np.ndarray:
        return t * t * t * (t * (t * 6 - 15) + 10)

    u, v = fade(fx), fade(fy)
    top = corner(0, 0) * (1 - u) + corner(0, 1) * u
    bottom = corner(1, 0) * (1 - u) + corner(1, 1) * u
    return (top * (1 - v) + bottom * v) * np.sqrt(2)


def _tone(rng: np.random.Generator) -> tuple[float, float]:
    """A gain and offset at least 25 % / 15 levels away from leaving the pixels unchanged."""
    gain = rng.uniform(0.5, 0.75) if rng.random() < 0.5 else rng.uniform(1.25, 1.5)
    offset = rng.uniform(15, 40) * (1 if gain > 1 else -1)
    return gain, offset


def _area_bounds(shape: tuple[int, ...]) -> tuple[float, float]:
    area = shape[0] * shape[1]
    return 0.002 * area, 0.04 * area


def _blend(image: np.ndarray, source: np.ndarray, mask: np.ndarray, feather: float) -> np.ndarray:
    alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), feather) if feather > 0 else mask / 255.0
    if image.ndim == 3:
        alpha = alpha[..., None]
    out = image.astype(np.float32) * (1 - alpha) + source.astype(np.float32) * alpha
    return np.clip(out, 0, 255).astype(np.uint8)


def cutpaste(image: np.ndarray, donor: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Paste a transformed patch of ``donor`` (a good image, possibly ``image`` itself) into ``image``."""
    height, width = image.shape[:2]
    low, high = _area_bounds(image.shape)
    area = rng.uniform(low, high)
    aspect = rng.uniform(0.3, 3.3)
    ph = int(np.clip(np.sqrt(area / aspect), 4, height - 2))
    pw = int(np.clip(area / ph, 4, width - 2))
    donor = cv2.resize(donor, (width, height)) if donor.shape[:2] != (height, width) else donor
    sy, sx = rng.integers(0, height - ph), rng.integers(0, width - pw)
    patch = donor[sy : sy + ph, sx : sx + pw].astype(np.float32)
    gain, offset = _tone(rng)
    patch = patch * gain + offset
    rot = cv2.getRotationMatrix2D((pw / 2, ph / 2), rng.uniform(-90, 90), rng.uniform(0.8, 1.25))
    patch = cv2.warpAffine(np.clip(patch, 0, 255).astype(np.uint8), rot, (pw, ph), borderMode=cv2.BORDER_REFLECT)
    ty, tx = rng.integers(0, height - ph), rng.integers(0, width - pw)
    source = image.copy()
    source[ty : ty + ph, tx : tx + pw] = patch
    mask = np.zeros((height, width), np.uint8)
    mask[ty : ty + ph, tx : tx + pw] = 255
    return _blend(image, source, mask, feather=1.0), mask


def perlin_blemish(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A Perlin-shaped blemish: the surface inside it shifted, re-toned and blurred or sharpened."""
    height, width = image.shape[:2]
    low, high = _area_bounds(image.shape)
    for _ in range(20):
        cells = (int(rng.integers(2, 7)), int(rng.integers(2, 7)))
        noise = perlin_noise((height, width), cells, rng)
        cut = np.quantile(noise, 1 - rng.uniform(low, high) / (height * width))
        mask = (noise > cut).astype(np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        if count > 1:
            keep = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))  # one blob, like one real blemish
            mask = ((labels == keep) * 255).astype(np.uint8)
            break
    shift = (int(rng.integers(-width // 4, width // 4 + 1)), int(rng.integers(-height // 4, height // 4 + 1)))
    source = np.roll(image, shift, axis=(1, 0)).astype(np.float32)
    gain, offset = _tone(rng)
    source = source * gain + offset
    if rng.random() < 0.5:
        source = cv2.GaussianBlur(source, (0, 0), rng.uniform(1.0, 3.0))
    return _blend(image, np.clip(source, 0, 255), mask, feather=1.5), mask


def scratch(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A thin smooth curve (quadratic Bezier), darker or brighter than its surroundings."""
    height, width = image.shape[:2]
    length = rng.uniform(0.15, 0.5) * min(height, width)
    start = np.array([rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.9) * height])
    angle = rng.uniform(0, 2 * np.pi)
    end = start + length * np.array([np.cos(angle), np.sin(angle)])
    bend = (start + end) / 2 + rng.normal(0, length / 5, 2)
    t = np.linspace(0, 1, 64)[:, None]
    points = ((1 - t) ** 2 * start + 2 * (1 - t) * t * bend + t**2 * end).astype(np.int32)
    mask = np.zeros((height, width), np.uint8)
    thickness = max(1, round(min(height, width) * rng.uniform(0.006, 0.015)))
    cv2.polylines(mask, [points.reshape(-1, 1, 2)], False, 255, thickness, lineType=cv2.LINE_AA)
    mask = ((mask > 64) * 255).astype(np.uint8)
    # Darker than a bright surface, brighter than a dark one (a scratch on black must still show).
    local = float(image[mask > 0].mean()) if mask.any() else float(image.mean())
    if local > 90 and rng.random() < 0.7:
        source = image.astype(np.float32) * rng.uniform(0.25, 0.5)
    else:
        source = image.astype(np.float32) + rng.uniform(50, 110)
    source = np.clip(source, 0, 255)
    return _blend(image, source, mask, feather=0.7), mask


def make_defect(kind: str, image: np.ndarray, donor: np.ndarray,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A defect of ``kind`` (one of :data:`DEFECT_KINDS`) on ``image``; ``donor`` feeds cut-paste."""
    if kind == "cutpaste":
        return cutpaste(image, donor, rng)
    if kind == "perlin":
        return perlin_blemish(image, rng)
    if kind == "scratch":
        return scratch(image, rng)
    raise ValueError(f"unknown synthetic defect {kind!r}; known: {', '.join(DEFECT_KINDS)}")
