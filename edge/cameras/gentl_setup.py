"""Finding the GenTL producer and the device, and writing the configured features, with errors a technician can act on.

These are the steps where a line camera set-up usually goes wrong: the ``.cti`` is not where the
config says, two cameras of the same model are on the network, a feature is misspelt or out of
range, or read-only while acquiring. Each step is a plain function over what Harvesters and
``genicam.genapi`` hand us (file paths, device-info dicts, a node map), so each can be tested with
a real GenApi node map and no hardware, and each failure is a :class:`CameraError` that names the
setting, the value and what the device offers instead of a bare GenICam exception.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from edge.cameras.base import CameraError, CameraNotFound

log = logging.getLogger(__name__)

GENTL_PATH_VAR = "GENICAM_GENTL64_PATH"
# Device-info keys (as Harvesters' DeviceInfo.property_dict names them) that select a device.
SELECT_KEYS = ("serial_number", "model", "user_defined_name")
FeatureValue = bool | int | float | str
_GENICAM_TAIL = re.compile(r"\s*:\s*\w+Exception thrown.*$", re.DOTALL)


def find_producers(paths: Sequence[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """The ``.cti`` files to load: ``paths`` (files or folders), else every ``.cti`` on ``GENICAM_GENTL64_PATH``."""
    environ = os.environ if environ is None else environ
    found: list[str] = []
    if paths:
        for entry in paths:
            path = Path(entry)
            if path.is_file():
                found.append(str(path))
            elif path.is_dir():
                files = sorted(str(p) for p in path.glob("*.cti"))
                if not files:
                    raise CameraError(f"gentl camera: no .cti file in producer folder {path}")
                found.extend(files)
            else:
                raise CameraError(f"gentl camera: producer {path} does not exist")
        return found
    folders = [d for d in environ.get(GENTL_PATH_VAR, "").split(os.pathsep) if d]
    for folder in folders:
        if Path(folder).is_dir():
            found.extend(sorted(str(p) for p in Path(folder).glob("*.cti")))
    if not found:
        looked = ", ".join(folders) if folders else f"{GENTL_PATH_VAR} is not set"
        raise CameraError(
            f"gentl camera: no GenTL producer (.cti) found; set camera.producers or {GENTL_PATH_VAR} "
            f"(looked in: {looked})"
        )
    return found


def describe_devices(infos: Sequence[Mapping[str, Any]]) -> str:
    """One line per device, as the selection error lists them."""
    if not infos:
        return "none"
    return "; ".join(
        f"[{i}] model={info.get('model')!r} serial_number={info.get('serial_number')!r} "
        f"user_defined_name={info.get('user_defined_name')!r} vendor={info.get('vendor')!r} id={info.get('id_')!r}"
        for i, info in enumerate(infos)
    )


def select_device(infos: Sequence[Mapping[str, Any]], wanted: Mapping[str, str | None], index: int | None) -> int:
    """Position in ``infos`` of the one device matching every given key; ``index`` picks among several matches."""
    criteria = {key: value for key, value in wanted.items() if value is not None}
    matches = [i for i, info in enumerate(infos) if all(str(info.get(k)) == v for k, v in criteria.items())]
    what = ", ".join(f"{k}={v!r}" for k, v in criteria.items()) or "any device"
    found = f"devices found: {describe_devices(infos)}"
    if not matches:
        raise CameraNotFound(f"gentl camera: no device matches {what} ({found})")
    if index is not None:
        if index >= len(matches):
            raise CameraNotFound(f"gentl camera: index {index} but only {len(matches)} device(s) match {what} "
                                 f"({found})")
        return matches[index]
    if len(matches) > 1:
        raise CameraError(
            f"gentl camera: {len(matches)} devices match {what}; set camera.serial_number, "
            f"camera.user_defined_name or camera.index ({found})"
        )
    return matches[0]


def genicam_message(exc: Exception) -> str:
    """A GenICam exception's text without its C++ file/line tail."""
    return _GENICAM_TAIL.sub("", str(exc)).strip() or type(exc).__name__


def _node(node_map: Any, name: str) -> Any:
    from genicam.genapi import LogicalErrorException

    try:
        has = node_map.has_node(name)
    except LogicalErrorException:
        has = False
    if not has:
        return None
    return node_map.get_node(name)


def _interface(node: Any) -> str:
    return type(node).__name__  # IInteger, IFloat, IBoolean, IString, IEnumeration, ICommand, ...


def _coerce(name: str, node: Any, value: FeatureValue) -> FeatureValue:
    """Check ``value`` against the node type before writing, so the error says what was expected."""
    kind = _interface(node)
    if kind == "IInteger":
        if isinstance(value, bool) or not isinstance(value, int):
            raise CameraError(f"gentl camera: feature {name}: expected an integer, got {value!r}")
    elif kind == "IFloat":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CameraError(f"gentl camera: feature {name}: expected a number, got {value!r}")
        value = float(value)
    elif kind == "IBoolean":
        if not isinstance(value, bool):
            raise CameraError(f"gentl camera: feature {name}: expected true or false, got {value!r}")
    elif kind == "IEnumeration":
        options = tuple(node.symbolics)
        if str(value) not in options:
            raise CameraError(f"gentl camera: feature {name}: {value!r} is not one of {', '.join(options)}")
        value = str(value)
    elif kind == "IString":
        value = str(value)
    elif kind == "ICommand":
        if value is not True:
            raise CameraError(f"gentl camera: feature {name} is a command; write 'true' to execute it")
    else:
        raise CameraError(f"gentl camera: feature {name} is a {kind} node, which cannot be set from the config")
    return value


def set_feature(node_map: Any, name: str, value: FeatureValue) -> FeatureValue | None:
    """Write one feature (or execute a command) and return the value read back."""
    from genicam.genapi import GenericException

    node = _node(node_map, name)
    if node is None:
        raise CameraError(f"gentl camera: the device has no feature {name!r}")
    value = _coerce(name, node, value)
    try:
        if _interface(node) == "ICommand":
            node.execute()
            return None
        node.value = value
        return node.value  # type: ignore[no-any-return]
    except GenericException as exc:
        raise CameraError(f"gentl camera: feature {name}={value!r}: {genicam_message(exc)}") from None


def apply_features(node_map: Any, features: Mapping[str, FeatureValue]) -> dict[str, FeatureValue | None]:
    """Write ``features`` in the configured order (PixelFormat before Width, ...); the values read back."""
    applied: dict[str, FeatureValue | None] = {}
    for name, value in features.items():
        applied[name] = set_feature(node_map, name, value)
        log.info("gentl camera: %s = %r", name, applied[name] if applied[name] is not None else "executed")
    return applied


def set_if_present(node_map: Any, items: Iterable[tuple[str, FeatureValue]]) -> None:
    """Write features a device may lack (TriggerSelector): absent ones are skipped, bad values still fail."""
    for name, value in items:
        if _node(node_map, name) is not None:
            set_feature(node_map, name, value)


# Our buffer_handling names -> SFNC StreamBufferHandlingMode entries on the data stream node map.
STREAM_BUFFER_MODES = {"newest": "NewestOnly", "oldest": "OldestFirst"}


def set_buffer_handling(stream_node_map: Any, handling: str) -> bool:
    """Ask the data stream for ``handling`` via ``StreamBufferHandlingMode``; False if the producer cannot do it.

    GenTL producers implement the mode themselves (NewestOnly keeps just the latest filled buffer
    for the consumer), which is the cheap and exact way; one that lacks the node or the entry
    leaves the caller to emulate it.
    """
    wanted = STREAM_BUFFER_MODES[handling]
    node = None if stream_node_map is None else _node(stream_node_map, "StreamBufferHandlingMode")
    offered = tuple(node.symbolics) if node is not None else ()
    if wanted not in offered:
        log.info("gentl camera: data stream offers StreamBufferHandlingMode %s, not %s",
                 ", ".join(offered) or "(none)", wanted)
        return False
    set_feature(stream_node_map, "StreamBufferHandlingMode", wanted)
    log.info("gentl camera: StreamBufferHandlingMode = %s", wanted)
    return True
