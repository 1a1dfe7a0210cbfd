"""Camera pixel formats decode to the arrays a PNG of the same part gives: known pixels, known mosaics, real images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.model.imageio import list_images, read_image
from edge.cameras.pixels import PIXEL_FORMATS, PixelFormatError, decode, encode

DEMO = Path(__file__).resolve().parents[4] / "edge" / "demo"

B, G, R = 40, 130, 220  # a colour whose three channels differ, so any channel swap shows


def bayer_mosaic(pattern: str, size: int = 8) -> np.ndarray:
    """A hand-laid mosaic of the colour (B, G, R): ``pattern`` names the top-left 2x2 cell row by row (PFNC)."""
    value = {"R": R, "G": G, "B": B}
    cell = {"RG": "RGGB", "GR": "GRBG", "GB": "GBRG", "BG": "BGGR"}[pattern]
    plane = np.empty((size, size), dtype=np.uint8)
    plane[0::2, 0::2] = value[cell[0]]
    plane[0::2, 1::2] = value[cell[1]]
    plane[1::2, 0::2] = value[cell[2]]
    plane[1::2, 1::2] = value[cell[3]]
    return plane


@pytest.mark.parametrize("pattern", ["RG", "GR", "GB", "BG"])
def test_bayer8_mosaic_of_one_colour_decodes_to_that_colour_in_bgr(pattern):
    out = decode(bayer_mosaic(pattern).reshape(-1), 8, 8, f"Bayer{pattern}8")
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert out[2:6, 2:6].reshape(-1, 3).tolist() == [[B, G, R]] * 16


@pytest.mark.parametrize("pattern", ["RG", "GR", "GB", "BG"])
def test_bayer16_little_endian_bytes_decode_like_the_8_bit_mosaic(pattern):
    wide = bayer_mosaic(pattern).astype("<u2") << 8 | 0x7F  # low byte is noise below 8 bits
    raw = np.frombuffer(wide.tobytes(), dtype=np.uint8)  # what a producer hands over: bytes
    out = decode(raw, 8, 8, f"Bayer{pattern}16")
    assert out[2:6, 2:6].reshape(-1, 3).tolist() == [[B, G, R]] * 16


@pytest.mark.parametrize("bits", [10, 12])
@pytest.mark.parametrize("pattern", ["RG", "GR", "GB", "BG"])
def test_bayer10_and_12_little_endian_bytes_decode_like_the_8_bit_mosaic(pattern, bits):
    noise = (1 << (bits - 8)) - 1  # every bit below the top 8 set: must not leak into the result
    wide = bayer_mosaic(pattern).astype("<u2") << (bits - 8) | noise
    assert int(wide.max()) < 1 << bits  # a valid Bayer10/12 sample, 2 bytes each, high bits zero
    raw = np.frombuffer(wide.tobytes(), dtype=np.uint8)
    out = decode(raw, 8, 8, f"Bayer{pattern}{bits}")
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert out[2:6, 2:6].reshape(-1, 3).tolist() == [[B, G, R]] * 16


# A hand-written 3x4 image per format, as the little-endian bytes a producer sends, and the 8-bit
# gray image it must become (value >> (bits - 8)): black, white, mid-grey, just below and above a step.
MONO_KNOWN = {
    "Mono10": ([[0x000, 0x3FF, 0x200, 0x003], [0x004, 0x2AF, 0x1FF, 0x100], [0x3FC, 0x3FB, 0x001, 0x080]],
               [[0, 255, 128, 0], [1, 171, 127, 64], [255, 254, 0, 32]]),
    "Mono12": ([[0x000, 0xFFF, 0x800, 0x00F], [0x010, 0xABC, 0x7FF, 0x400], [0xFF0, 0xFEF, 0x001, 0x200]],
               [[0, 255, 128, 0], [1, 171, 127, 64], [255, 254, 0, 32]]),
}


@pytest.mark.parametrize("name", sorted(MONO_KNOWN))
def test_mono10_and_12_known_images_from_raw_bytes(name):
    samples, expected = MONO_KNOWN[name]
    raw = np.frombuffer(np.array(samples, dtype="<u2").tobytes(), dtype=np.uint8)
    out = decode(raw, 4, 3, name)
    assert out.dtype == np.uint8 and out.tolist() == expected


@pytest.mark.parametrize(("name", "sample", "expected"), [
    ("Mono8", 0xAB, 0xAB), ("Mono10", 0x2AF, 0xAB), ("Mono12", 0xABC, 0xAB), ("Mono16", 0xABCD, 0xAB),
])
def test_mono_formats_keep_the_top_8_bits(name, sample, expected):
    dtype = np.uint8 if name == "Mono8" else np.uint16
    data = np.full(6 * 4, sample, dtype=dtype)
    out = decode(data, 6, 4, name)
    assert out.shape == (4, 6) and out.dtype == np.uint8 and (out == expected).all()


@pytest.mark.parametrize(("name", "pixel"), [
    ("RGB8", [R, G, B]), ("BGR8", [B, G, R]), ("RGBa8", [R, G, B, 7]), ("BGRa8", [B, G, R, 7]),
])
def test_colour_formats_decode_to_bgr_and_drop_alpha(name, pixel):
    data = np.tile(np.array(pixel, dtype=np.uint8), 3 * 2)
    out = decode(data, 3, 2, name)
    assert out.shape == (2, 3, 3) and out.reshape(-1, 3).tolist() == [[B, G, R]] * 6


def test_decode_returns_a_copy_that_outlives_the_buffer():
    buffer = np.arange(16, dtype=np.uint8)
    for name in ("Mono8", "BayerRG8"):
        out = decode(buffer, 4, 4, name)
        before = out.copy()
        buffer[:] = 0  # the producer reuses the buffer
        assert np.shares_memory(out, buffer) is False and (out == before).all()
        buffer[:] = np.arange(16)


def test_short_buffer_and_unknown_format_are_errors_that_say_why():
    with pytest.raises(PixelFormatError, match="64x48x1 = 3072 needed"):
        decode(np.zeros(100, dtype=np.uint8), 64, 48, "Mono8")
    with pytest.raises(PixelFormatError, match="unsupported pixel format 'YUV422Packed'.*Mono8"):
        decode(np.zeros(100, dtype=np.uint8), 4, 4, "YUV422Packed")


@pytest.mark.parametrize("name", sorted(PIXEL_FORMATS))
def test_real_demo_image_survives_every_format(name):
    image = read_image(list_images(DEMO / "images")[0])
    height, width = image.shape[:2]
    out = decode(encode(image, name), width, height, name)
    if PIXEL_FORMATS[name].kind == "mono":
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        assert out.shape == (height, width) and (out == gray).all()
    else:
        assert out.shape == (height, width, 3)
        expected = image if image.ndim == 3 else np.repeat(image[:, :, None], 3, axis=2)
        error = np.abs(out.astype(int) - expected.astype(int))
        # Exact for packed colour; demosaicing loses a little at edges only.
        limit = 0 if PIXEL_FORMATS[name].kind != "bayer" else 6
        assert error.mean() <= limit, f"{name}: mean abs error {error.mean():.2f}"
