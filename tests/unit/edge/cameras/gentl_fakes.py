"""A stand-in for the few Harvesters calls the GenTL camera makes, over a real GenApi node map.

Only the transport is faked: the node map is ``genicam.genapi.NodeMap`` loaded from
``tests/data/genapi/camera.xml``, and failures are the real ``genicam.gentl`` exception classes a
producer raises (TimeoutException, IoException, ...), so the camera's error handling is checked
against the types it meets on a line. A script of events drives each fetch; the data stream's
node map (buffer handling) is real too, from ``tests/data/genapi/stream.xml``.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
from genicam.genapi import NodeMap

XML = Path(__file__).resolve().parents[3] / "data" / "genapi" / "camera.xml"
STREAM_XML = XML.with_name("stream.xml")


def real_node_map(xml: Path = XML) -> NodeMap:
    node_map = NodeMap()
    node_map.load_xml_from_file(str(xml))
    return node_map


def real_stream_node_map() -> NodeMap:
    return real_node_map(STREAM_XML)


class FakeBufferModule:
    """The GenTL buffer module: frame id, and a device timestamp in ns (or NotAvailable, as viky.cti does)."""

    def __init__(self, frame_id: int, timestamp_ns: int | None) -> None:
        self.frame_id = frame_id
        self._timestamp_ns = timestamp_ns

    @property
    def timestamp_ns(self) -> int:
        from genicam.gentl import NotAvailableException

        if self._timestamp_ns is None:
            raise NotAvailableException()
        return self._timestamp_ns

    @property
    def timestamp(self) -> int:
        from genicam.gentl import NotAvailableException

        raise NotAvailableException()


class FakeBuffer:
    """What ``ia.fetch`` returns: a context manager whose data is invalidated once it is queued back."""

    def __init__(self, data: np.ndarray, width: int, height: int, fmt: str, frame_id: int,
                 timestamp_ns: int | None = None) -> None:
        self.module = FakeBufferModule(frame_id, timestamp_ns)
        component = type("Component", (), {})()
        component.data, component.width, component.height, component.data_format = data, width, height, fmt
        self.payload = type("Payload", (), {"components": [component]})()
        self.queued = False

    def __enter__(self) -> FakeBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.queue()

    def queue(self) -> None:
        self.payload.components[0].data[:] = 0  # the producer refills the buffer
        self.queued = True


class FakeAcquirer:
    """``ImageAcquirer``; ``script`` items, one per fetch: an int (frame id), an exception instance,
    'incomplete', or a list of frame ids that arrived together (fetch gets the first, the rest wait in
    the output queue for ``try_fetch``, as with a producer in OldestFirst mode behind a slow consumer).
    ``stream_node_map`` None is a producer whose data stream has no node map.
    """

    def __init__(self, script: list[Any], node_map: NodeMap, stream_node_map: NodeMap | None = None,
                 timestamp_ns: int | None = None) -> None:
        self.script = deque(script)
        self.remote_device = type("RemoteDevice", (), {"node_map": node_map})()
        self.data_streams = [type("DataStream", (), {"node_map": stream_node_map})()]
        self.callbacks: dict[Any, Any] = {}
        self.started = self.destroyed = False
        self.fetched: list[FakeBuffer] = []
        self.waiting: deque[int] = deque()
        self.timestamp_ns = timestamp_ns
        self.num_buffers = 3
        self.min_num_buffers = 2
        self.try_fetches = 0
        self.fetch_timeouts: list[float] = []  # the timeout of every fetch, as the camera asked

    def add_callback(self, event: Any, callback: Any) -> None:
        self.callbacks[event] = callback

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.started = False

    def destroy(self) -> None:
        self.destroyed = True

    def fetch(self, *, timeout: float) -> FakeBuffer:
        from genicam.gentl import TimeoutException
        from harvesters.core import ImageAcquirer

        self.fetch_timeouts.append(timeout)
        while True:
            if self.waiting:
                return self._buffer(self.waiting.popleft())
            if not self.script:
                raise TimeoutException()
            item = self.script.popleft()
            if isinstance(item, Exception):
                raise item
            if item == "incomplete":  # Harvesters discards it, emits the event and waits for the next
                self.callbacks[ImageAcquirer.Events.INCOMPLETE_BUFFER].emit(context=self)
                continue
            if isinstance(item, list):
                self.waiting.extend(item[1:])
                item = item[0]
            return self._buffer(int(item))

    def try_fetch(self, *, timeout: float) -> FakeBuffer | None:
        """A buffer already waiting, else None (Harvesters' try_fetch after ``timeout``)."""
        self.try_fetches += 1
        return self._buffer(self.waiting.popleft()) if self.waiting else None

    def _buffer(self, frame_id: int) -> FakeBuffer:
        nm = self.remote_device.node_map
        width, height = nm.Width.value, nm.Height.value
        data = np.full(width * height, frame_id % 256, dtype=np.uint8)
        timestamp = None if self.timestamp_ns is None else self.timestamp_ns + frame_id * 1000
        buffer = FakeBuffer(data, width, height, nm.PixelFormat.value, frame_id, timestamp)
        self.fetched.append(buffer)
        return buffer


class FakeDeviceInfo:
    def __init__(self, **props: Any) -> None:
        self.property_dict = {"vendor": "EdgeInspect", "id_": props.get("serial_number"), **props}


class FakeHarvester:
    """``Harvester``: the devices it lists and the acquirer ``create`` returns are set by the test."""

    def __init__(self, devices: list[FakeDeviceInfo], acquirer: FakeAcquirer) -> None:
        self.device_info_list = devices
        self.acquirer = acquirer
        self.files: list[str] = []
        self.created: list[int] = []
        self.was_reset = False

    def add_file(self, path: str) -> None:
        self.files.append(path)

    def update(self) -> None:
        pass

    def create(self, index: int) -> FakeAcquirer:
        self.created.append(index)
        return self.acquirer

    def reset(self) -> None:
        self.was_reset = True
