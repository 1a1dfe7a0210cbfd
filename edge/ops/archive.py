"""The NG archive: every rejected part's verdict, image and anomaly map kept on disk, within a size cap.

When a part is rejected someone asks "why?" hours later, so the daemon keeps the evidence beside
the line: ``<dir>/<YYYYMMDD>/<station>-<seq>-<verdict>.json`` plus the image, ``-map.png`` and
``-overlay.jpg`` (the frame with its heatmap and region boxes, :func:`edge.ops.overlay.draw_overlay`,
the picture a person looks at first). NG
frames are always kept, OK frames only sampled (to see drift). The box may lose power at any
moment, so each file is written with :func:`~edge.ops.atomicfile.write_atomic` and the JSON is written
last: a record whose JSON exists is complete. Start-up removes what a crash left half-done and
the oldest whole records go when the cap is passed. Disk errors are logged and counted, never
raised: a full disk must not stop inspection. Encoding costs milliseconds, so the daemon hands
records to :class:`ArchiveWriter`, whose bounded queue drops (and counts) rather than block.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import queue
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from edge.configfields import resolve_path
from edge.ops.atomicfile import fsync_dir, is_temp, write_atomic
from edge.ops.overlay import draw_overlay, heat_from_png

log = logging.getLogger(__name__)

DAY_PATTERN = re.compile(r"^\d{8}$")
MAP_SUFFIX = "-map.png"
OVERLAY_SUFFIX = "-overlay.jpg"
OVERLAY_JPEG_QUALITY = 90
MapPng = bytes | Callable[[], bytes] | None  # a callable is encoded on the writer thread


class ArchiveConfig(BaseModel):
    """``archive:`` where NG evidence is kept and how much disk it may use."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Keep NG (and sampled OK) records on disk.")
    directory: Path | None = Field(
        None, description="Archive folder (required when enabled). Relative to the config file's folder."
    )
    max_bytes: int = Field(2_000_000_000, ge=1, description="Size cap; the oldest whole records are removed past it.")
    ok_sample_every: int = Field(0, ge=0, description="Keep one OK frame in N; 0 = never keep OK frames.")
    save_image: bool = Field(True, description="Save the camera image with each record.")
    save_map: bool = Field(True, description="Save the anomaly map (8-bit PNG) with each inspected record.")
    save_overlay: bool = Field(True, description="Save the overlay (the frame with the heatmap and the region "
                               "boxes, JPEG) with each inspected record that has an image.")
    image_format: Literal["png", "jpg"] = Field("png", description="png (lossless) or jpg (smaller, quality 95).")
    queue_size: int = Field(8, ge=1, description="Records waiting for the writer thread before new ones are dropped.")

    @field_validator("directory")
    @classmethod
    def _resolve_directory(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        """Make a relative folder relative to the config file, not the working directory."""
        return resolve_path(value, info)

    @model_validator(mode="after")
    def _directory_when_enabled(self) -> ArchiveConfig:
        if self.enabled and self.directory is None:
            raise ValueError("directory is required when the archive is enabled")
        return self


class _RateLimited:
    """Log a repeating failure at most once per ``period_s``, saying how many were not logged."""

    def __init__(self, period_s: float = 60.0) -> None:
        self.period_s, self._last, self._suppressed = period_s, float("-inf"), 0

    def __call__(self, level: int, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last < self.period_s:
            self._suppressed += 1
            return
        extra = f" ({self._suppressed} similar not logged)" if self._suppressed else ""
        log.log(level, msg + extra, *args)
        self._last, self._suppressed = now, 0


def _record_stem(name: str) -> str | None:
    """``station1-0000000042-NG`` for any file of that record; None for files not ours."""
    for suffix in (".json", MAP_SUFFIX, OVERLAY_SUFFIX, ".png", ".jpg"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def _role(name: str) -> str:
    """Which file of a record this is: map, overlay or image."""
    return "map" if name.endswith(MAP_SUFFIX) else "overlay" if name.endswith(OVERLAY_SUFFIX) else "image"


def _overlay_jpeg(message: dict[str, Any], image: np.ndarray, map_png: bytes) -> bytes:
    """The record's overlay: frame, heatmap, the verdict's regions, and its score against the threshold."""
    score, threshold = message.get("score"), message.get("threshold")
    caption = f"{message.get('station')} seq {message.get('seq')}: {message.get('verdict')}"
    if score is not None and threshold is not None:
        caption += f"  score {score:.4f} / threshold {threshold:.4f}"
    picture = draw_overlay(image, heat_from_png(map_png), message.get("regions") or [], caption=caption,
                           verdict=message.get("verdict"))
    ok, buf = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, OVERLAY_JPEG_QUALITY])
    if not ok:
        raise ValueError(f"cannot encode the overlay of a {image.shape} image")
    return buf.tobytes()


class Archive:
    """Decides which verdicts to keep and writes them; see the module docstring."""

    def __init__(self, config: ArchiveConfig) -> None:
        if config.directory is None:
            raise ValueError("Archive needs config.directory")
        self.config, self.directory = config, config.directory
        self._records: OrderedDict[Path, tuple[list[Path], int]] = OrderedDict()  # json path -> files, size
        self.bytes = self.written = self.removed = self.failures = 0
        self._ok_seen = 0
        self._warn = _RateLimited()
        self._scan()
        self._enforce_cap(keep=None)

    def stats(self) -> dict[str, int]:
        """Counters for metrics and status: records kept now, their bytes, written/removed/failed this run."""
        return {"records": len(self._records), "bytes": self.bytes, "written": self.written,
                "removed": self.removed, "failures": self.failures}

    def wants(self, message: dict[str, Any]) -> bool:
        """Whether this verdict should be archived: NG always, OK one in ``ok_sample_every`` (the first too)."""
        if message.get("verdict") != "OK":
            return True
        every = self.config.ok_sample_every
        self._ok_seen += 1
        return every > 0 and (self._ok_seen - 1) % every == 0

    def save(self, message: dict[str, Any], image: np.ndarray | None, map_png: MapPng) -> list[Path]:
        """Archive the verdict if :meth:`wants` it; the files written, [] when skipped or failed."""
        return self.write(message, image, map_png) if self.wants(message) else []

    def write(self, message: dict[str, Any], image: np.ndarray | None, map_png: MapPng) -> list[Path]:
        """Write one record (image, map, then JSON), then trim to the cap; never raises for disk errors."""
        files: list[tuple[Path, bytes]] = []
        try:
            folder, stem = self._place(message)
            if self.config.save_image and image is not None:
                params = [cv2.IMWRITE_JPEG_QUALITY, 95] if self.config.image_format == "jpg" else []
                ok, buf = cv2.imencode(f".{self.config.image_format}", image, params)
                if not ok:
                    raise ValueError(f"cannot encode a {image.shape} {image.dtype} image")
                files.append((folder / f"{stem}.{self.config.image_format}", buf.tobytes()))
            wanted = self.config.save_map or (self.config.save_overlay and image is not None)
            png = (map_png() if callable(map_png) else map_png) if wanted else None
            if self.config.save_map and png is not None:
                files.append((folder / f"{stem}{MAP_SUFFIX}", png))
            if self.config.save_overlay and png is not None and image is not None:
                files.append((folder / f"{stem}{OVERLAY_SUFFIX}", _overlay_jpeg(message, image, png)))
            names = {"image": None, "map": None, "overlay": None} | {_role(p.name): p.name for p, _ in files}
            record = dict(message, archive=names)
            files.append((folder / f"{stem}.json", json.dumps(record, default=str).encode("utf-8")))
        except (cv2.error, ValueError, TypeError) as exc:
            return self._failed(f"seq {message.get('seq')}: cannot encode the record: {exc}", [])
        written: list[Path] = []
        try:
            if not folder.is_dir():
                folder.mkdir(parents=True)
                fsync_dir(self.directory)  # the new day folder must survive a power cut too
            for path, data in files:
                write_atomic(path, data)
                written.append(path)
        except OSError as exc:
            return self._failed(f"{folder / stem}: cannot write the record: {exc}", written)
        self._records[written[-1]] = (written, sum(len(data) for _, data in files))
        self.bytes += self._records[written[-1]][1]
        self.written += 1
        self._enforce_cap(keep=written[-1])
        return written

    def _place(self, message: dict[str, Any]) -> tuple[Path, str]:
        """The record's day folder (local date of capture) and file stem, never an earlier record's."""
        day = time.strftime("%Y%m%d", time.localtime(message.get("t_capture") or time.time()))
        station = re.sub(r"[^A-Za-z0-9_-]", "_", str(message.get("station", "station")))
        base = stem = f"{station}-{int(message.get('seq', 0)):010d}-{message.get('verdict', 'NG')}"
        folder = self.directory / day
        for n in range(2, 1000):  # seq restarts at 1 with the daemon: don't overwrite the last run's record
            if folder / f"{stem}.json" not in self._records:
                break
            stem = f"{base}~{n}"
        return folder, stem

    def _failed(self, why: str, partial: list[Path]) -> list[Path]:
        self.failures += 1
        self._warn(logging.WARNING, "archive: %s (failures so far: %s)", why, self.failures)
        with contextlib.suppress(OSError):  # an image without its JSON would be an orphan until the next start
            for path in partial:
                path.unlink(missing_ok=True)
        return []

    def _scan(self) -> None:
        """Index the existing records oldest first; remove temp and orphan files a crash left behind."""
        found: list[tuple[str, int, Path, list[Path], int]] = []
        temps = orphans = 0
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            days = sorted(p for p in self.directory.iterdir() if p.is_dir() and DAY_PATTERN.match(p.name))
            for day in days:
                groups: dict[str, list[Path]] = {}
                for path in day.iterdir():
                    if is_temp(path):
                        path.unlink(missing_ok=True)
                        temps += 1
                    elif (stem := _record_stem(path.name)) is not None and path.is_file():
                        groups.setdefault(stem, []).append(path)
                for stem, paths in groups.items():
                    json_path = day / f"{stem}.json"
                    if json_path not in paths:
                        for path in paths:
                            path.unlink(missing_ok=True)
                        orphans += len(paths)
                        continue
                    paths.sort(key=lambda p: p == json_path)  # JSON last, as written
                    found.append((day.name, json_path.stat().st_mtime_ns, json_path, paths,
                                  sum(p.stat().st_size for p in paths)))
                self._remove_if_empty(day)
        except OSError as exc:
            self.failures += 1
            log.error("archive: cannot scan %s: %s; records will be tried anyway", self.directory, exc)
        for _, _, json_path, paths, size in sorted(found, key=lambda f: f[:3]):
            self._records[json_path] = (paths, size)
            self.bytes += size
        if temps or orphans:
            log.warning("archive: removed %s temp and %s orphan files left by an earlier crash", temps, orphans)
        log.info("archive: %s holds %s records, %s bytes (cap %s)", self.directory, len(self._records),
                 self.bytes, self.config.max_bytes)

    def _enforce_cap(self, keep: Path | None) -> None:
        """Remove the oldest whole records (JSON first) until under the cap; never the one just written."""
        while self.bytes > self.config.max_bytes and self._records:
            json_path = next(iter(self._records))
            if json_path == keep:
                break
            paths, size = self._records.pop(json_path)
            self.bytes -= size
            self.removed += 1
            try:
                for path in reversed(paths):  # JSON first: a crash here leaves orphans, not a broken record
                    path.unlink(missing_ok=True)
            except OSError as exc:
                self.failures += 1
                self._warn(logging.WARNING, "archive: cannot remove %s: %s", json_path, exc)
            self._remove_if_empty(json_path.parent)

    @staticmethod
    def _remove_if_empty(folder: Path) -> None:
        with contextlib.suppress(OSError):  # not empty (the usual case), or gone already
            folder.rmdir()


class ArchiveWriter:
    """Writes archive records on its own thread; :meth:`submit` never blocks the line."""

    def __init__(self, archive: Archive, maxsize: int | None = None) -> None:
        self.archive = archive
        self.dropped = 0
        self._queue: queue.Queue[tuple[dict[str, Any], np.ndarray | None, MapPng] | None] = queue.Queue(
            maxsize or archive.config.queue_size)
        self._stop, self._abort = threading.Event(), threading.Event()
        self._warn = _RateLimited()
        self._thread = threading.Thread(target=self._run, name="archive-writer", daemon=True)

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()

    def stats(self) -> dict[str, int]:
        """The archive's counters plus records dropped because the queue was full."""
        return self.archive.stats() | {"dropped": self.dropped, "queued": self._queue.qsize()}

    def submit(self, message: dict[str, Any], image: np.ndarray | None, map_png: MapPng = None) -> bool:
        """Queue the verdict if the archive wants it; False when not wanted or dropped (queue full, closed).

        The message is copied (the daemon goes on stamping it); ``image`` must not be changed afterwards.
        """
        if not self.archive.wants(message):
            return False
        if self._stop.is_set():
            self.dropped += 1
            return False
        try:
            self._queue.put_nowait((copy.deepcopy(message), image, map_png))
        except queue.Full:
            self.dropped += 1
            self._warn(logging.WARNING, "archive: writer queue full, record dropped (dropped so far: %s)",
                       self.dropped)
            return False
        return True

    def close(self, deadline_s: float = 5.0) -> int:
        """Write what is queued within ``deadline_s``, then stop; returns how many records were dropped."""
        self._stop.set()
        with contextlib.suppress(queue.Full):  # full: it is busy and sees the stop event after the queue
            self._queue.put_nowait(None)  # wake the thread now rather than at its next 1 s timeout
        if self._thread.is_alive():
            self._thread.join(deadline_s)
        self._abort.set()
        left = 0
        while True:
            try:
                left += self._queue.get_nowait() is not None
            except queue.Empty:
                break
        if left:
            self.dropped += left
            log.warning("archive: %s records not written before the %.1f s deadline", left, deadline_s)
        return left

    def _run(self) -> None:
        while not self._abort.is_set() and not (self._stop.is_set() and self._queue.empty()):
            try:
                item = self._queue.get(timeout=1.0)
            except queue.Empty:
                continue
            if item is None:
                continue
            try:
                self.archive.write(*item)
            except Exception:  # a dead writer thread would silently end archiving for good
                self.archive.failures += 1
                log.exception("archive: unexpected error writing a record")
