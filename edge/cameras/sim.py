"""A camera that replays image files, for the bench, demos and tests.

It behaves like a line camera as far as the daemon can tell: frames arrive on a monotonic schedule
at ``fps`` (so slow inference does not stretch the nominal rate, and a late frame does not cause a
catch-up burst), the stream ends or loops, and a file that will not decode becomes a frame with
``error`` set rather than an exception, exactly as an incomplete buffer would from a real camera.
"""

from __future__ import annotations

import glob
import logging
import os
import threading
import time
from pathlib import Path
from typing import Literal

import cv2
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from edge.cameras.base import CameraError, Frame, GrabTimeout
from edge.imageio import IMAGE_SUFFIXES, ImageReadError, list_images, read_image

log = logging.getLogger(__name__)

GLOB_CHARS = ("*", "?", "[")


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

    @field_validator("source")
    @classmethod
    def _resolve_relative(cls, value: str, info: ValidationInfo) -> str:
        """Make a relative source relative to the config file, not to the working directory."""
        value = os.path.expanduser(value)
        base_dir = (info.context or {}).get("base_dir")
        if base_dir is not None and not os.path.isabs(value):
            value = os.path.join(str(base_dir), value)
        return os.path.normpath(value)


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
        self._index = 0
        self._count = 0
        self._next_due: float | None = None
        self._late = 0
        self._closed = threading.Event()

    @property
    def files(self) -> list[Path]:
        """The images this camera will replay, in order."""
        return list(self._files)

    @property
    def late_frames(self) -> int:
        """How often the schedule restarted because a frame was grabbed more than a period late."""
        return self._late

    def open(self) -> None:
        """List the images now so a missing or empty source fails at start-up, not mid-shift."""
        self._files = find_images(self.config.source, self.config.recursive)
        self._index = 0
        self._count = 0
        self._next_due = None
        self._closed.clear()
        log.info("sim camera: %d images from %s (fps=%s, loop=%s)", len(self._files), self.config.source,
                 self.config.fps or "max", self.config.loop)

    def grab(self, timeout: float) -> Frame | None:
        """Next frame when it is due; ``None`` at the end; :class:`GrabTimeout` if not due in ``timeout``."""
        if self._closed.is_set() or not self._files:
            return None
        if self.config.max_frames is not None and self._count >= self.config.max_frames:
            return None
        if self._index >= len(self._files):
            if not self.config.loop:
                return None
            self._index = 0
        if self.config.fps > 0 and not self._wait_until_due(timeout):
            return None
        path = self._files[self._index]
        self._index += 1
        self._count += 1
        t_capture = time.time()
        start = time.perf_counter()
        try:
            image = read_image(path)
            error = None
        except (ImageReadError, cv2.error) as exc:
            image, error = None, str(exc)
            log.debug("sim camera: cannot decode %s: %s", path, exc)
        decode_ms = (time.perf_counter() - start) * 1000.0
        return Frame(image=image, frame_id=self._count, source=str(path), t_capture=t_capture,
                     error=error, decode_ms=decode_ms)

    def _wait_until_due(self, timeout: float) -> bool:
        """Sleep until the next slot of the fps schedule; False if closed while waiting."""
        period = 1.0 / self.config.fps
        now = time.monotonic()
        if self._next_due is None:
            self._next_due = now
        delay = self._next_due - now
        if delay > timeout:
            if self._closed.wait(max(timeout, 0.0)):
                return False
            raise GrabTimeout(f"sim camera: next frame due in {delay:.3f} s")
        if delay > 0 and self._closed.wait(delay):
            return False
        now = time.monotonic()
        if now - self._next_due > period:
            # Fell behind by more than a frame: restart the schedule instead of bursting to catch up.
            self._late += 1
            self._next_due = now
        self._next_due += period
        return True

    def close(self) -> None:
        """Stop the stream; a ``grab`` waiting in another thread returns ``None``."""
        self._closed.set()
