"""Camera sources and the registry that maps a config ``type`` to its classes.

Each source lives in one module holding its pydantic config class and its runtime class. The
registry below is filled explicitly (no import side effects, no plugin discovery) so that reading
this file tells you every source the daemon can run, and the config schema is built from it.
"""

from __future__ import annotations

from pydantic import BaseModel

from edge.cameras.base import Camera, CameraDisconnected, CameraError, CameraNotFound, Frame, GrabTimeout
from edge.cameras.gentl import GenTLCamera, GenTLCameraConfig
from edge.cameras.sim import SimCamera, SimCameraConfig

CAMERAS: dict[str, tuple[type[BaseModel], type]] = {
    "sim": (SimCameraConfig, SimCamera),
    "gentl": (GenTLCameraConfig, GenTLCamera),
}


def check_camera(config: BaseModel) -> None:
    """Refuse, without opening it, what would stop this camera at start-up: CameraError or MissingExtra, one line."""
    kind = getattr(config, "type", None)
    if kind not in CAMERAS:
        raise CameraError(f"unknown camera type {kind!r} (known: {', '.join(sorted(CAMERAS))})")
    CAMERAS[kind][1].check(config)  # type: ignore[attr-defined]


def create_camera(config: BaseModel) -> Camera:
    """Build the runtime camera for a validated camera config (picked by its ``type``)."""
    kind = getattr(config, "type", None)
    if kind not in CAMERAS:
        raise CameraError(f"unknown camera type {kind!r} (known: {', '.join(sorted(CAMERAS))})")
    camera_cls = CAMERAS[kind][1]
    camera: Camera = camera_cls(config)
    return camera


__all__ = ["CAMERAS", "Camera", "CameraDisconnected", "CameraError", "CameraNotFound", "Frame", "GrabTimeout",
           "check_camera", "create_camera"]
