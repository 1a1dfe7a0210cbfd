"""The broker output against a real Kafka-compatible broker (Tansu) across a network outage.

Tansu keeps everything in memory, so the outage is the network: every client reaches it through
a proxy that the test cuts (all connections closed, new ones refused) and restores, while the
broker keeps its log and the consumer group its offsets.
"""

from __future__ import annotations

import threading
from typing import Any

from edge.outputs.broker.reader import BrokerMessage, KafkaReader
from edge.tools.harness import DEMO_IMAGES, RunningDaemon, wait_until

WAIT_S = 120.0


def test_a_network_outage_to_kafka_loses_nothing_and_the_key_is_the_station(tmp_path, tansu):
    broker, proxy = tansu
    messages: list[BrokerMessage] = []
    lock = threading.Lock()

    def add(message: BrokerMessage) -> None:
        with lock:
            messages.append(message)

    def verdicts() -> list[dict[str, Any]]:
        with lock:
            return [m.payload for m in messages if m.kind == "verdict"]

    reader = KafkaReader(broker.bootstrap, "plant", add)
    reader.start(timeout_s=WAIT_S)
    config = {"station": "k1", "camera": {"type": "sim", "source": str(DEMO_IMAGES), "loop": True, "fps": 30},
              "state_dir": str(tmp_path / "state"),
              "outputs": {"broker": {"enabled": True, "kafka": {"bootstrap": broker.bootstrap, "topic_prefix": "plant",
                                                                "delivery_timeout_s": 10}}}}
    with RunningDaemon(tmp_path, config) as daemon:
        daemon.wait_for(lambda d: len(d.of("verdict")) >= 10, WAIT_S, "10 verdicts")
        wait_until(lambda: len(verdicts()) >= 5, WAIT_S, "verdicts at the consumer")
        proxy.cut()
        before = len(daemon.of("verdict"))
        daemon.wait_for(lambda d: len(d.of("verdict")) >= before + 60, WAIT_S, "60 verdicts during the outage")
        during = {(v["run_id"], v["seq"]) for v in daemon.of("verdict")[before + 30:]}  # surely after the cut
        proxy.restore()
        produced = lambda: {(v["run_id"], v["seq"]) for v in daemon.of("verdict")}
        wait_until(lambda: produced() <= {(v["run_id"], v["seq"]) for v in verdicts()}, WAIT_S, "the replay")
        assert daemon.terminate() == 0
        stats = daemon.stopped()["outputs"]["broker.kafka"]
    reader.close()
    got = verdicts()
    assert produced() <= {(v["run_id"], v["seq"]) for v in got}
    replayed = {(v["run_id"], v["seq"]) for v in got if v["delivery"]["replay"]}
    assert during <= replayed
    with lock:
        assert {m.station for m in messages} == {"k1"}  # the record key
    assert stats["undelivered"] == {} and stats["connected"] is True
