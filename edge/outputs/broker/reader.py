"""The plant side of the broker output: read every station's messages back from MQTT or Kafka.

``edge-inspect fleet``, the outage bench and the tests all need the same thing: every message the
stations sent, with the station and kind taken from where it arrived (MQTT topic
``<prefix>/<station>/<kind>``, Kafka topic ``<prefix>.<kind>`` with the station as key), the
payload parsed, and the local arrival time. A reader hands each one to a callback on its own
thread and keeps reading across broker restarts (MQTT: a persistent session when given a client
id, so a broker with persistence keeps queuing for it while it is away; Kafka: every partition assigned
directly, no consumer group, so a network cut costs no rebalance).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)


class _LibrdkafkaLog:
    """librdkafka's own lines (a FAIL per reconnect attempt during an outage) at DEBUG: the outage is logged once."""

    def log(self, _level: int, msg: str, *args: object) -> None:
        log.debug(msg, *args)

KINDS = ("verdict", "heartbeat", "status", "event", "connection")


@dataclass(frozen=True)
class BrokerMessage:
    """One message as read from the broker."""

    t: float  # time.time() at arrival
    station: str
    kind: str
    payload: dict[str, Any]


OnMessage = Callable[[BrokerMessage], None]


class ReaderError(Exception):
    """The reader cannot start (client library missing, bad URL); one line for the user."""


class MqttReader:
    """Subscribes to ``<prefix>/+/+`` at QoS 1; reconnects by itself (paho's own loop thread)."""

    def __init__(self, url: str, prefix: str, on_message: OnMessage, *, client_id: str | None = None,
                 username: str | None = None, password: str | None = None, ca_file: str | None = None,
                 reconnect_max_s: float = 2.0) -> None:
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise ReaderError("paho-mqtt is not installed (pip install 'edge-inspect[broker]')") from None
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ReaderError(f"{url}: must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
        self.host, self.port = parts.hostname, parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        self.prefix = prefix.rstrip("/")
        self.on_message = on_message
        self.subscribed = threading.Event()
        persistent = client_id is not None
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                   client_id=client_id or f"edge-inspect-fleet-{uuid.uuid4().hex[:8]}",
                                   clean_session=not persistent)
        if username is not None:
            self._client.username_pw_set(username, password)
        if parts.scheme == "mqtts":
            self._client.tls_set(ca_certs=ca_file)
        # paho types these as int; it computes with them as numbers, and sub-second delays work
        self._client.reconnect_delay_set(min(0.2, reconnect_max_s), reconnect_max_s)  # type: ignore[arg-type]
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_disconnect = lambda *_args: self.subscribed.clear()

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        if not reason_code.is_failure:
            client.subscribe(f"{self.prefix}/+/+", qos=1)
            self.subscribed.set()

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        rest = message.topic[len(self.prefix) + 1:].split("/")
        if len(rest) != 2 or rest[1] not in KINDS:
            return
        try:
            payload = json.loads(message.payload)
        except ValueError:
            log.warning("not JSON on %s; ignored", message.topic)
            return
        self.on_message(BrokerMessage(time.time(), rest[0], rest[1], payload))

    def start(self, timeout_s: float = 10.0) -> None:
        """Connect (retrying until ``timeout_s``) and start reading; ReaderError if the broker never answers."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._client.connect(self.host, self.port, keepalive=10)
                break
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise ReaderError(f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}") from None
                time.sleep(0.2)
        self._client.loop_start()
        if not self.subscribed.wait(max(0.1, deadline - time.monotonic())):
            raise ReaderError(f"{self.host}:{self.port}: connected but not subscribed within {timeout_s:g} s")

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class KafkaReader:
    """A consumer of the ``<prefix>.<kind>`` topics, every partition assigned directly; a thread polls it.

    No consumer group: a viewer needs no offsets of its own, and without group membership a
    network cut costs no rebalance (which would stall reading for seconds and re-read since the
    last commit). Its position lives in memory, so after a reconnect it goes on where it was.
    """

    def __init__(self, bootstrap: str, prefix: str, on_message: OnMessage, *, from_beginning: bool = True,
                 options: dict[str, Any] | None = None) -> None:
        try:
            from confluent_kafka import Consumer
        except ImportError:
            raise ReaderError("confluent-kafka is not installed (pip install 'edge-inspect[broker]')") from None
        self.on_message = on_message
        self.bootstrap = bootstrap
        self.from_beginning = from_beginning
        self.topics = [f"{prefix}.{kind}" for kind in KINDS if kind != "connection"]
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": f"edge-inspect-fleet-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False, "topic.metadata.refresh.interval.ms": 1000,
            "fetch.wait.max.ms": 20,  # a live table wants what arrived now, not a fuller fetch in 0.5 s
            "log.connection.close": False, "error_cb": lambda _err: None,
            "logger": _LibrdkafkaLog(), **(options or {})})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kafka-reader", daemon=True)

    def start(self, timeout_s: float = 30.0) -> None:
        """Create the topics if missing, assign all their partitions and start polling; ReaderError if unreachable."""
        from confluent_kafka import (
            OFFSET_BEGINNING,
            OFFSET_END,
            KafkaException,
            TopicPartition,
        )

        self._create_topics(timeout_s)
        try:
            metadata = self._consumer.list_topics(timeout=timeout_s)
        except KafkaException as exc:
            raise ReaderError(f"{self.bootstrap}: {exc}") from None
        offset = OFFSET_BEGINNING if self.from_beginning else OFFSET_END
        self._consumer.assign([TopicPartition(topic, partition, offset) for topic in self.topics
                               for partition in metadata.topics[topic].partitions])
        self._thread.start()

    def _create_topics(self, timeout_s: float) -> None:
        """A consumer is assigned nothing on a topic that does not exist yet: create them (one partition each)."""
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log.connection.close": False,
                             "logger": _LibrdkafkaLog()})  # type: ignore[dict-item]  # librdkafka takes a logger
        futures = admin.create_topics([NewTopic(topic, 1, 1) for topic in self.topics],
                                      operation_timeout=timeout_s, request_timeout=timeout_s)
        for topic, future in futures.items():
            try:
                future.result(timeout_s)
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc) and "already exists" not in str(exc):
                    raise ReaderError(f"cannot create topic {topic}: {exc}") from None

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self._consumer.poll(0.2)
            if message is None or message.error() is not None:
                continue
            topic, value = message.topic(), message.value()
            if topic is None or value is None:
                continue
            kind = topic.rsplit(".", 1)[-1]
            try:
                payload = json.loads(value)
            except (TypeError, ValueError):
                continue
            station = (message.key() or b"").decode("utf-8", "replace") or str(payload.get("station", ""))
            self.on_message(BrokerMessage(time.time(), station, kind, payload))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()
