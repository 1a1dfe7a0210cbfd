"""MQTT transport (paho-mqtt): topics under a prefix, QoS 1, retained status, a will for a dead station.

Topics are ``<prefix>/<station>/<kind>`` (``verdict``, ``heartbeat``, ``status``, ``event``) with
the JSON payloads of :doc:`docs/messages.md` plus the ``delivery`` key of :doc:`docs/broker.md`;
``status`` is retained, so a dashboard that connects later sees the camera state at once. Each
connection publishes a retained ``<prefix>/<station>/connection`` message (``online: true``) and
leaves a last will saying ``online: false``, which the broker sends when the station dies.

paho keeps QoS 1 messages of a dropped connection in memory and re-sends them itself on
reconnect; the outbox does that job durably, so every connection here is a fresh client with a
clean session, driven by the sender's own thread (``loop()``, no paho thread), and nothing paho
held survives a lost connection.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

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

CONNECT_TIMEOUT_S = 5.0


class MqttConfig(BaseModel):
    """``outputs.broker.mqtt:`` the plant's MQTT broker (mosquitto, EMQX, HiveMQ, ...)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="mqtt://HOST[:PORT] (default port 1883) or mqtts://HOST[:PORT] for TLS (8883).")
    topic_prefix: str = Field("edge-inspect", description="Topics are PREFIX/STATION/verdict, .../status "
                              "(retained), .../event, .../heartbeat, .../connection (retained, with the last will); "
                              "e.g. plant/line1.")
    client_id: str | None = Field(None, description="MQTT client id; default edge-inspect-STATION (unique per broker).")
    username: str | None = Field(None, description="User name for the broker, if it requires one.")
    password_file: Path | None = Field(None, description="File holding the password (first line); relative to the "
                                       "config file. Keep it readable by the service user only.")
    ca_file: Path | None = Field(None, description="CA certificate(s) to verify the broker with (mqtts); default: "
                                 "the system's CAs.")
    cert_file: Path | None = Field(None, description="Client certificate for mutual TLS (mqtts).")
    key_file: Path | None = Field(None, description="Client private key for mutual TLS (mqtts).")
    protocol: Literal["3.1.1", "5"] = Field("3.1.1", description="MQTT protocol version.")
    keepalive_s: int = Field(30, ge=5, le=3600, description="Keep-alive; a dead connection is noticed within "
                             "1.5x this at worst (usually at once, when the broker closes it).")
    window: int = Field(100, ge=2, le=65535, description="QoS 1 messages sent and not yet acknowledged, at most.")

    @field_validator("password_file", "ca_file", "cert_file", "key_file")
    @classmethod
    def _relative_to_config(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return resolve_path(value, info)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
        try:
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError as exc:
            raise ValueError(f"bad port ({exc})") from None
        return value

    @model_validator(mode="after")
    def _tls_files_need_mqtts(self) -> MqttConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if any((self.ca_file, self.cert_file)) and not self.url.startswith("mqtts://"):
            raise ValueError("ca_file/cert_file need an mqtts:// url")
        return self


def topic(prefix: str, station: str, kind: str) -> str:
    return f"{prefix.rstrip('/')}/{station}/{kind}"


class MqttTransport:
    """One broker connection at a time, each a new paho client; QoS 1 acknowledgements mapped to outbox ids."""

    def __init__(self, config: MqttConfig, station: str, run_id: str = "") -> None:
        try:
            import paho.mqtt.client  # noqa: F401 - checked at start-up, used in connect()
        except ImportError:
            raise OutputError("paho-mqtt is not installed (pip install 'edge-inspect[broker]')") from None
        self.config = config
        self.station = station
        self.run_id = run_id
        self.name = f"mqtt {config.url}"
        self.window = config.window
        parts = urlsplit(config.url)
        self.host = str(parts.hostname)
        self.tls = parts.scheme == "mqtts"
        self.port = parts.port or (8883 if self.tls else 1883)
        self.password: str | None = None
        if config.password_file is not None:
            try:
                self.password = config.password_file.read_text(encoding="utf-8").splitlines()[0]
            except (OSError, IndexError) as exc:
                raise OutputError(f"password_file {config.password_file}: cannot read it ({exc})") from None
        self._topics = {kind: topic(config.topic_prefix, station, kind)
                        for kind in ("verdict", "heartbeat", "status", "event", "connection")}
        self._client: Any = None
        self._mids: dict[int, int] = {}  # paho message id -> outbox id, for this connection
        self._acked_mids: list[int] = []
        self._connack: int | None = None
        self._down: str | None = None

    def _presence(self, online: bool) -> bytes:
        return json.dumps({"schema": 1, "station": self.station, "online": online, "t": time.time(),
                           "run_id": self.run_id}).encode()

    def _new_client(self) -> Any:
        import paho.mqtt.client as mqtt

        protocol = mqtt.MQTTv5 if self.config.protocol == "5" else mqtt.MQTTv311
        kwargs: dict[str, Any] = {"clean_session": True} if protocol == mqtt.MQTTv311 else {}
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.config.client_id or
                             f"edge-inspect-{self.station}", protocol=protocol, **kwargs)
        client.max_inflight_messages_set(self.window)
        client.connect_timeout = CONNECT_TIMEOUT_S
        if self.config.username is not None:
            client.username_pw_set(self.config.username, self.password)
        if self.tls:
            try:
                client.tls_set(ca_certs=str(self.config.ca_file) if self.config.ca_file else None,
                               certfile=str(self.config.cert_file) if self.config.cert_file else None,
                               keyfile=str(self.config.key_file) if self.config.key_file else None,
                               cert_reqs=ssl.CERT_REQUIRED)
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise OutputError(f"TLS files: {exc}") from None
        client.will_set(self._topics["connection"], self._presence(False), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def check(self) -> None:
        """Start-up check of what can be checked without the broker (TLS files, credentials): OutputError."""
        self._new_client()

    # paho callbacks (called inside client.loop(), on the sender thread)

    def _on_connect(self, _client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        self._connack = 0 if not reason_code.is_failure else int(reason_code.value)
        if reason_code.is_failure:
            self._down = f"broker refused the connection: {reason_code}"

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        self._down = f"disconnected ({reason_code})"

    def _on_publish(self, _client: Any, _userdata: Any, mid: int, _reason: Any, _props: Any) -> None:
        self._acked_mids.append(mid)

    # Transport

    def connect(self) -> None:
        self.disconnect()
        client = self._new_client()
        self._connack, self._down = None, None
        try:
            client.connect(self.host, self.port, keepalive=self.config.keepalive_s)
        except (OSError, ssl.SSLError) as exc:
            raise TransportDown(f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}") from None
        self._client = client
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while self._connack is None and self._down is None and time.monotonic() < deadline:
            client.loop(0.05)
        if self._connack != 0:
            reason = self._down or f"no CONNACK within {CONNECT_TIMEOUT_S:g} s"
            self.disconnect()
            raise TransportDown(reason)
        client.publish(self._topics["connection"], self._presence(True), qos=1, retain=True)

    def send(self, row: Row, replay: bool) -> None:
        import paho.mqtt.client as mqtt

        if self._client is None or self._down is not None:
            raise TransportDown(self._down or "not connected")
        info = self._client.publish(self._topics.get(row.kind, self._topics["event"]),
                                    mark_replay(row.body) if replay else row.body, qos=1,
                                    retain=row.kind == "status")
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise TransportDown(f"publish failed: {mqtt.error_string(info.rc)}")
        self._mids[info.mid] = row.id

    def service(self, timeout_s: float) -> list[int]:
        import paho.mqtt.client as mqtt

        if self._client is None:
            raise TransportDown("not connected")
        rc = self._client.loop(timeout_s)
        acked = [self._mids.pop(mid) for mid in self._acked_mids if mid in self._mids]
        self._acked_mids.clear()
        if self._down is not None or rc != mqtt.MQTT_ERR_SUCCESS:
            self._down = self._down or f"connection lost: {mqtt.error_string(rc)}"
            if acked:
                return acked  # the acknowledgements that did arrive count; the next call raises
            raise TransportDown(self._down)
        return acked

    def disconnect(self) -> None:
        client, self._client = self._client, None
        self._mids.clear()
        self._acked_mids.clear()
        if client is not None:
            try:
                client.disconnect()
            except (OSError, ValueError):
                pass
            try:
                client.socket() and client.socket().close()
            except OSError:
                pass

    def close(self, timeout_s: float) -> None:
        """Say offline (retained) and disconnect; the will is not sent for a clean stop."""
        client = self._client
        if client is not None and self._down is None:
            info = client.publish(self._topics["connection"], self._presence(False), qos=1, retain=True)
            deadline = time.monotonic() + max(0.0, timeout_s)
            while not info.is_published() and self._down is None and time.monotonic() < deadline:
                client.loop(0.02)
        self.disconnect()
