"""The outputs.broker section: mistakes stop the daemon at start-up with the key that is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.daemon.config import ConfigError, load_config

DEMO = Path(__file__).resolve().parents[5] / "edge" / "demo"


def config(**broker: object):
    return load_config(None, {"bundle": str(DEMO / "bundle"), "camera.type": "sim",
                              "camera.source": str(DEMO / "images"),
                              **{f"outputs.broker.{key}": value for key, value in broker.items()}})


def test_the_section_is_off_by_default_and_needs_a_destination_when_on() -> None:
    assert config().outputs.broker.enabled is False
    with pytest.raises(ConfigError, match=r"outputs\.broker: enabled needs an mqtt: or kafka: section"):
        config(enabled=True)
    on = config(enabled=True, **{"mqtt.url": "mqtt://broker.plant:1883"})
    assert on.outputs.broker.mqtt.url == "mqtt://broker.plant:1883" and on.outputs.broker.run == "thread"


@pytest.mark.parametrize(("key", "value", "message"), [
    ("mqtt.url", "tcp://broker:1883", "must be mqtt://HOST"),
    ("mqtt.url", "mqtt://broker:99999", "bad port"),
    ("kafka.options", {"acks": "1"}, "options may not set acks"),
    ("kafka.security_protocol", "SASL_SSL", "needs sasl_mechanism and sasl_username"),
    ("outbox.sync", "sometimes", "outputs.broker.outbox.sync"),
    ("kinds", ["verdict", "verdict"], "give each kind once"),
])
def test_a_bad_value_names_its_key(key: str, value: object, message: str) -> None:
    extra = {} if key.startswith(("mqtt", "kafka")) else {"mqtt.url": "mqtt://b"}
    if key.startswith("kafka"):
        extra["kafka.bootstrap"] = "k:9092"
    with pytest.raises(ConfigError, match=message):
        config(enabled=True, **extra, **{key: value})
