"""Camera pixel formats (GenICam PFNC names) to the arrays the runtime inspects, and back.

A GenTL camera hands us a flat buffer and a pixel-format name; the rest of the runtime expects
what :mod:`edge.model.imageio` makes of a file: ``uint8`` ``HxW`` gray or ``HxWx3`` BGR. This module
is the one place that bridges the two, so a colour camera and a PNG of the same part produce the
same array, and the Bayer naming trap (PFNC ``BayerRG`` = red at the top-left pixel, which OpenCV
calls ``BayerBG``) is handled once and tested against known mosaics. :func:`encode` goes the
other way, so the sim camera and the tests can produce camera-native buffers from image files.
More-than-8-bit formats are scaled to 8 bit by dropping low bits (what the bundle was trained on).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

log = logging.getLogger(__name__)


class PixelFormatError(ValueError):
    """The pixel format is not supported, or the buffer does not fit its width x height."""


@dataclass(frozen=True)
class PixelFormat:
    """How one PFNC format is laid out: channels per pixel, significant bits, colour handling."""

    name: str
    channels: int
    bits: int
    kind: str  # "mono", "rgb", "bgr", "rgba", "bgra" or "bayer"
    bayer_code: int | None = None  # OpenCV demosaic code to BGR, for kind "bayer"

    @property
    def container_bits(self) -> int:
        """Bits each sample occupies in the (unpacked) buffer: 8 or 16."""
        return 8 if self.bits == 8 else 16


# PFNC names the colour of the top-left pixel and its right neighbour; OpenCV names the colours of
# the second row's second and third pixels. Hence the apparently swapped codes below.
_BAYER_TO_CV = {
    "RG": cv2.COLOR_BayerBG2BGR,
    "GR": cv2.COLOR_BayerGB2BGR,
    "GB": cv2.COLOR_BayerGR2BGR,
    "BG": cv2.COLOR_BayerRG2BGR,
}


def _build_table() -> dict[str, PixelFormat]:
    table: dict[str, PixelFormat] = {}
    for bits in (8, 10, 12, 16):
        table[f"Mono{bits}"] = PixelFormat(f"Mono{bits}", 1, bits, "mono")
        for pattern, code in _BAYER_TO_CV.items():
            name = f"Bayer{pattern}{bits}"
            table[name] = PixelFormat(name, 1, bits, "bayer", code)
    table["RGB8"] = PixelFormat("RGB8", 3, 8, "rgb")
    table["BGR8"] = PixelFormat("BGR8", 3, 8, "bgr")
    table["RGBa8"] = PixelFormat("RGBa8", 4, 8, "rgba")
    table["BGRa8"] = PixelFormat("BGRa8", 4, 8, "bgra")
    return table


PIXEL_FORMATS: dict[str, PixelFormat] = _build_table()


def pixel_format(name: str) -> PixelFormat:
    """The table entry for ``name``; :class:`PixelFormatError` listing the supported ones if unknown."""
    try:
        return PIXEL_FORMATS[name]
    except KeyError:
        raise PixelFormatError(
            f"unsupported pixel format {name!r} (supported: {', '.join(PIXEL_FORMATS)}); "
            "packed and YUV formats must be switched off on the camera"
        ) from None


def _samples(data: np.ndarray, fmt: PixelFormat, width: int, height: int) -> np.ndarray:
    """The buffer as ``height x width x channels`` samples of the format's container type."""
    flat = np.ascontiguousarray(data).reshape(-1)
    dtype = np.dtype(np.uint8) if fmt.container_bits == 8 else np.dtype("<u2")
    if flat.dtype != dtype:
        if flat.dtype == np.uint8:
            flat = flat.view(dtype)  # raw bytes of a 16-bit format: little-endian per PFNC
        elif flat.dtype.kind == "u" and flat.dtype.itemsize == dtype.itemsize:
            flat = flat.view(dtype)
        else:
            raise PixelFormatError(f"{fmt.name}: buffer of {flat.dtype} cannot hold {fmt.container_bits}-bit samples")
    expected = width * height * fmt.channels
    if flat.size < expected:
        raise PixelFormatError(
            f"{fmt.name}: buffer holds {flat.size} samples, {width}x{height}x{fmt.channels} = {expected} needed"
        )
    return flat[:expected].reshape(height, width, fmt.channels)


def _to_8bit(samples: np.ndarray, bits: int) -> np.ndarray:
    if bits == 8:
        return samples.astype(np.uint8, copy=False)
    return (samples >> (bits - 8)).astype(np.uint8)


def decode(data: np.ndarray, width: int, height: int, name: str) -> np.ndarray:
    """A new ``uint8`` array (``HxW`` gray or ``HxWx3`` BGR) from a camera buffer in format ``name``.

    The result never shares memory with ``data``: the buffer goes back to the producer after this.
    """
    fmt = pixel_format(name)
    if width <= 0 or height <= 0:
        raise PixelFormatError(f"{name}: invalid image size {width}x{height}")
    samples = _samples(data, fmt, width, height)
    if fmt.kind == "mono":
        return np.array(_to_8bit(samples[:, :, 0], fmt.bits), copy=True)
    if fmt.kind == "bayer":
        mosaic = np.ascontiguousarray(_to_8bit(samples[:, :, 0], fmt.bits))
        assert fmt.bayer_code is not None
        return cv2.cvtColor(mosaic, fmt.bayer_code)
    if fmt.kind in ("rgb", "rgba"):
        return np.ascontiguousarray(samples[:, :, 2::-1])
    return np.array(samples[:, :, :3], copy=True)  # bgr, bgra


def encode(image: np.ndarray, name: str) -> np.ndarray:
    """The flat buffer a camera would send for ``image`` (``uint8`` gray or BGR) in format ``name``.

    Used by the sim camera's ``pixel_format`` option and by tests: 16-bit formats put the 8-bit
    value in the top bits; Bayer formats sample the colour of each site from a BGR image.
    """
    fmt = pixel_format(name)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise PixelFormatError(f"encode needs a uint8 gray or BGR image, not {image.dtype} {image.shape}")
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    bgr = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if fmt.kind == "mono":
        plane = gray
    elif fmt.kind == "bayer":
        plane = _mosaic(bgr, fmt.name[5:7])
    elif fmt.kind == "rgb":
        plane = bgr[:, :, ::-1]
    elif fmt.kind == "bgr":
        plane = bgr
    else:
        alpha = np.full(bgr.shape[:2] + (1,), 255, dtype=np.uint8)
        plane = np.concatenate([bgr[:, :, ::-1] if fmt.kind == "rgba" else bgr, alpha], axis=2)
    if fmt.container_bits == 16:
        wide = plane.astype(np.uint16) << (fmt.bits - 8)
        return np.ascontiguousarray(wide).reshape(-1)
    return np.ascontiguousarray(plane).reshape(-1)


_CHANNEL = {"B": 0, "G": 1, "R": 2}


def _mosaic(bgr: np.ndarray, pattern: str) -> np.ndarray:
    """One Bayer plane: ``pattern`` names the top-left and top-right colours (PFNC), e.g. ``RG``."""
    second_row = {"RG": "GB", "BG": "GR", "GR": "BG", "GB": "RG"}[pattern]
    plane = np.empty(bgr.shape[:2], dtype=np.uint8)
    for row, colours in ((0, pattern), (1, second_row)):
        for col, colour in enumerate(colours):
            plane[row::2, col::2] = bgr[row::2, col::2, _CHANNEL[colour]]
    return plane
