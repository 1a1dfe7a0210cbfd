"""A camera that replays image files, for the bench, demos and tests.

It behaves like a line camera as far as the daemon can tell: frames arrive on a monotonic schedule
at ``fps`` (so slow inference does not stretch the nominal rate, and a late frame does not cause a
catch-up burst), the stream ends or loops, and a file that will not decode becomes a frame with
``error`` set rather than an exception, exactly as an incomplete buffer would from a real camera.
It can also stand in for the GenTL camera where no producer is at hand: files shuffled with a
seed, frames passed through a camera pixel format (encoded, then decoded by :mod:`edge.cameras.pixels`),
``software`` trigger semantics (a missed trigger is an error frame, not a silent skip), and
injected faults (timeouts, incomplete buffers, device loss for a while or for good) so the
daemon's watchdog and reconnect path can be exercised end to end.

A looping replay decodes each file once and then hands over the kept pixels (``cache_mb``): a
camera delivers pixels, so a PNG decode on every frame (about 1.2 ms for a 256x256 demo image here)
would be a cost of the simulator, not of the station, in every latency the benches measure.
"""

from __future__ import annotations

import glob
import logging
import random
import threading
import time
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from edge.cameras.base import (
    DEFAULT_MAX_PIXELS,
    CameraDisconnected,
    CameraError,
    CameraNotFound,
    Frame,
    GrabTimeout,
    new_stats,
)
from edge.cameras.pacing import Pacer
from edge.cameras.pixels import PIXEL_FORMATS, PixelFormatError, decode, encode
from edge.configfields import resolve_path
from edge.model.imageio import IMAGE_SUFFIXES, ImageReadError, list_images, read_image

log = logging.getLogger(__name__)

GLOB_CHARS = ("*", "?", "[")


class SimFaultsConfig(BaseModel):
    """``camera.faults:`` faults the sim camera injects, to exercise the daemon's recovery on the bench."""

    model_config = ConfigDict(extra="forbid")

    timeout_every: int | None = Field(None, ge=1, description="Every Nth grab times out (no frame consumed).")
    incomplete_every: int | None = Field(
        None, ge=1, description="Every Nth frame arrives incomplete: skipped and counted (free_run) or an error "
        "frame (software trigger).",
    )
    disconnect_after: int | None = Field(
        None, ge=1, description="After this many frames since (re)opening, the device is lost."
    )
    down_for_s: float | None = Field(
        0.0, ge=0, description="After a loss, open() fails for this long; null = the device never comes back."
    )
    absent_at_start_s: float = Field(
        0.0, ge=0, description="From the camera's creation, open() fails for this long: a camera that is late at "
        "boot (a PoE camera still starting), which the daemon retries with the reconnect backoff.",
    )


class SimCameraConfig(BaseModel):
    """``camera:`` section for ``type: sim``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["sim"] = Field(description="Camera source kind; 'sim' replays image files.")
    source: str = Field(
        description="Folder of images (png/jpg/jpeg/bmp) or a glob such as 'imgs/**/*.png'. "
        "A relative path in a config file is taken from that file's folder.",
        min_length=1,
    )
    fps: float = Field(0.0, ge=0, description="Frames per second to replay at; 0 = as fast as possible.")
    loop: bool = Field(False, description="Start again from the first image at the end instead of stopping.")
    max_frames: int | None = Field(
        None, gt=0, description="Stop after this many frames (counts loops); none = no limit."
    )
    recursive: bool = Field(True, description="Search sub-folders of a folder source.")
    shuffle: bool = Field(False, description="Replay in a random order (reshuffled on each loop).")
    seed: int = Field(0, description="Seed for shuffle, so a shuffled run can be repeated exactly.")
    trigger: Literal["free_run", "software"] = Field(
        "free_run", description="software: every grab is a trigger and a missed image is an error frame."
    )
    pixel_format: str | None = Field(
        None, description="Pass each image through this camera pixel format (e.g. BayerRG8, Mono12) and back."
    )
    max_pixels: int = Field(
        DEFAULT_MAX_PIXELS, ge=1, description="A frame with more pixels than this is an error verdict, refused from "
        "its header before decoding (an 8000x8000 PNG would take seconds and hundreds of MB).",
    )
    cache_mb: float = Field(
        256.0, ge=0, description="With loop on, keep up to this many MB of decoded images in memory, so each pass "
        "after the first hands over pixels as a camera does instead of decoding every file again; 0 = decode "
        "every frame. A file changed on disk is read again.",
    )
    faults: SimFaultsConfig = Field(default_factory=SimFaultsConfig, description="Injected faults (bench only).")

    @field_validator("pixel_format")
    @classmethod
    def _known_format(cls, value: str | None) -> str | None:
        if value is not None and value not in PIXEL_FORMATS:
            raise ValueError(f"unknown pixel format {value!r} (supported: {', '.join(PIXEL_FORMATS)})")
        return value

    @field_validator("source")
    @classmethod
    def _resolve_relative(cls, value: str, info: ValidationInfo) -> str:
        """Make a relative source relative to the config file, not to the working directory."""
        return str(resolve_path(value, info))


def find_images(source: str, recursive: bool = True) -> list[Path]:
    """Image files named by ``source`` (a folder, a glob or one file), sorted; CameraError if none."""
    if any(ch in source for ch in GLOB_CHARS):
        matches = sorted(Path(p) for p in glob.glob(source, recursive=True))
        files = [p for p in matches if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise CameraError(f"sim camera: no image files match {source!r}")
        return files
    path = Path(source)
    if path.is_file():
        return [path]
    if not path.exists():
        raise CameraError(f"sim camera: source {source} does not exist")
    files = list_images(path, recursive=recursive)
    if not files:
        raise CameraError(f"sim camera: no images ({'/'.join(s[1:] for s in IMAGE_SUFFIXES)}) in folder {source}")
    return files


class SimCamera:
    """Replays files from :class:`SimCameraConfig` one ``grab`` at a time."""

    def __init__(self, config: SimCameraConfig) -> None:
        self.config = config
        self._files: list[Path] = []
        self._order: list[Path] = []
        self._index = 0
        self._count = 0
        self._grabs = 0
        self._since_open = 0
        self._down_until: float | None = None
        self._lost = False
        self._present_from = time.monotonic() + config.faults.absent_at_start_s
        self._rng = random.Random(config.seed)
        self._closed = threading.Event()
        self._pacer = Pacer(config.fps, self._closed, "sim camera")
        self._stats = new_stats()
        self._decoded: dict[Path, tuple[tuple[int, int], np.ndarray]] = {}  # path -> ((mtime_ns, size), pixels)
        self._decoded_bytes = 0

    @property
    def files(self) -> list[Path]:
        """The images this camera will replay, in order (the first pass when shuffled)."""
        return list(self._order)

    def stats(self) -> dict[str, int]:
        """Counters since construction, with the GenTL camera's keys."""
        return {**self._stats, "late_triggers": self._pacer.late}

    @classmethod
    def check(cls, config: SimCameraConfig) -> None:
        """What start-up would refuse, without opening: a source that does not exist or holds no image."""
        find_images(config.source, config.recursive)

    def open(self) -> None:
        """List the images now so a missing or empty source fails at start-up, not mid-shift.

        A reopen after a (simulated) device loss keeps the replay position, like a camera that
        comes back on the same line; it fails while the device is still down.
        """
        if time.monotonic() < self._present_from:
            raise CameraNotFound("sim camera: device not found (simulated: absent at start)")
        if self._lost:
            if self._down_until is None or time.monotonic() < self._down_until:
                raise CameraError("sim camera: device not found (simulated loss)")
            self._lost = False
        if not self._files:
            self._files = find_images(self.config.source, self.config.recursive)
            self._order = self._new_order()
            self._index = 0
            self._count = 0
        self._since_open = 0
        self._pacer.reset()
        self._closed.clear()
        self._stats["opens"] += 1
        log.info("sim camera: %d images from %s (fps=%s, loop=%s, shuffle=%s, pixel_format=%s)", len(self._files),
                 self.config.source, self.config.fps or "max", self.config.loop, self.config.shuffle,
                 self.config.pixel_format or "-")

    def _new_order(self) -> list[Path]:
        order = list(self._files)
        if self.config.shuffle:
            self._rng.shuffle(order)
        return order

    def grab(self, timeout: float) -> Frame | None:
        """Next frame when it is due; ``None`` at the end; :class:`GrabTimeout` if not due in ``timeout``."""
        if self._closed.is_set() or not self._files or self._lost:
            return None
        config, faults = self.config, self.config.faults
        while True:
            if config.max_frames is not None and self._count >= config.max_frames:
                return None
            if self._index >= len(self._order):
                if not config.loop:
                    return None
                self._order = self._new_order()
                self._index = 0
            if faults.disconnect_after is not None and self._since_open >= faults.disconnect_after:
                self._lose_device()
            if not self._pacer.wait(timeout):
                return None
            self._grabs += 1
            if faults.timeout_every is not None and self._grabs % faults.timeout_every == 0:
                self._stats["timeouts"] += 1
                raise GrabTimeout("sim camera: simulated fetch timeout")
            if config.trigger == "software":
                self._stats["triggers"] += 1
            path = self._order[self._index]
            self._index += 1
            self._since_open += 1
            incomplete = faults.incomplete_every is not None and self._grabs % faults.incomplete_every == 0
            if incomplete:
                self._stats["incomplete"] += 1
                if config.trigger != "software":
                    continue  # free-run: the producer discards it, the next frame comes
                self._stats["trigger_misses"] += 1
            self._count += 1
            return self._frame(path, "incomplete buffer (simulated)" if incomplete else None)

    def _lose_device(self) -> None:
        self._lost = True
        down_for = self.config.faults.down_for_s
        self._down_until = None if down_for is None else time.monotonic() + down_for
        raise CameraDisconnected(f"sim camera: device lost after {self._since_open} frames (simulated)")

    def _frame(self, path: Path, error: str | None) -> Frame:
        t_capture = time.time()
        start = time.perf_counter()
        image = None
        if error is None:
            try:
                image = self._read(path)
                if self.config.pixel_format is not None:
                    height, width = image.shape[:2]
                    image = decode(encode(image, self.config.pixel_format), width, height, self.config.pixel_format)
            except (ImageReadError, cv2.error, PixelFormatError) as exc:
                image, error = None, str(exc)
                self._stats["decode_errors"] += 1
                log.debug("sim camera: cannot decode %s: %s", path, exc)
        if image is not None:
            self._stats["frames"] += 1
        decode_ms = (time.perf_counter() - start) * 1000.0
        return Frame(image=image, frame_id=self._count, source=str(path), t_capture=t_capture,
                     error=error, decode_ms=decode_ms)

    def _read(self, path: Path) -> np.ndarray:
        """The file's pixels: from the cache while the file is unchanged, else decoded (and kept if there is room).

        A cached image is read-only, so a stage that would change a frame in place fails loudly
        instead of changing every later pass of that file.
        """
        if not self.config.loop or self.config.cache_mb <= 0:
            return read_image(path, max_pixels=self.config.max_pixels)
        try:
            info = path.stat()
            key = (info.st_mtime_ns, info.st_size)
        except OSError:
            key = None
        cached = self._decoded.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        image = read_image(path, max_pixels=self.config.max_pixels)
        if cached is not None:
            del self._decoded[path]
            self._decoded_bytes -= cached[1].nbytes
        if key is not None and self._decoded_bytes + image.nbytes <= self.config.cache_mb * 1024 * 1024:
            image.flags.writeable = False
            self._decoded[path] = (key, image)
            self._decoded_bytes += image.nbytes
        return image

    def close(self) -> None:
        """Stop the stream; a ``grab`` waiting in another thread returns ``None``."""
        self._closed.set()
