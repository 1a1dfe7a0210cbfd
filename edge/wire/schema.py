"""The wire messages as types: verdict, heartbeat, status and event, for the writer and every reader.

The builders in :mod:`.verdict` and :mod:`.messages` produce exactly these shapes, the parsers
validate received messages through them, and ``edge-inspect schemas`` publishes them as JSON
Schema for whoever writes a PLC/MES bridge in another language. Prose about each field lives in
the ``description=`` here (it becomes the schema's), the wire layout (topics, frames) in the
docstrings of :mod:`.verdict` and :mod:`.messages`.

Fields are only ever added within a schema version, so a reader must accept a message that
lacks a field added later (those have defaults here: for the verdict, :data:`VERDICT_ADDED_FIELDS`)
and one that carries fields it does not know (every model accepts extra keys).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, TypeAdapter, ValidationError

SCHEMA_VERSION = 1


class _Message(BaseModel):
    """A wire object: unknown keys (added by a newer sender within the schema version) are kept."""

    model_config = ConfigDict(extra="allow")


class Counters(_Message):
    """Frame accounting since the daemon started: the same shape in verdicts, heartbeats and stopped."""

    frames: NonNegativeInt = Field(description="Frames received from the camera so far, counting those it "
                                   "discarded; frames = verdicts + dropped (+ frames still in the pipeline).")
    verdicts: NonNegativeInt | None = Field(None, description="Verdicts published so far in this run (in a "
                                            "verdict: this one included). Added within schema 1: older "
                                            "verdicts lack it.")
    errors: NonNegativeInt = Field(description="Error verdicts (frames that could not be inspected) so far.")
    dropped: NonNegativeInt = Field(0, description="Frames that got no verdict so far: the sum of drops.")
    drops: dict[str, NonNegativeInt] = Field(default_factory=dict, description="Dropped frames by reason: "
                                             "queue_full, incomplete_buffer, shutdown.")


class Region(_Message):
    """An NG region: the bounding box of connected map pixels above the pixel threshold."""

    x: int = Field(description="Left edge in original image pixels.")
    y: int = Field(description="Top edge in original image pixels.")
    w: NonNegativeInt = Field(description="Width in image pixels.")
    h: NonNegativeInt = Field(description="Height in image pixels.")
    area: NonNegativeInt = Field(description="Pixels in the region, in image pixels.")
    peak: float | None = Field(description="Largest map value in the region (raw score units); null if not finite.")


class Latency(_Message):
    """Time per stage in ms; stages not run are 0."""

    decode: NonNegativeFloat = Field(description="Decoding the camera buffer or image file.")
    preprocess: NonNegativeFloat = Field(description="Resize and normalisation into the graph's tensor.")
    inference: NonNegativeFloat = Field(description="Running the graph.")
    postprocess: NonNegativeFloat = Field(description="Threshold, normalisation and regions.")
    publish: NonNegativeFloat = Field(description="From the end of inspection to the hand-over to ZeroMQ.")
    total: NonNegativeFloat = Field(description="(t_publish - t_capture) * 1000.")


class Verdict(_Message):
    """One verdict per frame the camera delivered (topic verdict.<station>)."""

    schema_: Literal[1] = Field(alias="schema", description="Message schema version; bumped on any "
                                "incompatible change (consumers must check it).")
    station: str = Field(description="Station name, the same as in the topic.")
    seq: int = Field(ge=1, description="+1 per published verdict of this station. Persisted in the state "
                     "directory, so it continues across reloads and restarts (from 1 only without a state "
                     "directory). A jump means lost verdicts, except on a verdict with restart true: then it "
                     "is numbers left unused by a run that did not stop cleanly.")
    frame_id: int = Field(description="The camera's frame counter (from 1).")
    device_frame_id: int | None = Field(None, description="The producer's own frame id (GenTL cameras), null "
                                        "where there is none; a jump larger than 1 means images the camera "
                                        "made were not inspected.")
    source: str = Field(description="Where the frame came from (file path for the sim camera).")
    t_capture: float = Field(description="Epoch seconds when the frame was captured (host clock).")
    timestamp_ns: int | None = Field(None, description="The image's timestamp in ns: the camera's own buffer "
                                     "timestamp when the device gives one, else t_capture in epoch ns.")
    timestamp_clock: Literal["device", "host"] = Field("host", description="device: timestamp_ns is from the "
                                                       "camera's clock (compare it only with the same camera); "
                                                       "host: epoch ns.")
    t_publish: float = Field(description="Epoch seconds when the verdict was handed to ZeroMQ.")
    verdict: Literal["OK", "NG"] = Field(description="The decision; NG (fail-safe) when the frame could not be "
                                         "inspected.")
    score: float | None = Field(description="Raw image anomaly score; null when not inspected.")
    normalized_score: float | None = Field(ge=0, le=1, description="Score mapped to 0..1 by the bundle's "
                                           "normalisation (0.5 at the image threshold); null when not inspected.")
    threshold: float | None = Field(description="Image threshold the score was compared with; null when not "
                                    "inspected.")
    pixel_threshold: float | None = Field(description="Pixel threshold used to find regions; null when not "
                                          "inspected.")
    regions: list[Region] = Field(description="NG regions in original image pixels; [] when none.")
    error: str | None = Field(description="Null, or why the frame was not inspected: 'decode: ...' or "
                              "'inference: ...'; the verdict is then NG.")
    bundle_id: str = Field(description="Id of the model bundle that decided.")
    latency_ms: Latency = Field(description="Time per stage in ms.")
    counters: Counters = Field(description="Frame accounting at this verdict; a frame dropped between two "
                               "verdicts shows in the next one.")
    has_map: bool = Field(description="Whether a third frame (the anomaly map as an 8-bit PNG) follows.")
    has_image: bool = Field(False, description="Whether the frame itself follows as a JPEG (publish.send_image), "
                            "after the map when has_map is true. Added within schema 1.")
    image_width: NonNegativeInt | None = Field(None, description="Width in pixels of the frame as the camera "
                                               "delivered it: the space regions are given in (the JPEG may be "
                                               "smaller); null when the frame had no image. Added within schema 1.")
    image_height: NonNegativeInt | None = Field(None, description="Height in pixels of the frame as the camera "
                                                "delivered it; null when the frame had no image. Added within "
                                                "schema 1.")
    run_id: str | None = Field(None, description="Changes at every start of the daemon (not at a reload).")
    restart: bool = Field(False, description="True on the first verdict of a run: a seq jump before it is "
                          "numbers left unused by an unclean stop, not verdicts lost.")
    part_id: int | None = Field(None, ge=0, le=2**32 - 1, description="The part id the trigger of this frame "
                                "carried (a PLC trigger, or the trigger control command with part_id); null in "
                                "free run or for a trigger without one. Added within schema 1.")


VERDICT_FIELDS = tuple(field.alias or name for name, field in Verdict.model_fields.items())
# Added within schema 1: always sent, but a reader must not require them (older senders lack them).
VERDICT_ADDED_FIELDS = ("device_frame_id", "timestamp_ns", "timestamp_clock", "run_id", "restart", "part_id",
                        "has_image", "image_width", "image_height")
VERDICT_REQUIRED_FIELDS = tuple(name for name in VERDICT_FIELDS if name not in VERDICT_ADDED_FIELDS)


class OutputStats(_Message):
    """One output beside the publisher (PLC, broker): every message handed to it ends in one of these counts."""

    delivered: NonNegativeInt = Field(description="Messages the output delivered (acknowledged where it can tell).")
    undelivered: dict[str, NonNegativeInt] = Field(default_factory=dict, description="Messages it did not deliver, "
                                                   "by reason (queue_full, shutdown, or the output's own).")
    queued: NonNegativeInt = Field(0, description="Messages waiting in its queue now.")
    connected: bool = Field(description="Whether it is connected to its peer (PLC, broker) now.")
    last_error: str | None = Field(None, description="The last delivery error, if any.")


class Heartbeat(_Message):
    """Sent when nothing else was published for publish.heartbeat_s (topic heartbeat.<station>)."""

    schema_: Literal[1] = Field(alias="schema", description="Message schema version.")
    station: str = Field(description="Station name, as in the topic.")
    t: float = Field(description="Epoch seconds when it was sent.")
    run_id: str = Field(description="Changes at every start of the daemon.")
    restart: bool = Field(description="True on the first message of a run.")
    last_seq: NonNegativeInt = Field(description="The last verdict seq published (0 before any).")
    state: Literal["running", "paused"] = Field(description="Whether inspection is paused (edge-inspect ctl).")
    camera: Literal["up", "down"] = Field(description="Whether the camera delivers frames.")
    bundle_id: str = Field(description="The bundle deciding now.")
    counters: Counters = Field(description="Frame accounting, as in the verdict.")
    outputs: dict[str, OutputStats] = Field(default_factory=dict, description="Each enabled output's accounting, "
                                            "by output name (added within schema 1; {} when none is enabled).")


class Status(_Message):
    """Station status (topic status.<station>): the camera going down, each failed retry, back up, give-up; a
    streak of error verdicts; an output (PLC, broker) losing or regaining its peer."""

    schema_: Literal[1] = Field(alias="schema", description="Message schema version.")
    station: str = Field(description="Station name, as in the topic.")
    t: float = Field(description="Epoch seconds when it was sent.")
    camera: Literal["up", "down", "gave_up"] = Field(description="The camera's state; gave_up: past the "
                                                     "reconnect budget, the daemon exits.")
    reason: str | None = Field(description="Why (the camera error, the error streak, the output's link); null "
                               "when the camera is up and nothing else is wrong.")
    attempt: NonNegativeInt = Field(description="Failed reconnect attempts in a row so far.")
    next_retry_s: float | None = Field(description="Delay before the next attempt; null when up or gave up.")
    stats: dict[str, int] = Field(description="The camera's counters (frames, timeouts, incomplete, dropped, ...).")
    verdicts: NonNegativeInt = Field(description="Verdicts published so far in this run.")
    error_frames_in_row: NonNegativeInt = Field(0, description="Error verdicts in a row: a status goes out when "
                                                "they reach watchdog.error_frames_alarm (reason: the last error) "
                                                "and again, with 0, when a frame is inspected again.")
    subject: Literal["camera", "errors", "output"] = Field("camera", description="What this status is about: the "
                                                           "camera, a streak of error verdicts, or an output's link "
                                                           "(added within schema 1; reason belongs to it).")
    outputs: dict[str, OutputStats] = Field(default_factory=dict, description="Each enabled output's accounting "
                                            "as in the heartbeat (added within schema 1); a status goes out, with "
                                            "the output named in reason, when an output's link to its peer is lost "
                                            "or back for a second.")


class StagePercentiles(_Message):
    """Latency percentiles of one stage over the daemon's recent window (ms)."""

    p50: float = Field(description="Median.")
    p95: float = Field(description="95th percentile.")
    p99: float = Field(description="99th percentile.")
    n: NonNegativeInt = Field(description="Durations in the window.")


class SelfTestResult(_Message):
    """The load-time self-test of a bundle (see edge.model.selftest)."""

    score: float = Field(description="What the probe scored now.")
    expected: float = Field(description="What it scored at export.")
    abs_diff: float = Field(description="|score - expected|.")
    limit: float = Field(description="Largest difference allowed.")


class StartedDetail(_Message):
    """Detail of started."""

    bundle_id: str | None = Field(description="The bundle the run starts with.")
    previous_stop_clean: bool | None = Field(description="Whether the previous run stopped cleanly; null when "
                                             "no earlier run is known (no state directory, first start).")


class ReloadDetail(_Message):
    """Detail of reload."""

    bundle_id: str = Field(description="The bundle deciding from now on.")
    previous_bundle_id: str | None = Field(description="The bundle it replaced.")
    source: str | None = Field(None, description="What asked for the reload: SIGHUP or control.")
    selftest: SelfTestResult | None = Field(description="The new bundle's self-test; null when it has no probe.")
    needs_restart: list[str] = Field(description="Config sections that changed but apply only after a restart.")


class ReloadRefusedDetail(_Message):
    """Detail of reload_refused: the running bundle keeps deciding."""

    reason: str = Field(description="Why the new config or bundle was refused.")
    source: str | None = Field(None, description="What asked for the reload: SIGHUP or control.")
    bundle_id: str | None = Field(None, description="The bundle that keeps running.")


class CameraRecord(_Message):
    """What the camera went through in a run."""

    reconnects: NonNegativeInt = Field(description="Times the camera was reopened after it was lost.")
    stats: dict[str, int] = Field(description="The camera's counters (frames, timeouts, incomplete, dropped, ...).")


class StoppedDetail(_Message):
    """Detail of stopped, the last message of a run."""

    counters: Counters = Field(description="Final frame accounting.")
    last_seq: NonNegativeInt = Field(description="The last verdict seq published.")
    balanced: bool = Field(description="Whether every frame got a verdict or a counted drop.")
    failure: str | None = Field(description="Why the run failed (a thread crashed, the camera gave up); null "
                                "on a clean stop.")
    latency_ms: dict[str, StagePercentiles] = Field(description="Latency percentiles per stage over the run's "
                                                    "recent window.")
    camera: CameraRecord | None = Field(None, description="The camera's reconnects and counters over the run "
                                        "(added within schema 1).")
    outputs: dict[str, OutputStats] = Field(default_factory=dict, description="Each enabled output's final "
                                            "accounting (added within schema 1).")


class _EventBase(_Message):
    schema_: Literal[1] = Field(alias="schema", description="Message schema version.")
    station: str = Field(description="Station name, as in the topic.")
    t: float = Field(description="Epoch seconds when it was sent.")
    run_id: str = Field(description="Changes at every start of the daemon.")


class StartedEvent(_EventBase):
    """The daemon started inspecting."""

    event: Literal["started"] = Field(description="Event name.")
    detail: StartedDetail = Field(description="Event-specific detail.")


class ReloadEvent(_EventBase):
    """A new config and bundle were applied without a restart."""

    event: Literal["reload"] = Field(description="Event name.")
    detail: ReloadDetail = Field(description="Event-specific detail.")


class ReloadRefusedEvent(_EventBase):
    """A reload was refused."""

    event: Literal["reload_refused"] = Field(description="Event name.")
    detail: ReloadRefusedDetail = Field(description="Event-specific detail.")


class StoppedEvent(_EventBase):
    """The daemon stopped; nothing more is published in this run."""

    event: Literal["stopped"] = Field(description="Event name.")
    detail: StoppedDetail = Field(description="Event-specific detail.")


Event = Annotated[Union[StartedEvent, ReloadEvent, ReloadRefusedEvent, StoppedEvent], Field(discriminator="event")]
EVENT = TypeAdapter(Event)


def dump(message: BaseModel, exclude: dict[str, Any] | None = None) -> dict[str, Any]:
    """A model as the JSON-ready dict that goes on the wire (field aliases, so ``schema``)."""
    return message.model_dump(mode="json", by_alias=True, exclude=exclude)


def describe_error(exc: ValidationError) -> str:
    """The first error as ``field.path: message`` on one line (the bundle loader words its own)."""
    errors = exc.errors(include_url=False)
    loc = ".".join(str(part) for part in errors[0]["loc"])
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{loc}: {errors[0]['msg']}{more}" if loc else errors[0]["msg"] + more
