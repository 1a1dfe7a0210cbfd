"""Reading image files into the arrays the rest of the runtime expects.

One place decides how a file becomes pixels, so that training, calibration, evaluation and the
daemon all see exactly the same array for the same file. Images come back as OpenCV does them:
``uint8`` ``HxW`` for grayscale files and ``HxWx3`` BGR for colour files; 16-bit files are scaled
to 8 bit. A file that cannot be decoded raises :class:`ImageReadError` instead of returning None.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


class ImageReadError(Exception):
    """A file that should hold an image could not be read or decoded."""


def read_image(path: str | Path) -> np.ndarray:
    """Decode ``path`` into a ``uint8`` array (``HxW`` gray or ``HxWx3`` BGR)."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read file ({exc.strerror or exc})") from exc
    if data.size == 0:
        raise ImageReadError(f"{path}: file is empty")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageReadError(f"{path}: not a decodable image (corrupt or unsupported format)")
    return to_uint8_gray_or_bgr(image)


def to_uint8_gray_or_bgr(image: np.ndarray) -> np.ndarray:
    """Normalise a decoded image to ``uint8`` gray (``HxW``) or BGR (``HxWx3``)."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageReadError(f"unsupported pixel type {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    elif image.ndim != 2 and not (image.ndim == 3 and image.shape[2] == 3):
        raise ImageReadError(f"unsupported image shape {image.shape}")
    return np.ascontiguousarray(image)


def list_images(root: str | Path, recursive: bool = True) -> list[Path]:
    """Image files under ``root`` (png/jpg/jpeg/bmp, any case), sorted for a stable order."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory")
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in root.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def encode_jpeg(image: np.ndarray, max_side: int, quality: int) -> bytes:
    """``image`` (``uint8`` gray or BGR) as a JPEG whose longest side is at most ``max_side``.

    For the live view (``publish.send_image``): a smaller copy is shrunk with area averaging
    (sharp, no aliasing), one at or under ``max_side`` is encoded as it is.
    """
    height, width = image.shape[:2]
    longest = max(height, width)
    try:
        if longest > max_side:
            scale = max_side / longest
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    except cv2.error as exc:
        raise ImageReadError(f"JPEG encoding of a {width}x{height} image failed: {exc}") from None
    if not ok:
        raise ImageReadError(f"JPEG encoding of a {width}x{height} image failed")
    return jpeg.tobytes()
