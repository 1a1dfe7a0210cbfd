"""Fuzzed image bytes: random, truncated, every format OpenCV writes, huge dimensions in the header.

What a camera folder or a network share can hold. :func:`edge.model.imageio.read_image` (what the
sim camera, calibration and evaluation read files with) must return an image or raise
``ImageReadError`` with one line, within the frame-size limit (a header claiming 60000x60000 is
refused before anything is allocated); and the daemon, replaying such a folder, must give every
file a verdict (an error verdict for the bad ones) and keep running to the end of the stream.
"""

from __future__ import annotations

import functools
import struct
import tempfile
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.cameras.base import DEFAULT_MAX_PIXELS
from edge.model.imageio import ImageReadError, read_image
from edge.tools.harness import DEMO_IMAGES, RunningDaemon
from tests.fuzz.conftest import Recorder, examples

SETTINGS = {"deadline": None, "database": None, "suppress_health_check": [HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow]}
SAMPLE = cv2.imread(str(DEMO_IMAGES / "good" / "000.png"))
FORMATS = [ext for ext in (".png", ".jpg", ".bmp", ".tiff", ".webp", ".ppm", ".pgm", ".ras", ".jp2", ".hdr", ".pfm")
           if cv2.haveImageWriter("x" + ext)]


@functools.cache
def encoded(ext: str, gray: bool) -> bytes:
    """``SAMPLE`` in format ``ext``, gray or colour (each format gets the kinds it can hold: .pgm gray, .ppm colour)."""
    gray = {".pgm": True, ".ppm": False}.get(ext, gray)
    image = cv2.cvtColor(SAMPLE, cv2.COLOR_BGR2GRAY) if gray else SAMPLE
    if ext in (".hdr", ".pfm"):
        image = (image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)).astype(np.float32) / 255.0
    ok, data = cv2.imencode(ext, image)
    assert ok, ext
    return data.tobytes()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header says width x height, with one tiny compressed row after it."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def bmp_claiming(width: int, height: int) -> bytes:
    header = bytearray(encoded(".bmp", gray=False)[:54])
    header[18:26] = struct.pack("<ii", width, height)
    return bytes(header) + bytes(64)


def jpeg_claiming(width: int, height: int) -> bytes:
    """The sample JPEG with its start-of-frame saying width x height (16 bits each)."""
    data = bytearray(encoded(".jpg", gray=False))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height % 65536, width % 65536)
    return bytes(data)


@st.composite
def image_bytes(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["random", "truncated", "flipped", "huge"]))
    if kind == "random":
        return draw(st.binary(max_size=2048))
    if kind == "huge":
        width, height = draw(st.integers(1, 2**31 - 1)), draw(st.integers(1, 2**31 - 1))
        return draw(st.sampled_from([png_claiming, bmp_claiming, jpeg_claiming]))(width, height)
    data = encoded(draw(st.sampled_from(FORMATS)), draw(st.booleans()))
    if kind == "truncated":
        return data[:draw(st.integers(0, len(data) - 1))]
    buffer = bytearray(data)
    for _ in range(draw(st.integers(1, 8))):
        buffer[draw(st.integers(0, len(buffer) - 1))] = draw(st.integers(0, 255))
    return bytes(buffer)


def read(data: bytes, recorder: Recorder, folder: Path) -> None:
    path = folder / "frame.png"
    path.write_bytes(data)
    try:
        image = read_image(path, max_pixels=DEFAULT_MAX_PIXELS)
    except ImageReadError as exc:
        assert "\n" not in str(exc), str(exc)
        recorder.refused(str(exc).replace(str(path), "FILE"))
        return
    except Exception:
        recorder.crashed()
        raise
    assert image.dtype == np.uint8 and image.shape[0] * image.shape[1] <= DEFAULT_MAX_PIXELS
    recorder.accepted()


@pytest.mark.fuzz_target("image bytes")
@settings(max_examples=examples(300), **SETTINGS)
@given(data=image_bytes())
def test_any_bytes_read_as_an_image_or_refused_in_one_line_within_the_size_limit(data, recorder, tmp_path):
    read(data, recorder, tmp_path)


@pytest.mark.fuzz_target("image bytes")
def test_png_jpeg_bmp_read_back_and_every_other_format_opencv_writes_is_refused_in_one_line(recorder, tmp_path):
    for ext in FORMATS:
        for gray in (False, True):
            data = encoded(ext, gray)
            (tmp_path / "frame.png").write_bytes(data)
            if ext in (".png", ".jpg", ".bmp"):
                assert read_image(tmp_path / "frame.png").shape[:2] == SAMPLE.shape[:2]
            read(data, recorder, tmp_path)
            read(data[: len(data) // 3], recorder, tmp_path)
    assert recorder.stats.accepted >= 6 and len(FORMATS) > 3


@pytest.mark.fuzz_target("image bytes")
def test_the_daemon_gives_every_fuzzed_file_a_verdict_and_runs_to_the_end(recorder, tmp_path):
    files = tmp_path / "frames"
    files.mkdir()
    samples = [png_claiming(60000, 60000), bmp_claiming(40000, -40000), b"", b"\x89PNG", encoded(".jpg", True)[:500]]
    samples += [encoded(ext, False)[:200] for ext in FORMATS] + [encoded(".png", False)]
    for index, data in enumerate(samples):
        (files / f"{index:03d}.png").write_bytes(data)
    config = {"camera": {"type": "sim", "source": str(files)}, "watchdog": {"error_frames_alarm": 0}}
    with tempfile.TemporaryDirectory() as work, RunningDaemon(Path(work), config) as daemon:
        assert daemon.wait() == 0, daemon.log_tail()
    verdicts = daemon.of("verdict")
    assert len(verdicts) == len(samples) and daemon.stopped()["balanced"]
    for message in verdicts:
        if message["error"]:
            recorder.refused(message["error"].replace(str(files), "DIR"))
        else:
            recorder.accepted()
    assert verdicts[-1]["error"] is None and verdicts[0]["error"].endswith("above camera.max_pixels 50 Mpx")
