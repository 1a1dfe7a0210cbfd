"""A licence-clean synthetic dataset in MVTec layout, for the embedded demo and for tests.

The shared MVTec and magnetic-tile images may not be redistributed, so the demo the repository
carries is built from images this module draws: a machined ring (a washer seen from above) with
brushed texture, small pose and lighting changes, and three defect types with exact masks:
``scratch`` (a dark line across the face), ``dent`` (a bright or dark spot) and ``chip`` (a bite
out of the outer edge). ``python -m training.synthetic --out DIR`` writes ``DIR/train/good``,
``DIR/test/<type>`` and ``DIR/ground_truth/<type>/<stem>_mask.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

DEFECT_TYPES = ("scratch", "dent", "chip")


def draw_part(rng: np.random.Generator, size: int = 256) -> tuple[np.ndarray, tuple[float, float], float, float]:
    """A good part: returns the BGR image, its centre, outer and inner radius."""
    background = rng.uniform(35, 50)
    image = np.full((size, size, 3), background, np.float32)
    image += rng.normal(0, 2.0, (size, size, 1)).astype(np.float32)
    cx = size / 2 + rng.uniform(-6, 6)
    cy = size / 2 + rng.uniform(-6, 6)
    outer = size * 0.38 + rng.uniform(-2, 2)
    inner = size * 0.16 + rng.uniform(-1, 1)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    radius = np.hypot(xx - cx, yy - cy)
    angle = np.arctan2(yy - cy, xx - cx)
    ring = (radius <= outer) & (radius >= inner)
    # Brushed, concentric texture with a lighting gradient that varies a little from part to part.
    tone = rng.uniform(150, 175)
    light = rng.uniform(0, 2 * np.pi)
    shade = tone + 18 * np.cos(angle - light) + 6 * np.sin(radius * 0.9 + rng.uniform(0, 6))
    shade += rng.normal(0, 3.0, (size, size)).astype(np.float32)
    tint = np.array([1.0, 0.97, 0.92], np.float32) * rng.uniform(0.97, 1.03)
    image[ring] = shade[ring, None] * tint
    edge = ring & ((radius > outer - 2.5) | (radius < inner + 2.5))
    image[edge] *= 0.8
    return np.clip(image, 0, 255).astype(np.uint8), (cx, cy), outer, inner


def add_defect(
    rng: np.random.Generator, image: np.ndarray, kind: str, centre: tuple[float, float], outer: float, inner: float
) -> np.ndarray:
    """Draw a defect of ``kind`` onto ``image`` in place and return its binary mask (0/255)."""
    mask = np.zeros(image.shape[:2], np.uint8)
    cx, cy = centre
    theta = rng.uniform(0, 2 * np.pi)
    mid = (outer + inner) / 2
    px, py = cx + mid * np.cos(theta), cy + mid * np.sin(theta)
    if kind == "scratch":
        length = rng.uniform(25, 50)
        phi = rng.uniform(0, np.pi)
        p0 = (int(px - length / 2 * np.cos(phi)), int(py - length / 2 * np.sin(phi)))
        p1 = (int(px + length / 2 * np.cos(phi)), int(py + length / 2 * np.sin(phi)))
        cv2.line(mask, p0, p1, 255, int(rng.integers(2, 4)))
        ring = _ring_mask(image.shape[:2], centre, outer, inner)
        mask &= ring
        image[mask > 0] = (image[mask > 0] * 0.35).astype(np.uint8)
    elif kind == "dent":
        r = int(rng.integers(5, 10))
        cv2.circle(mask, (int(px), int(py)), r, 255, -1)
        value = 245 if rng.random() < 0.5 else 60
        blob = np.zeros(image.shape[:2], np.float32)
        cv2.circle(blob, (int(px), int(py)), r, 1.0, -1)
        blob = cv2.GaussianBlur(blob, (0, 0), r / 3)[..., None]
        image[:] = np.clip(image * (1 - blob) + value * blob, 0, 255).astype(np.uint8)
        mask = ((blob[..., 0] > 0.25) * 255).astype(np.uint8)
    elif kind == "chip":
        r = int(rng.integers(9, 15))
        ex, ey = int(cx + outer * np.cos(theta)), int(cy + outer * np.sin(theta))
        cv2.circle(mask, (ex, ey), r, 255, -1)
        mask &= _ring_mask(image.shape[:2], centre, outer, inner)
        background = np.median(image[:8, :8].reshape(-1, 3), axis=0)
        image[mask > 0] = background.astype(np.uint8)
    else:
        raise ValueError(f"unknown defect type {kind!r}")
    return mask


def _ring_mask(shape: tuple[int, int], centre: tuple[float, float], outer: float, inner: float) -> np.ndarray:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    radius = np.hypot(xx - centre[0], yy - centre[1])
    return (((radius <= outer) & (radius >= inner)) * 255).astype(np.uint8)


def write_dataset(out: Path, n_train: int = 60, n_test_good: int = 10, n_test_per_defect: int = 5,
                  size: int = 256, seed: int = 0) -> Path:
    """Write the synthetic dataset in MVTec layout under ``out`` and return it."""
    rng = np.random.default_rng(seed)
    for index in range(n_train):
        save_image(out / "train" / "good" / f"{index:03d}.png", draw_part(rng, size)[0])
    for index in range(n_test_good):
        save_image(out / "test" / "good" / f"{index:03d}.png", draw_part(rng, size)[0])
    for kind in DEFECT_TYPES:
        for index in range(n_test_per_defect):
            image, centre, outer, inner = draw_part(rng, size)
            mask = add_defect(rng, image, kind, centre, outer, inner)
            save_image(out / "test" / kind / f"{index:03d}.png", image)
            save_image(out / "ground_truth" / kind / f"{index:03d}_mask.png", mask)
    return out


def save_image(path: Path, image: np.ndarray) -> None:
    """Write one image of a drawn data set (folders made as needed); OSError when OpenCV cannot."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"{path}: could not write image")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="Folder to write the dataset into.")
    parser.add_argument("--train", type=int, default=60, help="Good training images.")
    parser.add_argument("--test-good", type=int, default=10, help="Good test images.")
    parser.add_argument("--test-defect", type=int, default=5, help="Test images per defect type.")
    parser.add_argument("--size", type=int, default=256, help="Image side in pixels.")
    parser.add_argument("--seed", type=int, default=0, help="Random seed (same seed, same images).")
    args = parser.parse_args()
    write_dataset(args.out, args.train, args.test_good, args.test_defect, args.size, args.seed)
    print(f"wrote synthetic dataset to {args.out}")


if __name__ == "__main__":
    main()
