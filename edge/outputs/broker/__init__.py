"""Verdicts into the plant's broker (MQTT, Kafka) through a disk outbox: a broker outage or a crash loses nothing.

A plant with fifty stations reads every verdict, status and event from the broker its MES,
historian and dashboards already use. This sub-package is that output: ``outbox`` (the SQLite
store every message is appended to before it counts as handed over), ``sender`` (the loop that
replays the outbox into a broker and deletes what was acknowledged), ``mqtt`` and ``kafka`` (the
two transports, each with its config model), ``output`` (the daemon's side: the append on the
publishing thread), ``bridge`` (the ``edge-inspect bridge`` process, when the sender runs apart
from the daemon) and ``fleet`` (the plant side: ``edge-inspect fleet``, one live table for every
station on the broker). User documentation: docs/broker.md.

May import :mod:`edge.outputs.base`, :mod:`edge.ops` and :mod:`edge.configfields`; paho-mqtt and
confluent-kafka (the ``broker`` extra) only when a transport is built, so the daemon starts without
them when this output is off.
"""

from __future__ import annotations

from edge.outputs.base import OutputContext, QueuedOutput
from edge.outputs.broker.config import BrokerConfig, OutboxConfig
from edge.outputs.broker.kafka import KafkaConfig
from edge.outputs.broker.mqtt import MqttConfig


def transports(config: BrokerConfig, station: str, run_id: str = "") -> dict[str, object]:
    """A factory per configured destination (``mqtt``, ``kafka``): callables that build its transport."""
    from edge.outputs.broker.kafka import KafkaTransport
    from edge.outputs.broker.mqtt import MqttTransport

    found: dict[str, object] = {}
    if config.mqtt is not None:
        mqtt = config.mqtt
        found["mqtt"] = lambda: MqttTransport(mqtt, station, run_id)
    if config.kafka is not None:
        kafka = config.kafka
        found["kafka"] = lambda: KafkaTransport(kafka, station)
    return found


def create_broker_outputs(config: BrokerConfig, context: OutputContext) -> list[QueuedOutput]:
    """One :class:`~.output.OutboxOutput` per destination, each with its own outbox file."""
    from edge.outputs.broker.output import OutboxOutput

    return [OutboxOutput(config, name, make, context)  # type: ignore[arg-type]
            for name, make in transports(config, context.station, context.run_id).items()]


__all__ = ["BrokerConfig", "KafkaConfig", "MqttConfig", "OutboxConfig", "create_broker_outputs", "transports"]
