"""A non-square synthetic data set drawn by the project: rolled metal strips of varying length.

Real lines inspect long parts, strips and webs far more often than square bottles, and the resize
rules (letterbox, tiles) must put a region box on the defect in the frame's own pixels whatever
the frame's shape. This draws such frames with exact masks: a strip with rolling marks along its
length, a lighting gradient and sensor noise, between ``min_length`` and ``max_length`` pixels
long and ``height`` high (so every frame has another aspect ratio), and two defect types,
``scratch`` (a dark line across the rolling direction) and ``pit`` (a dark round spot).
``python -m training.synthetic_strips --out DIR`` writes ``DIR/train/good``, ``DIR/test/<type>``
and ``DIR/ground_truth/<type>/<stem>_mask.png`` in MVTec layout.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from training.synthetic import save_image

DEFECT_TYPES = ("scratch", "pit")


def draw_strip(rng: np.random.Generator, height: int, length: int) -> np.ndarray:
    """A good strip, ``height x length`` gray ``uint8``, rolling marks along its length."""
    base = rng.uniform(120, 150)
    rows = rng.normal(0, 6.0, (height, 1)).astype(np.float32)  # marks run along the strip
    rows = cv2.GaussianBlur(rows, (1, 0), sigmaX=0.1, sigmaY=1.2) if height > 3 else rows
    gradient = np.linspace(-1, 1, length, dtype=np.float32)[None, :] * rng.uniform(-12, 12)
    image = base + rows + gradient + rng.normal(0, 3.0, (height, length)).astype(np.float32)
    image[:3] *= 0.7  # the strip's rolled edges are darker
    image[-3:] *= 0.7
    return np.clip(image, 0, 255).astype(np.uint8)


def add_defect(rng: np.random.Generator, image: np.ndarray, kind: str) -> np.ndarray:
    """Draw a defect of ``kind`` onto ``image`` in place and return its binary mask (0/255)."""
    height, length = image.shape
    mask = np.zeros_like(image)
    cx = int(rng.uniform(0.1, 0.9) * length)
    cy = int(rng.uniform(0.3, 0.7) * height)
    if kind == "scratch":
        half = int(rng.uniform(0.25, 0.4) * height)
        tilt = int(rng.uniform(-0.2, 0.2) * height)
        cv2.line(mask, (cx - tilt, cy - half), (cx + tilt, cy + half), 255, int(rng.integers(3, 5)))
    elif kind == "pit":
        cv2.circle(mask, (cx, cy), int(rng.uniform(0.08, 0.14) * height), 255, -1)
    else:
        raise ValueError(f"unknown defect type {kind!r}")
    image[mask > 0] = (image[mask > 0] * 0.3).astype(np.uint8)
    return mask


def write_dataset(out: Path, n_train: int = 24, n_test_good: int = 6, n_test_per_defect: int = 4,
                  height: int = 96, min_length: int = 300, max_length: int = 520, seed: int = 0) -> Path:
    """Write the strips in MVTec layout under ``out`` and return it."""
    rng = np.random.default_rng(seed)

    def length() -> int:
        return int(rng.integers(min_length, max_length + 1))

    for index in range(n_train):
        save_image(out / "train" / "good" / f"{index:03d}.png", draw_strip(rng, height, length()))
    for index in range(n_test_good):
        save_image(out / "test" / "good" / f"{index:03d}.png", draw_strip(rng, height, length()))
    for kind in DEFECT_TYPES:
        for index in range(n_test_per_defect):
            image = draw_strip(rng, height, length())
            mask = add_defect(rng, image, kind)
            save_image(out / "test" / kind / f"{index:03d}.png", image)
            save_image(out / "ground_truth" / kind / f"{index:03d}_mask.png", mask)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="Folder to write the data set into.")
    parser.add_argument("--train", type=int, default=24, help="Good training images.")
    parser.add_argument("--test-good", type=int, default=6, help="Good test images.")
    parser.add_argument("--test-defect", type=int, default=4, help="Test images per defect type.")
    parser.add_argument("--height", type=int, default=96, help="Strip height in pixels.")
    parser.add_argument("--min-length", type=int, default=300, help="Shortest strip in pixels.")
    parser.add_argument("--max-length", type=int, default=520, help="Longest strip in pixels.")
    parser.add_argument("--seed", type=int, default=0, help="Random seed (same seed, same images).")
    args = parser.parse_args()
    write_dataset(args.out, args.train, args.test_good, args.test_defect, args.height, args.min_length,
                  args.max_length, args.seed)
    print(f"wrote synthetic strips to {args.out}")


if __name__ == "__main__":
    main()
