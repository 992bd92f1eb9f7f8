"""MQTTIngest against a real Mosquitto on a free loopback port (never the system broker)."""
from __future__ import annotations

import itertools
import logging
import queue
import time
from pathlib import Path
from typing import Callable

import paho.mqtt.publish as mqtt_publish
import pytest
from prometheus_client import CollectorRegistry

from broker import Mosquitto, make_test_ca, mosquitto_binary, write_password_file
from monitor.config import MQTTConfig, TLSConfig, TopicRule
from monitor.ingest.codec import Codec
from monitor.ingest.mqtt import Delivery, Ingested, MQTTIngest, subscriptions, topic_filter
from monitor.metrics import Metrics

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed"),
]

RULES = [TopicRule(template="sensors/{stream}/{channel}", format="auto", qos=1)]
_ids = itertools.count()


# --------------------------------------------------------------------------- helpers


def wait_for(predicate: Callable[[], object], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def drain(q: "queue.Queue[Ingested]", n_readings: int, timeout: float = 5.0) -> list[Ingested]:
    """Items from `q` until they hold `n_readings` readings."""
    items: list[Ingested] = []
    deadline = time.monotonic() + timeout
    while sum(len(i.readings) for i in items) < n_readings:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            got = [r for i in items for r in i.readings]
            raise AssertionError(f"expected {n_readings} readings, got {len(got)}: {got}")
        try:
            items.append(q.get(timeout=min(remaining, 0.1)))
        except queue.Empty:
            pass
    return items


def take(q: queue.Queue, n_items: int, timeout: float = 5.0) -> list[Ingested]:
    """Exactly `n_items` items from `q`, then nothing more for a moment."""
    items = [q.get(timeout=timeout) for _ in range(n_items)]
    assert_nothing_arrives(q, 0.1)
    return items


def assert_nothing_arrives(q: queue.Queue, seconds: float = 0.3) -> None:
    try:
        item = q.get(timeout=seconds)
    except queue.Empty:
        return
    raise AssertionError(f"unexpected item {item}")


def publish(broker: Mosquitto, msgs: list[tuple[str, bytes | str]], qos: int = 1) -> None:
    """Publish synchronously from a separate client on the plain listener."""
    mqtt_publish.multiple(
        [{"topic": t, "payload": p, "qos": qos} for t, p in msgs],
        hostname=broker.host, port=broker.port, client_id=f"pub-{next(_ids)}",
    )


def cfg_for(broker: Mosquitto, **overrides: object) -> MQTTConfig:
    kwargs: dict = dict(
        host=broker.host, port=broker.port, client_id=f"monitor-test-{next(_ids)}",
        reconnect_min_seconds=0.05, reconnect_max_seconds=0.2, keepalive_seconds=5,
    )
    kwargs.update(overrides)
    return MQTTConfig(**kwargs)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def broker(tmp_path: Path):
    with Mosquitto(tmp_path / "broker") as b:
        yield b


@pytest.fixture
def make_ingest():
    made: list[MQTTIngest] = []

    def make(cfg: MQTTConfig, q: queue.Queue | None = None, *, rules=RULES, metrics=None, codec=None,
             start: bool = True, **kwargs) -> MQTTIngest:
        ingest = MQTTIngest(cfg, rules, codec or Codec(rules), q if q is not None else queue.Queue(1000),
                            metrics, **kwargs)
        made.append(ingest)
        if start:
            ingest.start()
        return ingest

    yield make
    for ingest in made:
        ingest.stop(2.0)


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory) -> dict[str, str]:
    return make_test_ca(tmp_path_factory.mktemp("pki"))


# --------------------------------------------------------------------------- pure


def test_topic_filter_turns_each_placeholder_level_into_a_single_level_wildcard():
    assert topic_filter("plant/{site}/{asset}/{channel}") == "plant/+/+/+"
    assert topic_filter("plant/dev-{id}/temp") == "plant/+/temp"
    assert topic_filter("fixed/topic") == "fixed/topic"
    rules = [TopicRule(template="a/{stream}/{channel}", qos=0), TopicRule(template="a/{x}/{stream}", channel="c", qos=1),
             TopicRule(template="b/{stream}/{channel}", qos=0)]
    assert subscriptions(rules) == [("a/+/+", 1), ("b/+/+", 0)]


# --------------------------------------------------------------------------- decoding and hand-off


def test_published_readings_of_every_format_are_decoded_and_queued(broker, make_ingest):
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    q: queue.Queue = queue.Queue(100)
    ingest = make_ingest(cfg_for(broker), q, metrics=metrics)
    wait_for(lambda: ingest.subscribed, what="subscription")
    assert sample(registry, "monitor_mqtt_connected") == 1.0
    before = time.monotonic()
    publish(broker, [
        ("sensors/p1/temp", b"21.5"),
        ("sensors/p1/rpm", b'{"value": 1480, "ts": 1700000000}'),
        ("sensors/p2/x", b'[{"value": 1, "channel": "a", "ts": 1700000001}, {"value": 2, "channel": "b"}]'),
    ])
    items = drain(q, 4)
    assert len(items) == 3  # one item per message
    readings = [r for item in items for r in item.readings]
    assert [(r.stream, r.channel, r.value) for r in readings] == [
        ("p1", "temp", 21.5), ("p1", "rpm", 1480.0), ("p2", "a", 1.0), ("p2", "b", 2.0)]
    assert readings[1].timestamp == 1700000000.0
    assert abs(readings[0].timestamp - time.time()) < 5  # bare number: receive time
    t0, readings0, rejected0, msg = items[0]  # the documented 4-tuple
    assert isinstance(msg, Delivery) and msg.topic == "sensors/p1/temp" and msg.payload == b"21.5"
    assert msg.qos == 1 and rejected0 == [] and msg.connection == 1
    assert msg.raw() == (msg.received_at, "sensors/p1/temp", b"21.5", 1, False)
    assert before <= t0 <= time.monotonic()
    assert sample(registry, "monitor_messages_received_total") == 3
    assert sample(registry, "monitor_readings_received_total") == 4


def test_bad_payloads_are_counted_by_reason_and_good_ones_around_them_arrive(broker, make_ingest):
    registry = CollectorRegistry()
    q: queue.Queue = queue.Queue(100)
    ingest = make_ingest(cfg_for(broker), q, metrics=Metrics(registry))
    wait_for(lambda: ingest.subscribed, what="subscription")
    publish(broker, [
        ("sensors/p1/temp", b"1.0"),
        ("sensors/p1/temp", b"not a number"),
        ("sensors/p1/temp", b"nan"),
        ("sensors/p1/temp", b'{"value": 1'),
        ("sensors/p1/temp", b'[{"value": 3}, {"value": "x"}, 7]'),  # one good, two bad elements
        ("sensors/p1/temp", b"2.0"),
    ])
    items = take(q, 6)  # one item per message, bad ones included
    assert [r.value for i in items for r in i.readings] == [1.0, 3.0, 2.0]
    assert [[r.reason for r in i.rejected] for i in items] == [
        [], ["malformed"], ["non_finite"], ["malformed"], ["malformed", "malformed"], []]
    # rejects of queued items are the consumer's to count (exactly once); the ingest counts messages
    assert sample(registry, "monitor_readings_rejected_total", reason="malformed") == 0
    assert sample(registry, "monitor_messages_received_total") == 6
    assert ingest.stats["rejected"] == 5
    assert ingest.connected and ingest.stats["callback_errors"] == 0


def test_a_full_queue_drops_and_counts_readings_without_blocking(broker, make_ingest):
    registry = CollectorRegistry()
    q: queue.Queue = queue.Queue(1)
    ingest = make_ingest(cfg_for(broker), q, metrics=Metrics(registry))
    wait_for(lambda: ingest.subscribed, what="subscription")
    payload = b'[{"value": 1, "channel": "a"}, {"value": 2, "channel": "b"}, {"value": "bad"}]'
    publish(broker, [("sensors/p1/x", payload)] * 4)
    wait_for(lambda: ingest.stats["messages"] == 4, what="all messages")
    assert q.qsize() == 1
    assert sample(registry, "monitor_drops_total", reason="queue_full") == 6  # 3 messages x 2 readings
    # a dropped message never reaches the consumer, so its rejects are counted here
    assert sample(registry, "monitor_readings_rejected_total", reason="malformed") == 3
    assert ingest.stats["dropped_messages"] == 3 and ingest.connected


def test_exceptions_in_codec_or_tap_are_counted_and_the_loop_keeps_running(broker, make_ingest):
    class FlakyCodec(Codec):
        calls = 0

        def decode(self, topic, payload, received_at):
            FlakyCodec.calls += 1
            if FlakyCodec.calls == 1:
                raise RuntimeError("boom")
            return super().decode(topic, payload, received_at)

    def bad_tap(raw):
        raise ValueError("tap broke")

    q: queue.Queue = queue.Queue(100)
    ingest = make_ingest(cfg_for(broker), q, codec=FlakyCodec(RULES), raw_tap=bad_tap)
    wait_for(lambda: ingest.subscribed, what="subscription")
    publish(broker, [("sensors/p1/t", b"1"), ("sensors/p1/t", b"2")])
    items = drain(q, 1)
    assert items[0].readings[0].value == 2.0
    assert ingest.stats["callback_errors"] == 1 and ingest.stats["tap_errors"] == 2
    publish(broker, [("sensors/p1/t", b"3")])
    assert drain(q, 1)[0].readings[0].value == 3.0  # the network thread survived
    assert ingest.client.is_connected() and ingest.connected


def test_raw_tap_sees_every_message_including_rejected_ones(broker, make_ingest):
    seen = []
    ingest = make_ingest(cfg_for(broker), raw_tap=seen.append)
    wait_for(lambda: ingest.subscribed, what="subscription")
    publish(broker, [("sensors/p1/t", b"1"), ("sensors/p1/t", b"junk")])
    wait_for(lambda: len(seen) == 2, what="tapped messages")
    assert [(m.topic, m.payload, m.qos) for m in seen] == [("sensors/p1/t", b"1", 1), ("sensors/p1/t", b"junk", 1)]


def test_publish_is_delivered(broker, make_ingest):
    rules = [TopicRule(template="out/{stream}/{channel}", qos=1)]
    q: queue.Queue = queue.Queue(10)
    ingest = make_ingest(cfg_for(broker), q, rules=rules)
    wait_for(lambda: ingest.subscribed, what="subscription")
    info = ingest.publish("out/s1/score", b"0.5", qos=1)
    info.wait_for_publish(5)
    assert drain(q, 1)[0].readings[0][:2] == ("s1", "score")


# --------------------------------------------------------------------------- connection life


def test_broker_restart_reconnects_and_resubscribes(broker, make_ingest):
    registry = CollectorRegistry()
    states: list[bool] = []
    q: queue.Queue = queue.Queue(100)
    # clean session: the restarted broker forgets the subscription, so only a resubscribe helps
    ingest = make_ingest(cfg_for(broker, clean_start=True), q, metrics=Metrics(registry),
                         on_state=lambda up, detail: states.append(up))
    wait_for(lambda: ingest.subscribed, what="subscription")
    broker.stop()
    wait_for(lambda: not ingest.connected, what="disconnect")
    assert sample(registry, "monitor_mqtt_connected") == 0
    assert "disconnected" in (ingest.last_error or "")
    broker.start()
    wait_for(lambda: ingest.subscribed, what="resubscription")
    publish(broker, [("sensors/p1/t", b"42")])
    assert drain(q, 1)[0].readings[0].value == 42.0
    assert states == [True, False, True]
    assert sample(registry, "monitor_mqtt_reconnects_total") == 1
    assert sample(registry, "monitor_mqtt_connected") == 1


def test_start_while_broker_is_down_connects_once_it_is_up(tmp_path, make_ingest):
    broker = Mosquitto(tmp_path / "broker")  # not started yet
    try:
        q: queue.Queue = queue.Queue(100)
        ingest = make_ingest(cfg_for(broker), q)
        wait_for(lambda: ingest.last_error is not None, what="a connect failure")
        assert not ingest.connected
        assert "refused" in ingest.last_error
        broker.start()
        wait_for(lambda: ingest.subscribed, what="subscription")
        publish(broker, [("sensors/p1/t", b"7")])
        assert drain(q, 1)[0].readings[0].value == 7.0
        assert ingest.last_error is None
    finally:
        broker.stop()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_persistent_session_delivers_messages_published_while_disconnected(broker, make_ingest, protocol):
    cfg = cfg_for(broker, clean_start=False, protocol=protocol, client_id=f"persistent-{protocol}")
    first = make_ingest(cfg)
    wait_for(lambda: first.subscribed, what="subscription")
    first.stop()
    publish(broker, [("sensors/p1/t", str(i).encode()) for i in range(5)])
    broker.stop()  # the queued messages survive a broker restart (persistence)
    broker.start()
    q: queue.Queue = queue.Queue(100)
    second = make_ingest(cfg, q)
    items = drain(q, 5)
    assert [r.value for i in items for r in i.readings] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert second.connected


def test_manual_ack_redelivers_an_unacked_message_and_not_an_acked_one(broker, make_ingest):
    cfg = cfg_for(broker, clean_start=False, client_id="manual-ack")
    q1: queue.Queue = queue.Queue(10)
    first = make_ingest(cfg, q1, manual_ack=True)
    wait_for(lambda: first.subscribed, what="subscription")
    publish(broker, [("sensors/p1/t", b"1")])
    assert drain(q1, 1)[0].readings[0].value == 1.0
    first.stop()  # crashed before handling: never acked

    q2: queue.Queue = queue.Queue(10)
    second = make_ingest(cfg, q2, manual_ack=True)
    _, readings, _, msg = drain(q2, 1)[0]
    assert readings[0].value == 1.0  # redelivered
    second.ack(msg)
    wait_for(lambda: second.subscribed, what="subscription")
    time.sleep(0.1)  # let the PUBACK leave
    second.stop()

    q3: queue.Queue = queue.Queue(10)
    third = make_ingest(cfg, q3, manual_ack=True)
    wait_for(lambda: third.subscribed, what="subscription")
    assert_nothing_arrives(q3)


def test_ack_many_acks_a_batch_and_leaves_the_rest_for_redelivery(broker, make_ingest):
    cfg = cfg_for(broker, clean_start=False, client_id="ack-many")
    q1: queue.Queue = queue.Queue(100)
    first = make_ingest(cfg, q1, manual_ack=True)
    wait_for(lambda: first.subscribed, what="subscription")
    publish(broker, [("sensors/p1/t", str(i).encode()) for i in range(6)])
    items = drain(q1, 6)
    first.ack_many(items[:2] + [items[3][3]])  # whole items and bare Deliveries; 2, 4, 5 not handled
    time.sleep(0.2)  # let the PUBACKs leave
    first.stop()

    q2: queue.Queue = queue.Queue(100)
    second = make_ingest(cfg, q2, manual_ack=True)
    again = drain(q2, 3)
    assert [r.value for i in again for r in i.readings] == [2.0, 4.0, 5.0]  # redelivered, in order
    second.ack_many(again)
    wait_for(lambda: second.subscribed, what="subscription")
    time.sleep(0.2)
    second.stop()

    q3: queue.Queue = queue.Queue(100)
    third = make_ingest(cfg, q3, manual_ack=True)
    wait_for(lambda: third.subscribed, what="subscription")
    assert_nothing_arrives(q3)
    assert third.stats["callback_errors"] == 0


def test_tls_with_the_test_ca_connects_and_receives(tmp_path, make_ingest, test_ca):
    tls = {"cafile": test_ca["ca"], "certfile": test_ca["server_cert"], "keyfile": test_ca["server_key"]}
    with Mosquitto(tmp_path / "broker", tls=tls) as broker:
        q: queue.Queue = queue.Queue(10)
        cfg = cfg_for(broker, port=broker.tls_port, tls=TLSConfig(enabled=True, ca_file=test_ca["ca"]))
        ingest = make_ingest(cfg, q)
        wait_for(lambda: ingest.subscribed, what="TLS subscription")
        assert ingest.client.socket().version().startswith("TLS")
        publish(broker, [("sensors/p1/t", b"5")])
        assert drain(q, 1)[0].readings[0].value == 5.0


def test_untrusted_server_certificate_is_refused_with_a_clear_error(tmp_path, make_ingest, test_ca, caplog):
    tls = {"cafile": test_ca["untrusted_ca"], "certfile": test_ca["untrusted_server_cert"],
           "keyfile": test_ca["untrusted_server_key"]}
    with Mosquitto(tmp_path / "broker", tls=tls) as broker:
        cfg = cfg_for(broker, port=broker.tls_port, tls=TLSConfig(enabled=True, ca_file=test_ca["ca"]))
        with caplog.at_level(logging.ERROR, logger="monitor.ingest.mqtt"):
            ingest = make_ingest(cfg)
            wait_for(lambda: ingest.last_error is not None, what="a TLS failure")
            time.sleep(0.3)  # a few retries: none may fall back to an insecure connection
        assert ingest.last_error.startswith("TLS certificate verification failed")
        assert "TLS certificate verification failed" in caplog.text
        assert "Client is not connected" not in caplog.text  # paho's per-retry noise is filtered
        assert not ingest.connected and not ingest.client.is_connected()
        assert ingest.stats["connections"] == 0
        assert "New client connected" not in broker.log()


def test_password_is_never_logged_nor_in_repr(tmp_path, make_ingest, caplog):
    secret = "s3cr3t-Pa55-word"
    password_file = write_password_file(tmp_path / "passwd", {"monitor": secret})
    with Mosquitto(tmp_path / "broker", password_file=password_file, allow_anonymous=False) as broker:
        caplog.set_level(logging.DEBUG)
        good = make_ingest(cfg_for(broker, username="monitor", password=secret))
        bad = make_ingest(cfg_for(broker, username="monitor", password=secret + "-wrong"))
        wait_for(lambda: good.subscribed, what="authenticated subscription")
        wait_for(lambda: bad.last_error is not None, what="auth refusal")
        assert not bad.connected and "refused by the broker" in bad.last_error
        assert "Sending CONNECT" in caplog.text  # paho's DEBUG log was captured
        for ingest in (good, bad):
            ingest.stop()
            assert secret not in repr(ingest)
        assert secret not in caplog.text
        assert "Pa55" not in caplog.text


def test_insecure_skip_verify_must_be_explicit_and_warns_loudly(tmp_path, make_ingest, test_ca, caplog):
    tls = {"cafile": test_ca["untrusted_ca"], "certfile": test_ca["untrusted_server_cert"],
           "keyfile": test_ca["untrusted_server_key"]}
    with Mosquitto(tmp_path / "broker", tls=tls) as broker:
        cfg = cfg_for(broker, port=broker.tls_port,
                      tls=TLSConfig(enabled=True, ca_file=test_ca["ca"], insecure_skip_verify=True))
        with caplog.at_level(logging.WARNING, logger="monitor.ingest.mqtt"):
            ingest = make_ingest(cfg)
        assert "NOT verified" in caplog.text
        wait_for(lambda: ingest.subscribed, what="insecure TLS subscription")


def test_tls_and_auth_mistakes_are_config_errors_naming_the_key(tmp_path):
    from monitor.config import ConfigError

    with pytest.raises(ConfigError) as err:
        MQTTIngest(MQTTConfig(tls=TLSConfig(enabled=True, ca_file=str(tmp_path / "missing.pem"))),
                   RULES, Codec(RULES), queue.Queue(1))
    assert err.value.key == "mqtt.tls.ca_file"
    with pytest.raises(ConfigError) as err:
        MQTTIngest(MQTTConfig(password="x"), RULES, Codec(RULES), queue.Queue(1))
    assert err.value.key == "mqtt.username"
    with pytest.raises(ConfigError) as err:
        MQTTIngest(MQTTConfig(client_id="", clean_start=False), RULES, Codec(RULES), queue.Queue(1))
    assert err.value.key == "mqtt.client_id"


def test_after_stop_intake_messages_stay_with_the_broker_for_the_next_session(broker, make_ingest):
    cfg = cfg_for(broker, clean_start=False, client_id="stop-intake")
    q1: queue.Queue = queue.Queue(10)
    first = make_ingest(cfg, q1, manual_ack=True)
    wait_for(lambda: first.subscribed, what="subscription")
    first.stop_intake()
    publish(broker, [("sensors/p1/t", b"8")])
    wait_for(lambda: first.stats["messages"] == 1, what="the message")
    assert q1.empty() and first.connected  # still connected: sinks may publish while draining
    first.publish("sensors/p1/t", b"9", qos=1).wait_for_publish(5)
    first.stop()

    q2: queue.Queue = queue.Queue(10)
    make_ingest(cfg, q2, manual_ack=True)
    assert sorted(r.value for i in drain(q2, 2) for r in i.readings) == [8.0, 9.0]


def test_stop_intake_with_automatic_acks_counts_shutdown_drops(broker, make_ingest):
    registry = CollectorRegistry()
    q: queue.Queue = queue.Queue(10)
    ingest = make_ingest(cfg_for(broker), q, metrics=Metrics(registry))
    wait_for(lambda: ingest.subscribed, what="subscription")
    ingest.stop_intake()
    publish(broker, [("sensors/p1/t", b"1")])
    wait_for(lambda: ingest.stats["messages"] == 1, what="the message")
    assert q.empty() and sample(registry, "monitor_drops_total", reason="shutdown") == 1
