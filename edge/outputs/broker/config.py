"""The ``outputs.broker:`` config section: destinations, the outbox, where the sender runs.

Apart from the package's ``__init__`` so that :mod:`edge.outputs.broker.output` and the bridge can
name the section's type without importing the package that builds them.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from edge.configfields import resolve_path
from edge.extras import MissingExtra
from edge.outputs.base import ALL_KINDS, MessageKind
from edge.outputs.broker.kafka import KafkaConfig
from edge.outputs.broker.mqtt import MqttConfig


class OutboxConfig(BaseModel):
    """``outputs.broker.outbox:`` the local store every message waits in until the broker acknowledged it."""

    model_config = ConfigDict(extra="forbid")

    dir: Path | None = Field(None, description="Folder of the outbox files (mqtt.sqlite, kafka.sqlite). Default: "
                             "STATE_DIR/outbox. Relative to the config file. Must be local, persistent storage.")
    max_mb: float = Field(1024.0, gt=0, description="Bound on the messages waiting, in MiB of JSON; past it the oldest "
                          "are dropped and counted (undelivered: outbox_full). A verdict is about 0.8-1.5 KiB: at 20/s "
                          "1024 MiB hold 10-18 hours of outage.")
    max_age_h: float = Field(168.0, gt=0, description="Messages older than this are dropped and counted "
                             "(undelivered: expired).")
    sync: Literal["full", "normal"] = Field(
        "full", description="full: each append is fsynced before it counts as handed over (survives a power cut); "
        "normal: survives a crash of the daemon but a power cut may lose the last appends (cheaper).")

    @field_validator("dir")
    @classmethod
    def _relative_to_config(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return resolve_path(value, info)


class BrokerConfig(BaseModel):
    """``outputs.broker:`` every message also goes to the plant's MQTT broker and/or Kafka, through a disk outbox."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Send to the broker(s) below.")
    run: Literal["thread", "bridge"] = Field(
        "thread", description="Where the sender runs: thread = inside the daemon; bridge = in a separate "
        "'edge-inspect bridge --config SAME_FILE' process (its own unit). The daemon only appends to the outbox.")
    kinds: list[MessageKind] = Field(default_factory=lambda: list(ALL_KINDS),
                                     description="Message kinds sent: verdict, heartbeat, status, event.")
    live_reserve: int = Field(16, ge=1, description="Unacknowledged slots kept free for live messages while a "
                              "backlog is replayed (the replay uses the rest of the transport's window).")
    replay_max_per_s: float = Field(1000.0, ge=0, description="Pace of the replay after an outage, messages/s; 0 = "
                                    "as fast as the broker acknowledges. Consumers that read slower than the replay "
                                    "see live messages late (behind the replayed ones): keep it below what they read.")
    reconnect_max_delay_s: float = Field(2.0, gt=0, description="A broker that cannot be reached is tried again "
                                         "after 0.5 s, doubling up to this; also the longest wait after it is back.")
    outbox: OutboxConfig = Field(default_factory=OutboxConfig, description="The disk outbox.")
    mqtt: MqttConfig | None = Field(None, description="The MQTT broker; none = no MQTT.")
    kafka: KafkaConfig | None = Field(None, description="The Kafka cluster; none = no Kafka.")

    @field_validator("kinds")
    @classmethod
    def _unique(cls, value: list[MessageKind]) -> list[MessageKind]:
        if not value or len(set(value)) != len(value):
            raise ValueError("give each kind once, at least one")
        return value

    @model_validator(mode="after")
    def _a_destination(self) -> BrokerConfig:
        if not self.enabled:
            return self
        if self.mqtt is None and self.kafka is None:
            raise ValueError("enabled needs an mqtt: or kafka: section")
        # The transports import their clients only when built: check here, so that --validate-config
        # refuses what start-up would (one line naming the extra), on a plain install.
        for section, module in (("mqtt", "paho.mqtt.client"), ("kafka", "confluent_kafka")):
            if getattr(self, section) is not None:
                try:
                    importlib.import_module(module)
                except ImportError:
                    raise ValueError(str(MissingExtra(f"outputs.broker.{section}", "broker", module))) from None
        return self
