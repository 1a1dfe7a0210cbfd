"""The daemon's configuration: a typed schema loaded from YAML, with errors that name the line.

A line-side box is configured once and then runs unattended for months, so a typo must stop it
at start-up with a message an electrician can act on (``config.yaml:7: camera.fps: Input should
be greater than or equal to 0``), not be ignored. Every model forbids unknown keys and documents
each field; the ``camera`` section is a union built from the camera registry, picked by ``type``.
Command-line options are applied as overrides on the raw data before validation, so they are
checked by the same rules and an error names the option that supplied the bad value.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from edge.cameras import CAMERAS
from edge.configfields import check_bind_endpoint, resolve_path
from edge.control.curve import CurveServerConfig
from edge.control.server import ControlConfig
from edge.daemon.pipeline import PipelineConfig
from edge.model.engines import RuntimeOptions
from edge.ops.archive import ArchiveConfig
from edge.ops.metrics import MetricsConfig
from edge.outputs import OutputsConfig

CAMERA_CONFIGS = tuple(config_cls for config_cls, _ in CAMERAS.values())
CameraConfig = Annotated[
    Union[CAMERA_CONFIGS],  # type: ignore[valid-type]  # noqa: UP007 - built from the registry at import time
    Field(discriminator="type", description="Camera source; 'type' picks one of: " + ", ".join(CAMERAS)),
]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key path and, if known, the line."""


class PublishConfig(BaseModel):
    """``publish:`` where verdicts go (a ZeroMQ PUB endpoint the PLC/MES bridge subscribes to)."""

    model_config = ConfigDict(extra="forbid")

    endpoint: str = Field(
        "tcp://127.0.0.1:5556",
        description="ZeroMQ endpoint to bind, e.g. tcp://0.0.0.0:5556 or ipc:///run/edge-inspect/verdicts.",
    )
    send_map: bool = Field(False, description="Append the anomaly map as an 8-bit PNG (third message frame).")
    send_image: bool = Field(False, description="Append the frame itself as a JPEG (after the map, if any), for the "
                             "live view (edge-inspect view). Costs the publishing thread one resize and JPEG encode "
                             "per frame, and every subscriber the bytes.")
    image_max_side: int = Field(640, ge=16, le=16384, description="With send_image: the JPEG's longest side in "
                                "pixels; a larger frame is shrunk (area averaging), a smaller one is sent as it is.")
    image_quality: int = Field(80, ge=1, le=100, description="With send_image: JPEG quality, 1-100.")
    wait_subscriber_s: float = Field(
        0.0, ge=0, description="Before the first frame, wait up to this many seconds for a subscriber; 0 = don't wait."
    )
    sndhwm: int = Field(
        1000, ge=1, description="Messages queued per subscriber before ZeroMQ drops for that subscriber."
    )
    linger_ms: int = Field(1000, ge=0, description="On shutdown, how long unsent verdicts may still be flushed.")
    heartbeat_s: float = Field(
        1.0, ge=0, description="When nothing was published for this long, publish a heartbeat on topic "
        "'heartbeat.<station>' so subscribers can tell an idle line from a dead daemon; 0 = never.",
    )
    curve: CurveServerConfig | None = Field(
        None, description="Encrypt verdicts with CurveZMQ and send them only to subscribers whose public key is in "
        "curve.allowed_clients; none = plain, anyone who can reach the port may subscribe."
    )

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, value: str) -> str:
        """Accept only transports a PUB socket can usefully bind for another process."""
        return check_bind_endpoint(value)


class RuntimeConfig(BaseModel):
    """``runtime:`` how inference runs on this machine."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["auto", "onnxruntime", "openvino"] = Field(
        "auto", description="Inference engine; auto = the bundle's format decides (onnx: onnxruntime, openvino IR: "
        "openvino). openvino also runs ONNX bundles.",
    )
    threads: int | None = Field(None, ge=1, description="Inference threads (onnxruntime intra-op, OpenVINO "
                                "INFERENCE_NUM_THREADS); none = the engine's default.")
    hint: Literal["latency", "throughput"] = Field(
        "latency", description="OpenVINO performance hint: latency (one frame at a time, the line's case) or throughput."
    )
    cache_dir: Path | None = Field(
        None, description="OpenVINO compiled-model cache (absolute path). Default: $STATE_DIRECTORY when systemd sets "
        "it, else .cache/ inside the bundle when writable, else no cache; never the working directory.",
    )
    spin: bool = Field(
        False, description="onnxruntime: worker threads busy-wait between operators instead of sleeping "
        "(onnxruntime's own default; off here because a spinning worker takes the core the daemon's camera and "
        "output threads need next on a small PC, docs/plc.md). OpenVINO ignores it.",
    )
    max_consecutive_failures: int = Field(
        10, ge=1, description="Inference failures in a row (not decode errors) before the daemon exits non-zero."
    )


    @field_validator("cache_dir")
    @classmethod
    def _absolute_cache_dir(cls, value: Path | None) -> Path | None:
        """A relative cache path would land in the working directory, which under systemd can be /."""
        if value is not None and not value.expanduser().is_absolute():
            raise ValueError("must be an absolute path (a relative one would depend on the working directory)")
        return value.expanduser() if value is not None else None

    def options(self) -> RuntimeOptions:
        """These settings as the runtime's :class:`~edge.model.engines.RuntimeOptions`."""
        return RuntimeOptions(threads=self.threads, hint=self.hint, cache_dir=self.cache_dir, spin=self.spin)


class WatchdogConfig(BaseModel):
    """``watchdog:`` what to do when the camera stops delivering: reconnect with a growing delay, then give up."""

    model_config = ConfigDict(extra="forbid")

    no_frame_s: float = Field(
        0.0, ge=0, description="Reconnect when no frame arrived for this long; 0 = never (an externally "
        "triggered line may idle). A lost device is reconnected regardless.",
    )
    reconnect_delay_s: float = Field(1.0, gt=0, description="Wait before the first reconnect attempt.")
    reconnect_max_delay_s: float = Field(30.0, gt=0, description="The delay doubles per failed attempt up to this.")
    error_frames_alarm: int = Field(
        5, ge=0, description="After this many error verdicts in a row (unreadable frames, a deleted source folder, "
        "failing inference) publish a status message and log one WARNING; again when a frame is inspected; 0 = never.",
    )
    reconnect_budget: int = Field(
        5, ge=1, description="Failed reconnect attempts in a row (no frame in between) before the daemon exits 1 "
        "and leaves the restart to systemd.",
    )

    @model_validator(mode="after")
    def _delays_ordered(self) -> WatchdogConfig:
        if self.reconnect_max_delay_s < self.reconnect_delay_s:
            raise ValueError("reconnect_max_delay_s must be >= reconnect_delay_s")
        return self


class EdgeConfig(BaseModel):
    """The whole daemon configuration file."""

    model_config = ConfigDict(extra="forbid")

    station: str = Field(
        "station1",
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Station name; verdicts are published on topic 'verdict.<station>'.",
    )
    bundle: Path = Field(description="Bundle folder (bundle.yaml + model). Relative to the config file's folder.")
    camera: CameraConfig
    publish: PublishConfig = Field(default_factory=PublishConfig, description="Where verdicts are published.")
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig, description="Inference runtime settings.")
    watchdog: WatchdogConfig = Field(default_factory=WatchdogConfig, description="Camera loss and reconnects.")
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig, description="Queues and the overload policy.")
    archive: ArchiveConfig = Field(default_factory=ArchiveConfig, description="NG archive on disk (off by default).")
    outputs: OutputsConfig = Field(  # type: ignore[valid-type]  # built from the outputs registry
        default_factory=OutputsConfig, description="Outputs beside the ZeroMQ socket (PLC, broker), each off by default."
    )
    metrics: MetricsConfig = Field(default_factory=MetricsConfig, description="Prometheus endpoint (off by default).")
    control: ControlConfig = Field(
        default_factory=ControlConfig, description="Authenticated control socket (off by default; CurveZMQ required)."
    )
    state_dir: Path | None = Field(
        None, description="Where the verdict sequence counter persists across restarts. Default: $STATE_DIRECTORY "
        "(set by systemd's StateDirectory=), else none (seq restarts at 1 on every start). Relative to the config file.",
    )
    log_level: LogLevel = Field("INFO", description="DEBUG, INFO, WARNING or ERROR.")

    @field_validator("bundle", "state_dir")
    @classmethod
    def _resolve_bundle(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        """Make a relative path relative to the config file, not the working directory."""
        return resolve_path(value, info)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


def load_config(
    path: str | Path | None,
    overrides: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
) -> EdgeConfig:
    """Read ``path`` (YAML; may be None), apply dotted-key ``overrides``, validate.

    ``labels`` maps an override key (``camera.fps``) to what the user typed (``--fps``) so that an
    error in an overridden value names the option instead of a config line.
    """
    name = str(path) if path is not None else "command line"
    data: dict[str, Any] = {}
    root: Node | None = None
    base_dir: Path | None = None
    if path is not None:
        data, root = _read_yaml(Path(path))
        base_dir = Path(path).resolve().parent
    overrides = dict(overrides or {})
    for key, value in overrides.items():
        _set_dotted(data, key, value)
    try:
        return EdgeConfig.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        messages = [_describe(err, data, root, name, overrides, labels or {}) for err in exc.errors()]
        raise ConfigError("\n".join(messages)) from None


def _read_yaml(path: Path) -> tuple[dict[str, Any], Node | None]:
    """Parse once into nodes (for line numbers) and once into data; refuse duplicate keys."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]  # a reader error: no mark, 2 lines
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    if data is None:
        return {}, root
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the config must be a mapping of keys, not {type(data).__name__}")
    _check_duplicates(root, path, ())
    return data, root


def _check_duplicates(node: Node | None, path: Path, loc: tuple[str, ...]) -> None:
    if isinstance(node, MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if isinstance(key, ScalarNode):
                dotted = ".".join((*loc, key.value))
                if key.value in seen:
                    raise ConfigError(f"{path}:{key.start_mark.line + 1}: {dotted}: duplicate key")
                seen.add(key.value)
                _check_duplicates(value, path, (*loc, key.value))
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            _check_duplicates(item, path, (*loc, str(index)))


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    target = data
    for part in parts[:-1]:
        if not isinstance(target.get(part), dict):
            target[part] = {}
        target = target[part]
    target[parts[-1]] = value


def _clean_loc(loc: tuple[int | str, ...], data: Any) -> tuple[int | str, ...]:
    """Drop the union tag pydantic inserts (``camera.sim.fps`` -> ``camera.fps``)."""
    cleaned: list[int | str] = []
    current = data
    for part in loc:
        if isinstance(current, dict) and part not in current and current.get("type") == part:
            continue
        cleaned.append(part)
        if isinstance(current, dict):
            current = current.get(part)
        elif isinstance(current, list) and isinstance(part, int) and part < len(current):
            current = current[part]
        else:
            current = None
    return tuple(cleaned)


def _line_of(root: Node | None, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the key at ``loc`` (or of its deepest existing parent below the top level)."""
    node = root
    line: int | None = None
    for part in loc:
        if isinstance(node, MappingNode):
            match = next(((k, v) for k, v in node.value if isinstance(k, ScalarNode) and k.value == str(part)), None)
            if match is None:
                return line
            line = match[0].start_mark.line + 1
            node = match[1]
        elif isinstance(node, SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _describe(
    err: Mapping[str, Any],
    data: dict[str, Any],
    root: Node | None,
    name: str,
    overrides: Mapping[str, Any],
    labels: Mapping[str, str],
) -> str:
    loc = _clean_loc(tuple(err["loc"]), data)
    message = str(err["msg"])
    if err["type"] == "value_error" and "error" in err.get("ctx", {}):
        message = str(err["ctx"]["error"])  # our validator's own words, without pydantic's "Value error, "
    if err["type"] == "union_tag_not_found":
        loc, message = (*loc, "type"), f"Field required (one of: {', '.join(CAMERAS)})"
    elif err["type"] == "union_tag_invalid":
        loc = (*loc, "type")
        message = f"unknown type {err['ctx']['tag']!r} (known: {', '.join(CAMERAS)})"
    dotted = ".".join(str(part) for part in loc) or "(top level)"
    for length in range(len(loc), 0, -1):
        key = ".".join(str(part) for part in loc[:length])
        if key in overrides:
            return f"{labels.get(key, 'command line')}: {dotted}: {message}"
    line = _line_of(root, loc)
    where = f"{name}:{line}" if line is not None else name
    return f"{where}: {dotted}: {message}"

