"""Kafka transport (confluent-kafka): a topic per message kind, key = station, idempotent, ``acks=all``.

Topics are ``<prefix>.verdict``, ``.heartbeat``, ``.status`` and ``.event``; the key is the
station, so one station's messages stay on one partition, in order. The producer is idempotent
with ``acks=all``, so librdkafka's own retries within a connection never duplicate nor reorder; a
message counts as delivered (and leaves the outbox) only on its delivery report. Headers carry
``kind`` and ``replay`` for consumers that route without parsing JSON.

librdkafka retries and buffers by itself, but only in memory and only for ``message.timeout.ms``;
the outbox is what survives. So when every broker is down (its error callback says so), or a
delivery report is an error, the producer is purged and dropped, the sender probes the cluster
until it answers, and a fresh producer replays what the outbox still holds.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from edge.configfields import resolve_path
from edge.outputs.base import OutputError
from edge.outputs.broker.outbox import Row
from edge.outputs.broker.sender import TransportDown, mark_replay

log = logging.getLogger(__name__)


class _LibrdkafkaLog:
    """librdkafka's own lines (a FAIL per reconnect attempt during an outage) at DEBUG: the outage is logged once."""

    def log(self, _level: int, msg: str, *args: object) -> None:
        log.debug(msg, *args)

PROBE_TIMEOUT_S = 3.0


class KafkaConfig(BaseModel):
    """``outputs.broker.kafka:`` the plant's Kafka cluster."""

    model_config = ConfigDict(extra="forbid")

    bootstrap: str = Field(description="Bootstrap servers, HOST:PORT[,HOST:PORT...].")
    topic_prefix: str = Field("edge-inspect", description="Topics are PREFIX.verdict, PREFIX.heartbeat, "
                              "PREFIX.status and PREFIX.event; the key of every message is the station.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How to reach the brokers (librdkafka security.protocol).")
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism, for SASL_PLAINTEXT / SASL_SSL.")
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password_file: Path | None = Field(None, description="File holding the SASL password (first line); "
                                            "relative to the config file.")
    ssl_ca_file: Path | None = Field(None, description="CA certificate(s) to verify the brokers with (SSL).")
    ssl_cert_file: Path | None = Field(None, description="Client certificate for mutual TLS.")
    ssl_key_file: Path | None = Field(None, description="Client private key for mutual TLS.")
    delivery_timeout_s: float = Field(30.0, gt=0, description="A message not acknowledged within this long is "
                                      "taken as a lost connection: the producer is renewed and the outbox replayed.")
    window: int = Field(100, ge=2, le=100000, description="Messages produced and not yet acknowledged, at most. The "
                        "producer queues one station's messages in order, so a live one waits behind up to this "
                        "many replayed ones: keep it small.")
    options: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Further librdkafka producer settings (e.g. linger.ms, compression.type); "
        "these cannot turn off idempotence nor acks=all.")

    @field_validator("sasl_password_file", "ssl_ca_file", "ssl_cert_file", "ssl_key_file")
    @classmethod
    def _relative_to_config(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return resolve_path(value, info)

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaConfig:
        if self.security_protocol.startswith("SASL") and (self.sasl_mechanism is None or self.sasl_username is None):
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_mechanism and sasl_username")
        fixed = {"enable.idempotence", "acks", "bootstrap.servers", "message.timeout.ms"}
        if fixed & set(self.options):
            raise ValueError(f"options may not set {', '.join(sorted(fixed & set(self.options)))}")
        return self


class KafkaTransport:
    """A producer per connection; delivery reports mapped back to outbox ids."""

    def __init__(self, config: KafkaConfig, station: str) -> None:
        try:
            import confluent_kafka  # noqa: F401 - checked at start-up, used in connect()
        except ImportError:
            raise OutputError("confluent-kafka is not installed (pip install 'edge-inspect[broker]')") from None
        self.config = config
        self.station = station
        self.name = f"kafka {config.bootstrap}"
        self.window = config.window
        self._key = station.encode()
        self._settings = self._producer_settings()
        self._producer: Any = None
        self._acked: list[int] = []
        self._down: str | None = None

    def _producer_settings(self) -> dict[str, Any]:
        config = self.config
        settings: dict[str, Any] = {
            "bootstrap.servers": config.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "message.timeout.ms": int(config.delivery_timeout_s * 1000),
            "linger.ms": 5,
            "security.protocol": config.security_protocol,
            "client.id": f"edge-inspect-{self.station}",
            "log.connection.close": False,
            "logger": _LibrdkafkaLog(),  # librdkafka's own lines go through our logging, not raw to stderr
        }
        if config.sasl_mechanism is not None:
            settings["sasl.mechanism"] = config.sasl_mechanism
            settings["sasl.username"] = config.sasl_username
            if config.sasl_password_file is not None:
                try:
                    settings["sasl.password"] = config.sasl_password_file.read_text(encoding="utf-8").splitlines()[0]
                except (OSError, IndexError) as exc:
                    raise OutputError(f"sasl_password_file {config.sasl_password_file}: cannot read it ({exc})") \
                        from None
        for key, path in (("ssl.ca.location", config.ssl_ca_file), ("ssl.certificate.location", config.ssl_cert_file),
                          ("ssl.key.location", config.ssl_key_file)):
            if path is not None:
                settings[key] = str(path)
        settings.update(config.options)
        return settings

    def check(self) -> None:
        """Start-up check: librdkafka accepts the settings (a typo in ``options`` is an OutputError)."""
        from confluent_kafka import KafkaException, Producer

        try:
            Producer({**self._settings, "error_cb": lambda _err: None}).purge()
        except (KafkaException, ValueError, TypeError) as exc:
            raise OutputError(f"kafka settings refused: {exc}") from None

    def _on_error(self, err: Any) -> None:
        from confluent_kafka import KafkaError

        # a single connection closing (_TRANSPORT) is librdkafka's to retry; all brokers gone is an outage
        if err.code() == KafkaError._ALL_BROKERS_DOWN or err.fatal():
            self._down = f"{err.name()}: {err.str()}"

    # Transport

    def connect(self) -> None:
        from confluent_kafka import KafkaException, Producer

        self.disconnect()
        self._down = None
        producer = Producer({**self._settings, "error_cb": self._on_error})
        try:
            producer.list_topics(timeout=PROBE_TIMEOUT_S)
        except KafkaException as exc:
            producer.purge()
            raise TransportDown(f"cannot reach {self.config.bootstrap}: {exc.args[0].str() if exc.args else exc}") \
                from None
        self._down = None  # errors from before the probe answered are history
        self._producer = producer

    def send(self, row: Row, replay: bool) -> None:
        from confluent_kafka import KafkaException

        if self._producer is None or self._down is not None:
            raise TransportDown(self._down or "not connected")
        producer = self._producer

        def delivered(err: Any, _msg: Any, row_id: int = row.id) -> None:
            if producer is not self._producer:
                return  # a report from a producer already dropped
            if err is None:
                self._acked.append(row_id)
            elif self._down is None:
                self._down = f"delivery failed: {err.name()}: {err.str()}"

        try:
            producer.produce(f"{self.config.topic_prefix}.{row.kind}", value=mark_replay(row.body) if replay else
                             row.body, key=self._key, on_delivery=delivered,
                             headers=[("kind", row.kind.encode()), ("replay", b"1" if replay else b"0")])
        except (BufferError, KafkaException) as exc:
            raise TransportDown(f"produce failed: {exc}") from None

    def service(self, timeout_s: float) -> list[int]:
        if self._producer is None:
            raise TransportDown("not connected")
        self._producer.poll(timeout_s)
        acked, self._acked = self._acked, []
        if self._down is not None and not acked:
            raise TransportDown(self._down)
        return acked

    def disconnect(self) -> None:
        producer, self._producer = self._producer, None
        self._acked = []
        if producer is not None:
            producer.purge()
            producer.poll(0)

    def close(self, timeout_s: float) -> None:
        if self._producer is not None:
            self._producer.flush(max(0.0, timeout_s))
        self.disconnect()
