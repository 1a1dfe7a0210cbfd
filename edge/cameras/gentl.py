"""A GenICam camera through a GenTL producer (``.cti``), driven with Harvesters.

This is the source for a real line: any GigE Vision / USB3 Vision / CoaXPress camera whose vendor
ships a GenTL producer. It mirrors Harvesters' own API (``with ia.fetch(timeout=...)`` and the
image copied out inside the block, because the component's data is a view into a buffer that
goes back to the producer on exit) and turns GenTL's conditions into the daemon's vocabulary:
a fetch timeout is :class:`GrabTimeout`, any other GenTL error mid-stream is
:class:`CameraDisconnected` (the daemon then reconnects), incomplete buffers and frame-id gaps are
counted. When the pipeline is behind, ``buffer_handling: newest`` (the default) makes the next grab
return the latest image (the producer's ``StreamBufferHandlingMode = NewestOnly``, or draining the
queue where a producer lacks it); skipped images show as frame-id gaps. In ``software`` trigger mode every trigger yields exactly one frame: if no complete image
arrives in time the frame carries ``error`` and becomes a fail-safe NG, because a part was there.
Harvesters is imported only when a GenTL camera opens, so the runtime needs it only on such boxes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from edge.cameras.base import (
    DEFAULT_MAX_PIXELS,
    CameraDisconnected,
    CameraError,
    CameraNotFound,
    Frame,
    GrabTimeout,
    new_stats,
)
from edge.cameras.gentl_setup import (
    FeatureValue,
    apply_features,
    find_producers,
    genicam_message,
    select_device,
    set_buffer_handling,
    set_feature,
    set_if_present,
)
from edge.cameras.pacing import Pacer
from edge.cameras.pixels import PixelFormatError, decode
from edge.configfields import resolve_path
from edge.extras import require
from edge.model.imageio import too_large

log = logging.getLogger(__name__)

TriggerMode = Literal["free_run", "software", "external"]
BufferHandling = Literal["newest", "oldest"]
# How long one look for a further waiting buffer may take when draining to the newest.
DRAIN_TIMEOUT_S = 0.001


class GenTLCameraConfig(BaseModel):
    """``camera:`` section for ``type: gentl``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["gentl"] = Field(description="Camera source kind; 'gentl' drives a GenICam camera via Harvesters.")
    producers: list[str] = Field(
        default_factory=list,
        description="GenTL producer .cti files or folders holding them; empty = every .cti on GENICAM_GENTL64_PATH. "
        "A relative path in a config file is taken from that file's folder.",
    )
    serial_number: str | None = Field(None, description="Select the device with this serial number.")
    model: str | None = Field(None, description="Select the device of this model.")
    user_defined_name: str | None = Field(None, description="Select the device with this user-defined name.")
    index: int | None = Field(
        None, ge=0, description="Among the devices matching the keys above (all if none), take this one (from 0)."
    )
    features: dict[str, FeatureValue] = Field(
        default_factory=dict,
        description="GenICam features written in this order before acquisition, e.g. {PixelFormat: Mono8, "
        "ExposureTime: 2000}. A command node (e.g. UserSetLoad) is executed when set to true.",
    )
    trigger: TriggerMode = Field(
        "free_run",
        description="free_run: TriggerMode Off, take frames as they come; software: one TriggerSoftware per "
        "frame, paced by fps; external: leave trigger nodes to 'features' (a line trigger, no frame is normal).",
    )
    fps: float = Field(0.0, ge=0, description="software trigger only: triggers per second; 0 = next trigger "
                       "as soon as the previous frame is inspected.")
    trigger_timeout_s: float = Field(
        2.0, gt=0, description="software trigger only: how long after a trigger the image must have arrived; "
        "otherwise the frame is an NG verdict with error set.",
    )
    max_frames: int | None = Field(None, gt=0, description="Stop after this many frames; none = no limit.")
    num_buffers: int | None = Field(
        None, ge=1, description="Buffers announced to the producer (at least its minimum); none = Harvesters' "
        "default (3, or the producer's minimum if higher).",
    )
    max_pixels: int = Field(
        DEFAULT_MAX_PIXELS, ge=1, description="A buffer with more pixels than this (width x height as the producer "
        "reports them) is an error verdict and is not decoded.",
    )
    buffer_handling: BufferHandling = Field(
        "newest",
        description="Which image a grab gets when inspection is slower than the camera. newest: the latest one; "
        "older ones are dropped (counted in 'dropped'). oldest: every image in order while num_buffers last, "
        "then the producer drops new ones (for trigger: external lines where each frame is a part).",
    )

    @field_validator("producers")
    @classmethod
    def _resolve_relative(cls, value: list[str], info: ValidationInfo) -> list[str]:
        """Make relative producer paths relative to the config file, not to the working directory."""
        return [str(resolve_path(entry, info)) for entry in value]

    @model_validator(mode="after")
    def _trigger_options(self) -> GenTLCameraConfig:
        if self.trigger != "software" and self.fps > 0:
            raise ValueError("fps applies to trigger: software only (set AcquisitionFrameRate in features instead)")
        return self


CAMERA_EXTRA_MODULES = ("harvesters.core", "genicam.gentl", "genicam.genapi")


def _require_harvesters() -> None:
    """One line naming the ``camera`` extra when Harvesters or genicam is not installed."""
    for module in CAMERA_EXTRA_MODULES:
        require(module, "camera", "camera type gentl")


def _harvester() -> Any:
    from harvesters.core import Harvester

    return Harvester()


class GenTLCamera:
    """The runtime camera for :class:`GenTLCameraConfig`; ``harvester_factory`` is replaceable for tests."""

    def __init__(self, config: GenTLCameraConfig, harvester_factory: Callable[[], Any] | None = None) -> None:
        self.config = config
        self._factory = harvester_factory or _harvester
        self._harvester: Any = None
        self._acquirer: Any = None
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._pacer = Pacer(config.fps, self._closed, "gentl camera")
        self._name = "gentl"
        self._count = 0
        self._last_frame_id: int | None = None
        self._drain = False
        self._stats = new_stats()

    def stats(self) -> dict[str, int]:
        """Counters since construction: incomplete buffers, frame-id gaps (dropped), timeouts, triggers, ..."""
        return {**self._stats, "late_triggers": self._pacer.late}

    @classmethod
    def check(cls, config: GenTLCameraConfig) -> None:
        """What start-up would refuse, without opening a device: the camera extra missing, no producer file.

        A device that is not there yet is not refused: at start the daemon retries it with the
        reconnect backoff, as a camera late at boot (a PoE camera still starting) needs.
        """
        _require_harvesters()
        find_producers(config.producers)

    def open(self) -> None:
        """Load the producers, pick the device, write features, start acquisition; CameraError naming the step."""
        _require_harvesters()
        from genicam.gentl import GenericException as GenTLError

        config = self.config
        producers = find_producers(config.producers)
        harvester = self._factory()
        self._harvester = harvester
        try:
            for path in producers:
                harvester.add_file(path)
            harvester.update()
            infos = [dict(info.property_dict) for info in harvester.device_info_list]
            position = select_device(
                infos, {key: getattr(config, key) for key in ("serial_number", "model", "user_defined_name")},
                config.index,
            )
            info = infos[position]
            self._acquirer = harvester.create(position)
        except GenTLError as exc:
            self._release()
            raise CameraNotFound(f"gentl camera: cannot open device: {genicam_message(exc)}") from None
        except CameraError:
            self._release()
            raise
        self._name = f"gentl:{info.get('serial_number') or info.get('id_')}"
        try:
            self._configure()
            self._acquirer.start()
        except GenTLError as exc:
            self._release()
            raise CameraError(f"{self._name}: cannot start acquisition: {genicam_message(exc)}") from None
        except CameraError:
            self._release()
            raise
        self._closed.clear()
        self._pacer.reset()
        self._last_frame_id = None
        self._stats["opens"] += 1
        log.info("%s: %s %s opened via %s (trigger=%s)", self._name, info.get("vendor"), info.get("model"),
                 ", ".join(producers), config.trigger)

    def _configure(self) -> None:
        """Features first (a user set may reset trigger nodes), then the trigger mode this source relies on."""
        from harvesters.core import Callback, ImageAcquirer

        acquirer, config = self._acquirer, self.config
        node_map = acquirer.remote_device.node_map
        apply_features(node_map, config.features)
        if config.trigger == "software":
            set_if_present(node_map, [("TriggerSelector", "FrameStart")])
            set_feature(node_map, "TriggerMode", "On")
            set_feature(node_map, "TriggerSource", "Software")
        elif config.trigger == "free_run":
            set_if_present(node_map, [("TriggerMode", "Off")])
        if config.num_buffers is not None:
            minimum = int(acquirer.min_num_buffers)
            if config.num_buffers < minimum:
                raise CameraError(f"{self._name}: num_buffers={config.num_buffers} but the producer needs at "
                                  f"least {minimum}")
            acquirer.num_buffers = config.num_buffers
        streams = acquirer.data_streams
        by_producer = set_buffer_handling(streams[0].node_map if streams else None, config.buffer_handling)
        self._drain = config.buffer_handling == "newest" and not by_producer
        if self._drain:
            log.info("%s: no NewestOnly mode on the data stream; each grab drains the queue to the newest image",
                     self._name)
        stats = self._stats

        class _CountIncomplete(Callback):  # type: ignore[misc]
            def emit(self, context: object | None = None) -> None:
                stats["incomplete"] += 1

        acquirer.add_callback(ImageAcquirer.Events.INCOMPLETE_BUFFER, _CountIncomplete())

    def grab(self, timeout: float) -> Frame | None:
        """Next frame; None if closed or past max_frames; GrabTimeout; CameraDisconnected if the device is gone."""
        if self._closed.is_set() or self._acquirer is None:
            return None
        if self.config.max_frames is not None and self._count >= self.config.max_frames:
            return None
        with self._lock:
            if self._acquirer is None:
                return None
            if self.config.trigger == "software":
                return self._grab_triggered(timeout)
            frame = self._fetch(timeout)
            if frame is None:
                self._stats["timeouts"] += 1
                raise GrabTimeout(f"{self._name}: no frame within {timeout:.3f} s")
            return frame

    def _grab_triggered(self, timeout: float) -> Frame | None:
        if not self._pacer.wait(timeout):
            return None
        from genicam.genapi import GenericException as GenApiError

        node_map = self._acquirer.remote_device.node_map
        t_trigger = time.time()
        try:
            node_map.get_node("TriggerSoftware").execute()
        except GenApiError as exc:
            raise CameraDisconnected(f"{self._name}: TriggerSoftware failed: {genicam_message(exc)}") from None
        self._stats["triggers"] += 1
        incomplete_before = self._stats["incomplete"]
        frame = self._fetch(self.config.trigger_timeout_s)
        if frame is not None:
            return frame
        self._stats["trigger_misses"] += 1
        self._count += 1
        extra = self._stats["incomplete"] - incomplete_before
        why = f"{extra} incomplete buffer(s)" if extra else "no buffer"
        return Frame(image=None, frame_id=self._count, source=f"{self._name}#trigger{self._stats['triggers']}",
                     t_capture=t_trigger,
                     error=f"no complete image within {self.config.trigger_timeout_s:.3f} s of the trigger ({why})")

    def _fetch(self, timeout: float) -> Frame | None:
        """One ``with ia.fetch(timeout=...)`` with the image copied out inside; None on timeout."""
        from genicam.gentl import GenericException as GenTLError
        from genicam.gentl import TimeoutException

        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                buffer = self._acquirer.fetch(timeout=remaining)
            except TimeoutException:
                return None
            except GenTLError as exc:
                raise CameraDisconnected(f"{self._name}: fetch failed: {genicam_message(exc)}") from None
            if buffer is None:  # Harvesters discarded a buffer whose information was unavailable
                self._stats["incomplete"] += 1
                continue
            t_capture = time.time()
            if self._drain:
                buffer, t_capture = self._newest(buffer, t_capture)
            with buffer:
                return self._copy_out(buffer, t_capture)

    def _newest(self, buffer: Any, t_capture: float) -> tuple[Any, float]:
        """For a producer without NewestOnly: take the buffers already waiting, handing each older one back."""
        from genicam.gentl import GenericException as GenTLError

        while True:
            try:
                newer = self._acquirer.try_fetch(timeout=DRAIN_TIMEOUT_S)
            except GenTLError as exc:
                with contextlib.suppress(GenTLError):
                    buffer.queue()
                raise CameraDisconnected(f"{self._name}: fetch failed: {genicam_message(exc)}") from None
            if newer is None:
                return buffer, t_capture
            buffer.queue()
            buffer, t_capture = newer, time.time()

    def _copy_out(self, buffer: Any, t_capture: float) -> Frame:
        """Decode (a copy) while the buffer is still ours; count producer frame ids we never saw."""
        from genicam.gentl import GenericException as GenTLError

        start = time.perf_counter()
        try:
            producer_id: int | None = int(buffer.module.frame_id)
        except GenTLError:
            producer_id = None
        if producer_id is not None and self._last_frame_id is not None and producer_id > self._last_frame_id + 1:
            self._stats["dropped"] += producer_id - self._last_frame_id - 1
        self._last_frame_id = producer_id if producer_id is not None else self._last_frame_id
        self._count += 1
        self._stats["frames"] += 1
        component = buffer.payload.components[0]
        fmt = str(component.data_format)
        width, height = int(component.width), int(component.height)
        image, error = None, too_large(width, height, self.config.max_pixels)
        if error is not None:
            self._stats["decode_errors"] += 1
        else:
            try:
                image = decode(component.data, width, height, fmt)
            except PixelFormatError as exc:
                image, error = None, f"pixel format: {exc}"
                self._stats["decode_errors"] += 1
        source = f"{self._name}#{producer_id if producer_id is not None else self._count}"
        device_ts = _device_timestamp_ns(buffer)
        return Frame(image=image, frame_id=self._count, source=source, t_capture=t_capture, error=error,
                     decode_ms=(time.perf_counter() - start) * 1000.0, device_frame_id=producer_id,
                     timestamp_ns=device_ts, timestamp_clock="device" if device_ts is not None else "host")

    def close(self) -> None:
        """Stop acquisition and release device and producers; safe twice, and the device may already be gone."""
        self._closed.set()
        with self._lock:
            self._release()

    def _release(self) -> None:
        from genicam.gentl import GenericException as GenTLError

        acquirer, harvester = self._acquirer, self._harvester
        self._acquirer = self._harvester = None
        for step, call in (("stop", getattr(acquirer, "stop", None)), ("destroy", getattr(acquirer, "destroy", None)),
                           ("reset", getattr(harvester, "reset", None))):
            if call is None:
                continue
            try:
                call()
            except GenTLError as exc:
                log.warning("%s: %s while closing: %s", self._name, step, genicam_message(exc))


def _device_timestamp_ns(buffer: Any) -> int | None:
    """The buffer's device timestamp in ns; None when the producer gives none (the frame then uses host time).

    GenTL has ``BUFFER_INFO_TIMESTAMP_NS`` and, older, ``BUFFER_INFO_TIMESTAMP`` in ticks of the
    device's ``timestamp_frequency``; 0 means "not available" in both.
    """
    from genicam.gentl import GenericException as GenTLError

    module = buffer.module
    try:
        value = int(module.timestamp_ns)
    except GenTLError:
        try:
            ticks = int(module.timestamp)
            frequency = int(module.parent.parent.timestamp_frequency)
        except GenTLError:
            return None
        value = ticks * 1_000_000_000 // frequency if frequency > 0 else 0
    return value or None
