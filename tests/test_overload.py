"""Overload: the hand-off is bounded by readings and bytes, not only by messages, and
backpressure mode lets the broker hold what the daemon cannot take (real Mosquitto)."""

from __future__ import annotations

import itertools
import json
import queue
import time
from collections.abc import Callable

import paho.mqtt.publish as mqtt_publish
import pytest
from broker import Mosquitto, mosquitto_binary
from prometheus_client import CollectorRegistry

from monitor.core.config import ConfigError, MQTTConfig, TopicRule, load_config
from monitor.io import mqtt_fast
from monitor.io.codec import Codec
from monitor.io.handoff import HandOff
from monitor.io.metrics import Metrics
from monitor.io.mqtt import Delivery, Ingested, MQTTIngest

RULES = [TopicRule(template="sensors/{stream}/{channel}", format="auto", qos=1)]
_ids = itertools.count()
needs_broker = pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed")


def item(n_readings: int, payload_bytes: int = 10) -> Ingested:
    delivery = Delivery(0.0, "t", b"x" * payload_bytes, 1, False, 1, 1)
    return Ingested(0.0, [object()] * n_readings, [], delivery)  # type: ignore[list-item]


def batch_payload(n: int, start: float = 1.7e9) -> bytes:
    return json.dumps([{"ts": start + i, "channel": f"c{i % 4}", "value": float(i)} for i in range(n)]).encode()


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def publish(broker: Mosquitto, payloads: list[bytes], qos: int = 1) -> None:
    mqtt_publish.multiple(
        [{"topic": "sensors/p1/x", "payload": p, "qos": qos} for p in payloads],
        hostname=broker.host,
        port=broker.port,
        client_id=f"pub-{next(_ids)}",
    )


def cfg_for(broker: Mosquitto, **overrides: object) -> MQTTConfig:
    kwargs: dict = dict(
        host=broker.host,
        port=broker.port,
        client_id=f"overload-{next(_ids)}",
        reconnect_min_seconds=0.05,
        reconnect_max_seconds=0.2,
        keepalive_seconds=5,
    )
    kwargs.update(overrides)
    return MQTTConfig(**kwargs)


@pytest.fixture
def broker(tmp_path):
    with Mosquitto(tmp_path / "broker") as b:
        yield b


# --------------------------------------------------------------------------- pure


def test_handoff_is_bounded_by_readings_whatever_the_message_count():
    h = HandOff(maxsize=1000, max_readings=250, max_bytes=10**9)
    h.put_nowait(item(100))
    h.put_nowait(item(100))
    with pytest.raises(queue.Full):
        h.put_nowait(item(100))  # 300 readings > 250
    h.put_nowait(item(50))  # exactly at the bound is fine
    assert (h.qsize(), h.readings()) == (3, 250)
    assert [len(i.readings) for i in h.take(1)] == [100]
    assert h.readings() == 150
    h.put_nowait(item(100))
    assert h.readings() == 250


def test_handoff_is_bounded_by_payload_bytes():
    h = HandOff(maxsize=1000, max_readings=10**9, max_bytes=1000)
    h.put_nowait(item(1, 600))
    with pytest.raises(queue.Full):
        h.put_nowait(item(1, 600))
    assert h.bytes() == 600 and "mqtt.queue_bytes" in h.full_reason()
    h.get_nowait()
    h.put_nowait(item(1, 600))
    assert h.bytes() == 600


def test_an_empty_handoff_takes_one_item_larger_than_its_bounds():
    h = HandOff(maxsize=10, max_readings=10, max_bytes=10)
    h.put_nowait(item(500, 5000))  # else such a message could never be handled
    with pytest.raises(queue.Full):
        h.put_nowait(item(1, 1))
    h.take(10)
    assert (h.qsize(), h.readings(), h.bytes()) == (0, 0, 0)


def test_default_bounds_are_by_readings_and_bytes_and_backpressure_needs_mqtt5(tmp_path):
    cfg = load_config(None, environ={})
    assert cfg.mqtt.queue_readings == 200_000 and cfg.mqtt.queue_bytes == 64 * 1024 * 1024
    assert cfg.mqtt.overload == "drop"
    path = tmp_path / "c.yaml"
    path.write_text('mqtt: {overload: backpressure, protocol: "3.1.1"}\n')
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert err.value.key == "mqtt.overload"
    with pytest.raises(ConfigError, match=r"mqtt\.overload"):
        load_config(None, environ={"MONITOR_MQTT__OVERLOAD": "block"})


# --------------------------------------------------------------------------- broker


@needs_broker
def test_batched_messages_beyond_the_readings_bound_are_dropped_and_counted(broker):
    registry = CollectorRegistry()
    cfg = cfg_for(broker, queue_readings=300)
    handoff = HandOff(cfg.queue_size, cfg.queue_readings, cfg.queue_bytes)
    ingest = MQTTIngest(cfg, RULES, Codec(RULES), handoff, Metrics(registry))
    ingest.start()
    try:
        wait_for(lambda: ingest.subscribed, what="subscription")
        publish(broker, [batch_payload(100)] * 10)
        wait_for(lambda: ingest.stats["messages"] == 10, what="all messages")
        assert (handoff.qsize(), handoff.readings()) == (3, 300)  # not 10 messages: bounded by readings
        assert registry.get_sample_value("monitor_drops_total", {"reason": "queue_full"}) == 700
        assert ingest.stats["dropped_messages"] == 7
    finally:
        ingest.stop(2.0)


@needs_broker
def test_backpressure_asks_the_broker_for_at_most_receive_maximum_unacked_messages(broker):
    cfg = cfg_for(broker, overload="backpressure", receive_maximum=5, clean_start=False)
    handoff = HandOff(cfg.queue_size, cfg.queue_readings, cfg.queue_bytes)
    ingest = MQTTIngest(cfg, RULES, Codec(RULES), handoff, manual_ack=True)
    ingest.start()
    try:
        wait_for(lambda: ingest.subscribed, what="subscription")
        publish(broker, [batch_payload(10)] * 20)
        wait_for(lambda: ingest.stats["messages"] == 5, what="receive_maximum messages")
        time.sleep(0.3)  # the broker must not send a sixth while five are unacked
        assert ingest.stats["messages"] == 5 and handoff.qsize() == 5
    finally:
        ingest.stop(2.0)


@needs_broker
@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "plain-paho"])
def test_backpressure_stops_reading_at_the_bounds_and_loses_nothing(broker, monkeypatch, fast_path):
    monkeypatch.setattr(mqtt_fast, "_FAST_PUBLISH", fast_path)
    registry = CollectorRegistry()
    cfg = cfg_for(broker, queue_readings=300, overload="backpressure", clean_start=False)
    handoff = HandOff(cfg.queue_size, cfg.queue_readings, cfg.queue_bytes)
    ingest = MQTTIngest(cfg, RULES, Codec(RULES), handoff, Metrics(registry), manual_ack=True)
    ingest.start()
    try:
        wait_for(lambda: ingest.subscribed, what="subscription")
        n = 60  # about 370 KB of payloads: more than one 64 KiB read of the fast path
        publish(broker, [batch_payload(100, start=1.7e9 + 1000 * k) for k in range(n)])
        wait_for(lambda: ingest.stats["read_pauses"] > 0, what="reads paused at the bounds")
        time.sleep(0.3)
        # past the 300-reading bound by at most one read: 64 KiB (about 11 such messages), or one packet
        assert 3 <= handoff.qsize() <= 3 + (12 if fast_path else 1)
        assert ingest.stats["messages"] == handoff.qsize()  # the rest stays with the broker
        assert registry.get_sample_value("monitor_backpressure_held_total") == handoff.qsize() - 3
        assert (registry.get_sample_value("monitor_drops_total", {"reason": "queue_full"}) or 0) == 0
        # the consumer catches up: every message arrives once, none dropped
        got: list[Ingested] = []
        deadline = time.monotonic() + 20
        while len(got) < n and time.monotonic() < deadline:
            taken = handoff.take(2)
            got += taken
            ingest.ack_many(taken)
            time.sleep(0.002)
        assert sorted(i.readings[0].timestamp for i in got) == [1.7e9 + 1000 * k for k in range(n)]
        assert ingest.stats["dropped_messages"] == 0
    finally:
        ingest.stop(2.0)
