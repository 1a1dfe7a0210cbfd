"""Reading image files into the arrays the rest of the runtime expects.

One place decides how a file becomes pixels, so that training, calibration, evaluation and the
daemon all see exactly the same array for the same file. Images come back as OpenCV does them:
``uint8`` ``HxW`` for grayscale files and ``HxWx3`` BGR for colour files; 16-bit files are scaled
to 8 bit. A file that cannot be decoded raises :class:`ImageReadError` instead of returning None.

A file can also be too large to decode at all: an 8000x8000 PNG costs seconds and hundreds of MB
before anyone can say it is not a camera frame, and a header with flipped bits can claim 2**31
columns. So :func:`image_size` reads the dimensions from the PNG, JPEG or BMP header without
decoding, :func:`read_image` refuses a file above ``max_pixels`` from that alone, and content
in any other format (a TIFF renamed .png) is refused rather than handed to a decoder whose
header nobody checked: the files the runtime reads are the formats of ``IMAGE_SUFFIXES``.
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class ImageReadError(Exception):
    """A file that should hold an image could not be read or decoded."""


class ImageTooLarge(ImageReadError):
    """The image has more pixels than allowed (``camera.max_pixels``); it was not decoded."""


def too_large(width: int, height: int, max_pixels: int | None) -> str | None:
    """Why a ``width x height`` frame is refused under ``max_pixels``, or None when it is not."""
    if max_pixels is None or width * height <= max_pixels:
        return None
    return (f"frame too large: {width}x{height} = {width * height / 1e6:.1f} Mpx, above camera.max_pixels "
            f"{max_pixels / 1e6:g} Mpx")


def image_size(data: bytes | np.ndarray) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG, JPEG or BMP header, without decoding; None for other or broken data."""
    head = bytes(data[:65536]) if bytes(data[:2]) != b"\xff\xd8" else bytes(data)  # JPEG: EXIF may be long
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24 and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return width, height
    if head[:2] == b"BM" and len(head) >= 26:
        width, height = struct.unpack("<ii", head[18:26])
        return abs(width), abs(height)
    if head[:2] == b"\xff\xd8":
        return _jpeg_size(head)
    return None


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    """Walk the JPEG markers to the first start-of-frame and read its dimensions."""
    pos = 2
    while pos + 4 <= len(head):
        if head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        if marker in (0x01, *range(0xD0, 0xD9)):  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack(">H", head[pos + 2:pos + 4])
        if marker in JPEG_SOF and pos + 9 <= len(head):
            height, width = struct.unpack(">HH", head[pos + 5:pos + 9])
            return width, height
        pos += 2 + length
    return None


def read_image(path: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """Decode ``path`` into a ``uint8`` array (``HxW`` gray or ``HxWx3`` BGR); :class:`ImageTooLarge` past ``max_pixels``."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read file ({exc.strerror or exc})") from exc
    if data.size == 0:
        raise ImageReadError(f"{path}: file is empty")
    size = image_size(data)
    if size is None:
        raise ImageReadError(f"{path}: not a PNG, JPEG or BMP image (or its header is broken)")
    if (why := too_large(*size, max_pixels)) is not None:
        raise ImageTooLarge(f"{path}: {why}")
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # a decoder's own check failed (a Sun raster header claiming 2**31 columns)
        raise ImageReadError(f"{path}: not a decodable image ({_first_line(exc)})") from None
    if image is None:
        raise ImageReadError(f"{path}: not a decodable image (corrupt or unsupported format)")
    if (why := too_large(image.shape[1], image.shape[0], max_pixels)) is not None:
        raise ImageTooLarge(f"{path}: {why}")
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


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


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
