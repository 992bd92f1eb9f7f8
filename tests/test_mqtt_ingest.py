"""MQTTIngest against a real Mosquitto on a free loopback port (never the system broker)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import itertools
import logging
import queue
import random
import socket
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt
import paho.mqtt.client as mqtt
import paho.mqtt.publish as mqtt_publish
import pytest
from broker import Mosquitto, make_test_ca, mosquitto_binary, write_password_file
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client import CollectorRegistry

from monitor.core.config import ConfigError, MQTTConfig, TLSConfig, TopicRule
from monitor.io import mqtt as mqtt_ingest
from monitor.io import mqtt_fast
from monitor.io.codec import Codec
from monitor.io.metrics import Metrics
from monitor.io.mqtt import Delivery, Ingested, MQTTIngest, subscriptions, topic_filter

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


def drain(q: queue.Queue[Ingested], n_readings: int, timeout: float = 5.0) -> list[Ingested]:
    """Items from `q` until they hold `n_readings` readings."""
    items: list[Ingested] = []
    deadline = time.monotonic() + timeout
    while sum(len(i.readings) for i in items) < n_readings:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            got = [r for i in items for r in i.readings]
            raise AssertionError(f"expected {n_readings} readings, got {len(got)}: {got}")
        with contextlib.suppress(queue.Empty):
            items.append(q.get(timeout=min(remaining, 0.1)))
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
        hostname=broker.host,
        port=broker.port,
        client_id=f"pub-{next(_ids)}",
    )


def cfg_for(broker: Mosquitto, **overrides: object) -> MQTTConfig:
    kwargs: dict = dict(
        host=broker.host,
        port=broker.port,
        client_id=f"monitor-test-{next(_ids)}",
        reconnect_min_seconds=0.05,
        reconnect_max_seconds=0.2,
        keepalive_seconds=5,
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

    def make(
        cfg: MQTTConfig,
        q: queue.Queue | None = None,
        *,
        rules=RULES,
        metrics=None,
        codec=None,
        start: bool = True,
        **kwargs,
    ) -> MQTTIngest:
        ingest = MQTTIngest(
            cfg, rules, codec or Codec(rules), q if q is not None else queue.Queue(1000), metrics, **kwargs
        )
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
    rules = [
        TopicRule(template="a/{stream}/{channel}", qos=0),
        TopicRule(template="a/{x}/{stream}", channel="c", qos=1),
        TopicRule(template="b/{stream}/{channel}", qos=0),
    ]
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
    publish(
        broker,
        [
            ("sensors/p1/temp", b"21.5"),
            ("sensors/p1/rpm", b'{"value": 1480, "ts": 1700000000}'),
            ("sensors/p2/x", b'[{"value": 1, "channel": "a", "ts": 1700000001}, {"value": 2, "channel": "b"}]'),
        ],
    )
    items = drain(q, 4)
    assert len(items) == 3  # one item per message
    readings = [r for item in items for r in item.readings]
    assert [(r.stream, r.channel, r.value) for r in readings] == [
        ("p1", "temp", 21.5),
        ("p1", "rpm", 1480.0),
        ("p2", "a", 1.0),
        ("p2", "b", 2.0),
    ]
    assert readings[1].timestamp == 1700000000.0
    assert abs(readings[0].timestamp - time.time()) < 5  # bare number: receive time
    t0, _readings0, rejected0, msg = items[0]  # the documented 4-tuple
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
    publish(
        broker,
        [
            ("sensors/p1/temp", b"1.0"),
            ("sensors/p1/temp", b"not a number"),
            ("sensors/p1/temp", b"nan"),
            ("sensors/p1/temp", b'{"value": 1'),
            ("sensors/p1/temp", b'[{"value": 3}, {"value": "x"}, 7]'),  # one good, two bad elements
            ("sensors/p1/temp", b"2.0"),
        ],
    )
    items = take(q, 6)  # one item per message, bad ones included
    assert [r.value for i in items for r in i.readings] == [1.0, 3.0, 2.0]
    assert [[r.reason for r in i.rejected] for i in items] == [
        [],
        ["malformed"],
        ["non_finite"],
        ["malformed"],
        ["malformed", "malformed"],
        [],
    ]
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
    ingest = make_ingest(
        cfg_for(broker, clean_start=True), q, metrics=Metrics(registry), on_state=lambda up, detail: states.append(up)
    )
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


def _ack_some_then_expect_redelivery_of_the_rest(broker, make_ingest, cfg, ack, expected_redelivered) -> list:
    """Six QoS 1 messages on a persistent session; `ack(first, items)` acks some. After a
    reconnect exactly the unacked ones come back, in order; once acked, nothing more.
    Returns the three ingests for further checks."""
    q1: queue.Queue = queue.Queue(100)
    first = make_ingest(cfg, q1, manual_ack=True)
    wait_for(lambda: first.subscribed, what="subscription")
    publish(broker, [("sensors/p1/t", str(i).encode()) for i in range(6)])
    ack(first, drain(q1, 6))
    time.sleep(0.2)  # let the PUBACKs leave
    first.stop()

    q2: queue.Queue = queue.Queue(100)
    second = make_ingest(cfg, q2, manual_ack=True)
    again = drain(q2, len(expected_redelivered))
    assert [r.value for i in again for r in i.readings] == expected_redelivered  # redelivered, in order
    second.ack_many(again)
    wait_for(lambda: second.subscribed, what="subscription")
    time.sleep(0.2)
    second.stop()

    q3: queue.Queue = queue.Queue(100)
    third = make_ingest(cfg, q3, manual_ack=True)
    wait_for(lambda: third.subscribed, what="subscription")
    assert_nothing_arrives(q3)
    return [first, second, third]


def test_ack_many_acks_a_batch_and_leaves_the_rest_for_redelivery(broker, make_ingest):
    cfg = cfg_for(broker, clean_start=False, client_id="ack-many")
    # whole items and bare Deliveries; 2, 4, 5 not handled
    ingests = _ack_some_then_expect_redelivery_of_the_rest(
        broker, make_ingest, cfg, lambda ing, items: ing.ack_many([*items[:2], items[3][3]]), [2.0, 4.0, 5.0]
    )
    assert ingests[2].stats["callback_errors"] == 0


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
    tls = {
        "cafile": test_ca["untrusted_ca"],
        "certfile": test_ca["untrusted_server_cert"],
        "keyfile": test_ca["untrusted_server_key"],
    }
    with Mosquitto(tmp_path / "broker", tls=tls) as broker:
        cfg = cfg_for(broker, port=broker.tls_port, tls=TLSConfig(enabled=True, ca_file=test_ca["ca"]))
        with caplog.at_level(logging.ERROR, logger="monitor.io.mqtt"):
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
    tls = {
        "cafile": test_ca["untrusted_ca"],
        "certfile": test_ca["untrusted_server_cert"],
        "keyfile": test_ca["untrusted_server_key"],
    }
    with Mosquitto(tmp_path / "broker", tls=tls) as broker:
        cfg = cfg_for(
            broker, port=broker.tls_port, tls=TLSConfig(enabled=True, ca_file=test_ca["ca"], insecure_skip_verify=True)
        )
        with caplog.at_level(logging.WARNING, logger="monitor.io.mqtt"):
            ingest = make_ingest(cfg)
        assert "NOT verified" in caplog.text
        wait_for(lambda: ingest.subscribed, what="insecure TLS subscription")


def test_tls_and_auth_mistakes_are_config_errors_naming_the_key(tmp_path):
    with pytest.raises(ConfigError) as err:
        MQTTIngest(
            MQTTConfig(tls=TLSConfig(enabled=True, ca_file=str(tmp_path / "missing.pem"))),
            RULES,
            Codec(RULES),
            queue.Queue(1),
        )
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


# --------------------------------------------------------------------------- PUBLISH fast path


def _publish_packet(
    topic: bytes,
    payload: bytes,
    qos: int = 0,
    mid: int = 0,
    retain: bool = False,
    dup: bool = False,
    props: bytes | None = None,
) -> tuple[int, bytearray]:
    """(fixed-header byte, variable header + payload) of a PUBLISH as paho's reader holds it."""
    header = 0x30 | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)
    body = len(topic).to_bytes(2, "big") + topic
    if qos:
        body += mid.to_bytes(2, "big")
    if props is not None:
        body += props
    return header, bytearray(body + payload)


def _user_props() -> bytes:
    p = Properties(PacketTypes.PUBLISH)
    p.UserProperty = [("k", "v")]
    return p.pack()


def _alias_props(alias: int) -> bytes:
    p = Properties(PacketTypes.PUBLISH)
    p.TopicAlias = alias
    return p.pack()


def _run_publish(client: mqtt.Client, header: int, body: bytearray) -> tuple:
    """Feed one PUBLISH to `client._handle_publish`: (what the callback saw, rc or exception, packets queued)."""
    seen: list = []

    def on_message(c, userdata, msg):
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = msg._topic
        seen.append((topic, msg.payload, type(msg.payload), msg.qos, msg.retain, msg.mid, msg.dup))

    client.on_message = on_message
    if isinstance(client, mqtt_fast._FastClient):
        client._fast_handler = client.on_message
    client._in_packet = {
        "command": header,
        "have_remaining": 1,
        "remaining_count": [],
        "remaining_mult": 1,
        "remaining_length": len(body),
        "packet": bytearray(body),
        "to_process": 0,
        "pos": 0,
    }
    try:
        rc: object = client._handle_publish()
    except Exception as exc:
        rc = type(exc)
    out = [(p["command"], bytes(p["packet"])) for p in client._out_packet]
    return seen, rc, out, dict(client._in_messages)


PACKETS_BOTH = [  # (name, header/body, takes the fast path)
    ("qos0", _publish_packet(b"sensors/p1/t", b"21.5"), True),
    ("qos1", _publish_packet(b"sensors/p1/t", b"21.5", qos=1, mid=7), True),
    ("qos1 retained dup", _publish_packet(b"sensors/p1/t", b"1", qos=1, mid=65535, retain=True, dup=True), True),
    ("qos0 retained", _publish_packet(b"sensors/p1/t", b"1", retain=True), True),
    ("empty payload", _publish_packet(b"sensors/p1/t", b"", qos=1, mid=3), True),
    ("binary payload", _publish_packet(b"sensors/p1/t", bytes(range(256)) * 3, qos=1, mid=300), True),
    ("utf-8 topic", _publish_packet("sensors/pümpe/t".encode(), b"\x00\xff", qos=0), True),
    ("qos2", _publish_packet(b"sensors/p1/t", b"2", qos=2, mid=9), False),
    ("qos3", _publish_packet(b"sensors/p1/t", b"2", qos=3, mid=9), False),
    ("mid 0", _publish_packet(b"sensors/p1/t", b"2", qos=1, mid=0), False),
    ("invalid utf-8 topic", _publish_packet(b"sensors/\xff/t", b"2", qos=1, mid=4), False),
    ("empty topic", _publish_packet(b"", b"2", qos=1, mid=5), False),
    ("truncated", (0x32, bytearray(b"\x00\x0csensors/p1/t\x00")), False),
    ("topic longer than packet", (0x30, bytearray(b"\x00\x40sensors")), False),
    ("one byte", (0x30, bytearray(b"\x00")), False),
]


@pytest.mark.parametrize("manual_ack", [False, True], ids=["auto-ack", "manual-ack"])
@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["3.1.1", "5"])
def test_fast_publish_path_matches_paho_packet_for_packet(monkeypatch, protocol, manual_ack):
    """Same callback arguments, return code or exception, PUBACK/PUBREC and stored QoS 2 state as
    paho's own `_handle_publish`, for the fast-path packets and for every fallback."""
    assert mqtt_fast._fast_publish_supported()[0]
    fallbacks: list[int] = []
    paho_handle = mqtt_fast._paho_handle_publish
    monkeypatch.setattr(mqtt_fast, "_paho_handle_publish", lambda c: fallbacks.append(1) or paho_handle(c))
    packets = list(PACKETS_BOTH)
    if protocol == mqtt.MQTTv5:
        empty = b"\x00"  # MQTT 5: every PUBLISH has a property length
        packets = [(name, (h, _with_props(h, b, empty)), fast) for name, (h, b), fast in packets if fast]
        packets += [
            ("qos2", _publish_packet(b"sensors/p1/t", b"2", qos=2, mid=9, props=empty), False),
            ("user properties", _publish_packet(b"sensors/p1/t", b"1", qos=1, mid=8, props=_user_props()), False),
            ("topic alias", _publish_packet(b"sensors/p1/t", b"1", qos=0, props=_alias_props(3)), False),
            ("alias, empty topic", _publish_packet(b"", b"1", qos=1, mid=2, props=_alias_props(3)), False),
            ("no property length", _publish_packet(b"sensors/p1/t", b"", qos=1, mid=2), False),
        ]
    kwargs = {"callback_api_version": CallbackAPIVersion.VERSION2, "protocol": protocol, "manual_ack": manual_ack}
    for name, (header, body), fast in packets:
        fallbacks.clear()
        got = _run_publish(mqtt_fast._FastClient(**kwargs), header, body)
        assert fallbacks == ([] if fast else [1]), name
        want = _run_publish(mqtt.Client(**kwargs), header, body)
        assert got[:2] == want[:2] and got[2] == want[2], name
        assert got[3].keys() == want[3].keys(), name  # QoS 2 waits for PUBREL in paho's state
        if fast:
            assert len(got[0]) == 1 and got[0][0][2] is bytes, name
            assert got[2] == (
                []
                if manual_ack or header & 0x06 == 0
                else [(mqtt.PUBACK, b"\x40\x02" + got[0][0][5].to_bytes(2, "big"))]
            ), name


def _with_props(header: int, body: bytearray, props: bytes) -> bytearray:
    """`body` (an MQTT 3.1.1 PUBLISH) with an MQTT 5 property block inserted before the payload."""
    end = 2 + int.from_bytes(body[:2], "big") + (2 if header & 0x06 else 0)
    return bytearray(body[:end] + props + body[end:])


def test_fast_publish_path_falls_back_while_paho_debug_logging_or_filtered_callbacks_are_on(monkeypatch):
    fallbacks: list[int] = []
    paho_handle = mqtt_fast._paho_handle_publish
    monkeypatch.setattr(mqtt_fast, "_paho_handle_publish", lambda c: fallbacks.append(1) or paho_handle(c))
    header, body = _publish_packet(b"sensors/p1/t", b"1", qos=1, mid=1)
    kwargs = {"callback_api_version": CallbackAPIVersion.VERSION2, "protocol": mqtt.MQTTv311}

    client = mqtt_fast._FastClient(**kwargs)
    logger = logging.getLogger("test.fastpath.paho")
    logger.setLevel(logging.DEBUG)
    client.enable_logger(logger)
    _run_publish(client, header, body)
    assert fallbacks == [1]  # paho's "Received PUBLISH" debug line still appears
    logger.setLevel(logging.INFO)
    fallbacks.clear()
    _run_publish(client, header, body)
    assert fallbacks == []

    client.message_callback_add("sensors/#", lambda *a: None)
    _run_publish(client, header, body)
    assert fallbacks == [1]
    client.message_callback_remove("sensors/#")
    fallbacks.clear()
    _run_publish(client, header, body)
    assert fallbacks == []

    client.on_log = lambda *a: None
    _run_publish(client, header, body)
    assert fallbacks == [1]


def test_the_verified_paho_list_is_explicit_and_exact():
    assert mqtt_fast._VERIFIED_PAHO == ("2.2.0",)
    assert importlib.metadata.version("paho-mqtt") == paho.mqtt.__version__  # what the guard reads is the install


@pytest.mark.parametrize("version", mqtt_fast._VERIFIED_PAHO)
def test_fast_publish_path_is_used_with_each_verified_paho(monkeypatch, caplog, version):
    caplog.set_level(logging.DEBUG, logger="monitor.io.mqtt")
    monkeypatch.setattr(paho.mqtt, "__version__", version)
    ingest = MQTTIngest(MQTTConfig(client_id="guard"), RULES, Codec(RULES), queue.Queue(1))
    assert type(ingest.client) is mqtt_fast._FastClient
    assert ingest.client._fast_handler is ingest.client.on_message
    assert f"incoming PUBLISH via the fast path (paho-mqtt {version})" in caplog.text


# neighbours of 2.2.0 (patch, minor, pre/post releases, a truncated version), other majors, none
@pytest.mark.parametrize(
    "version", ["2.2.1", "2.1.0", "2.3.0", "2.2", "2.2.0rc1", "2.2.0.post1", "2.2.0 ", "1.6.1", "3.0.0", "", None]
)
def test_fast_publish_path_is_only_used_with_a_paho_it_was_verified_against(monkeypatch, caplog, version):
    caplog.set_level(logging.DEBUG, logger="monitor.io.mqtt")
    if version is None:
        monkeypatch.delattr(paho.mqtt, "__version__")
    else:
        monkeypatch.setattr(paho.mqtt, "__version__", version)
    ingest = MQTTIngest(MQTTConfig(client_id="guard"), RULES, Codec(RULES), queue.Queue(1))
    assert type(ingest.client) is mqtt.Client
    shown = repr(version or "")
    assert f"incoming PUBLISH via plain paho (paho-mqtt {shown} is not a verified version (2.2.0))" in caplog.text


def test_fast_publish_path_is_refused_when_paho_internals_differ_even_on_a_verified_version(monkeypatch):
    cfg = MQTTConfig(client_id="guard")
    assert paho.mqtt.__version__ in mqtt_fast._VERIFIED_PAHO
    monkeypatch.setattr(mqtt.Client, "_send_puback", lambda self, mid, extra: None)
    assert type(MQTTIngest(cfg, RULES, Codec(RULES), queue.Queue(1)).client) is mqtt.Client
    monkeypatch.undo()

    monkeypatch.setattr(mqtt_ingest, "_fast_client_ok", lambda client: (False, "missing '_in_packet'"))
    assert type(MQTTIngest(cfg, RULES, Codec(RULES), queue.Queue(1)).client) is mqtt.Client


def _publisher(broker: Mosquitto) -> mqtt.Client:
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub5-{next(_ids)}", protocol=mqtt.MQTTv5)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    return pub


def _publish5(pub: mqtt.Client, msgs: list[tuple[str, bytes, int, bool, bool]]) -> None:
    """(topic, payload, qos, retain, with user properties), one after the other."""
    for topic, payload, qos, retain, user_props in msgs:
        props = None
        if user_props:
            props = Properties(PacketTypes.PUBLISH)
            props.UserProperty = [("origin", "test"), ("unit", "°C")]
        pub.publish(topic, payload, qos=qos, retain=retain, properties=props).wait_for_publish(5)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_fast_path_and_paho_deliver_the_same_messages(broker, make_ingest, monkeypatch, protocol):
    fallbacks: list[int] = []
    paho_handle = mqtt_fast._paho_handle_publish
    monkeypatch.setattr(mqtt_fast, "_paho_handle_publish", lambda c: fallbacks.append(1) or paho_handle(c))
    pub = _publisher(broker)
    try:
        _publish5(pub, [("sensors/r/t", b"retained 1", 1, True, False), ("sensors/r0/t", b"5", 0, True, False)])
        taps: dict[str, list] = {"fast": [], "paho": []}
        ingests = {}
        for path in ("fast", "paho"):
            monkeypatch.setattr(mqtt_fast, "_FAST_PUBLISH", path == "fast")
            ingests[path] = make_ingest(cfg_for(broker, protocol=protocol), raw_tap=taps[path].append)
        monkeypatch.setattr(mqtt_fast, "_FAST_PUBLISH", True)
        assert type(ingests["fast"].client) is mqtt_fast._FastClient
        assert type(ingests["paho"].client) is mqtt.Client
        for ingest in ingests.values():
            wait_for(lambda ingest=ingest: ingest.subscribed, what="subscription")
        sent = [
            ("sensors/p1/t", b"1.5", 1, False, False),
            ("sensors/p1/t", b"2.5", 0, False, False),
            ("sensors/p2/t", b"", 1, False, False),
            ("sensors/p2/t", b"", 0, False, False),
            ("sensors/p3/t", bytes(range(256)), 1, False, False),
            ("sensors/p3/t", b"\x00\xff\x00", 0, False, False),
            ("sensors/p4/t", b"3.5", 1, False, True),  # user properties
            ("sensors/p4/t", b"4.5", 0, False, True),
            ("sensors/pümpe/t", "ü".encode() * 1000, 1, False, False),
            ("sensors/r/t", b"retained 2", 1, True, False),  # to existing subscribers: retain False
            ("sensors/p5/t", b"x" * 70000, 1, False, False),
        ]
        _publish5(pub, sent)
        n = len(sent) + 2
        wait_for(lambda: len(taps["fast"]) >= n and len(taps["paho"]) >= n, what="all messages")
        time.sleep(0.2)
    finally:
        pub.loop_stop()
        pub.disconnect()
    fast = [m[1:] for m in taps["fast"]]
    assert fast == [m[1:] for m in taps["paho"]]
    assert sorted(fast[:2]) == [("sensors/r/t", b"retained 1", 1, True), ("sensors/r0/t", b"5", 0, True)]
    assert fast[2:] == [(t, p, q, False) for t, p, q, _, _ in sent]
    assert all(type(m.payload) is bytes for m in taps["fast"])
    # only the two messages with user properties (MQTT 5) went through paho's own decoding
    assert len(fallbacks) == (2 if protocol == "5" else 0)
    for ingest in ingests.values():
        assert ingest.stats["callback_errors"] == 0 and ingest.stats["messages"] == n


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_fast_path_manual_acks_redeliver_only_the_unacked_messages(broker, make_ingest, monkeypatch, protocol):
    fallbacks: list[int] = []
    paho_handle = mqtt_fast._paho_handle_publish
    monkeypatch.setattr(mqtt_fast, "_paho_handle_publish", lambda c: fallbacks.append(1) or paho_handle(c))
    cfg = cfg_for(broker, clean_start=False, protocol=protocol, client_id=f"fast-manual-{protocol}")

    def ack(first, items):
        assert type(first.client) is mqtt_fast._FastClient
        first.ack_many([items[0], items[2], items[5]])

    _ack_some_then_expect_redelivery_of_the_rest(broker, make_ingest, cfg, ack, [1.0, 3.0, 4.0])
    assert fallbacks == []


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_fast_path_automatic_acks_ack_every_qos1_message(broker, make_ingest, monkeypatch, protocol):
    fallbacks: list[int] = []
    paho_handle = mqtt_fast._paho_handle_publish
    monkeypatch.setattr(mqtt_fast, "_paho_handle_publish", lambda c: fallbacks.append(1) or paho_handle(c))
    cfg = cfg_for(broker, clean_start=False, protocol=protocol, client_id=f"fast-auto-{protocol}")
    q1: queue.Queue = queue.Queue(100)
    first = make_ingest(cfg, q1)
    wait_for(lambda: first.subscribed, what="subscription")
    publish(broker, [("sensors/p1/t", str(i).encode()) for i in range(5)])
    assert [r.value for i in drain(q1, 5) for r in i.readings] == [0.0, 1.0, 2.0, 3.0, 4.0]
    time.sleep(0.2)
    first.stop()
    q2: queue.Queue = queue.Queue(100)
    second = make_ingest(cfg, q2)
    wait_for(lambda: second.subscribed, what="subscription")
    assert_nothing_arrives(q2)  # paho's PUBACKs after on_message: nothing redelivered
    assert fallbacks == []


# ---------------------------------------------------------------- buffered packet reads, batched PUBACKs


def _wire(header: int, body: bytes) -> bytes:
    """A whole packet as on the wire: fixed header, remaining length (1-4 bytes), body."""
    n, length = len(body), bytearray()
    while True:
        byte, n = n % 128, n // 128
        length.append(byte | (0x80 if n else 0))
        if not n:
            return bytes([header]) + bytes(length) + bytes(body)


def _reader(client: mqtt.Client) -> tuple[list, socket.socket]:
    """Give `client` one end of a socket pair as its connection; record every packet it
    hands to `_packet_handle` (command, body, remaining length)."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    client._sock = ours
    seen: list = []

    def handle():
        p = client._in_packet
        seen.append((p["command"], bytes(p["packet"]), p["remaining_length"]))
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    client._packet_handle = handle
    return seen, theirs


def _drain(client: mqtt.Client) -> list:
    """Call `_packet_read` until it has nothing more to read (as paho's loop does after select)."""
    codes = []
    while True:
        rc = client._packet_read()
        codes.append(rc)
        if rc != mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS:
            return codes


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_buffered_packet_reads_hand_paho_the_same_packets_whatever_the_chunking(seed):
    """Packets of every size (1- to 3-byte remaining lengths, one over the 64 KiB read size),
    sent in random chunks, some splitting a length field: the fast client hands
    `_packet_handle` exactly the packets, in order, that paho's own reader does."""
    rng = random.Random(seed)
    packets = [_wire(0xD0, b"")]  # PINGRESP: remaining length 0
    for i in range(300):
        size = rng.choice([0, 1, 30, 126, 127, 128, 300, 16_383, 16_384, 70_000]) if i % 25 == 0 else rng.randint(0, 60)
        header, body = _publish_packet(
            f"s/{i}".encode(),
            bytes(rng.getrandbits(8) for _ in range(size)) if size < 400 else bytes(size),
            qos=i % 2,
            mid=i + 1,
        )
        packets.append(_wire(header, body))
    stream = b"".join(packets)
    kwargs = {"callback_api_version": CallbackAPIVersion.VERSION2, "protocol": mqtt.MQTTv311}
    fast = mqtt_fast._FastClient(**kwargs)
    plain = mqtt.Client(**kwargs)
    got, fast_peer = _reader(fast)
    want, plain_peer = _reader(plain)
    pos = 0
    while pos < len(stream):
        step = rng.choice([1, 2, 3, 7, 50, 1000, 70_000])
        chunk = stream[pos : pos + step]
        pos += len(chunk)
        for peer, client in ((fast_peer, fast), (plain_peer, plain)):
            peer.sendall(chunk)
            _drain(client)
    assert len(want) == len(packets) and got == want
    assert len(fast._rbuf) == 0 and fast._in_packet["command"] == 0
    assert fast._last_bytes_received > 0


def test_buffered_read_errors_close_and_reconnect_like_paho():
    kwargs = {"callback_api_version": CallbackAPIVersion.VERSION2, "protocol": mqtt.MQTTv311}
    fast = mqtt_fast._FastClient(**kwargs)
    seen, peer = _reader(fast)
    assert fast._packet_read() == mqtt.MQTTErrorCode.MQTT_ERR_AGAIN  # nothing there yet
    peer.sendall(_wire(0x30, b"\x00\x01ab")[:4])  # half a packet: kept, nothing handed over
    assert _drain(fast)[-1] == mqtt.MQTTErrorCode.MQTT_ERR_AGAIN and seen == [] and len(fast._rbuf) == 4
    # a reconnect (a new socket) must not glue the old connection's bytes to the new one's
    seen, peer = _reader(fast)
    peer.sendall(_wire(0x30, b"\x00\x01xy"))
    _drain(fast)
    assert seen == [(0x30, b"\x00\x01xy", 4)]
    peer.sendall(b"\x30\xff\xff\xff\xff\x01")  # five remaining-length bytes: a protocol error, as paho
    assert fast._packet_read() == mqtt.MQTTErrorCode.MQTT_ERR_PROTOCOL
    seen, peer = _reader(fast)
    peer.close()  # the broker closed the connection
    assert fast._packet_read() == mqtt.MQTTErrorCode.MQTT_ERR_CONN_LOST
    plain = mqtt.Client(**kwargs)
    _reader(plain)[1].close()
    assert plain._packet_read() == mqtt.MQTTErrorCode.MQTT_ERR_CONN_LOST


def test_buffered_read_stops_at_an_error_from_a_packet_handler():
    fast = mqtt_fast._FastClient(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    seen, peer = _reader(fast)
    handle = fast._packet_handle

    def failing():
        handle()
        return mqtt.MQTTErrorCode.MQTT_ERR_PROTOCOL if len(seen) == 2 else mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    fast._packet_handle = failing
    peer.sendall(b"".join(_wire(0x30, b"\x00\x01" + bytes([65 + i])) for i in range(4)))
    assert fast._packet_read() == mqtt.MQTTErrorCode.MQTT_ERR_PROTOCOL
    assert [body for _, body, _ in seen] == [b"\x00\x01A", b"\x00\x01B"]  # nothing handled after the error


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["3.1.1", "5"])
def test_batched_pubacks_are_paho_pubacks_back_to_back_in_one_write(protocol):
    kwargs = {"callback_api_version": CallbackAPIVersion.VERSION2, "protocol": protocol, "manual_ack": True}
    mids = [1, 2, 255, 256, 40_000, 65_535]
    plain = mqtt.Client(**kwargs)
    codes = {plain.ack(mid, 1) for mid in mids}  # not connected: queued, and NO_CONN from the write
    fast = mqtt_fast._FastClient(**kwargs)
    assert {fast.ack_batch(mids)} == codes
    assert len(fast._out_packet) == 1 and len(plain._out_packet) == len(mids)
    assert bytes(fast._out_packet[0]["packet"]) == b"".join(bytes(p["packet"]) for p in plain._out_packet)
    assert fast.ack_batch([]) == mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS and len(fast._out_packet) == 1
    fast.ack_batch([9])
    assert bytes(fast._out_packet[-1]["packet"]) == b"\x40\x02\x00\x09"


def test_ack_many_skips_qos0_and_earlier_connections_and_acks_the_rest_in_one_write():
    ingest = MQTTIngest(MQTTConfig(client_id="acks"), RULES, Codec(RULES), queue.Queue(1), manual_ack=True)
    client = ingest.client
    assert type(client) is mqtt_fast._FastClient
    now = ingest._connection

    def delivery(mid, qos, connection):
        return Delivery(0.0, "t", b"1", qos, False, mid, connection)

    msgs = [delivery(1, 1, now), delivery(2, 0, now), delivery(3, 1, now - 1), delivery(4, 1, now)]
    msgs.append(Ingested(0.0, [], [], delivery(5, 1, now)))
    ingest.ack_many(msgs)
    assert [bytes(p["packet"]) for p in client._out_packet] == [b"\x40\x02\x00\x01\x40\x02\x00\x04\x40\x02\x00\x05"]


@pytest.mark.parametrize("manual_ack", [False, True], ids=["auto-ack", "manual-ack"])
@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["3.1.1", "5"])
def test_buffered_reads_deliver_the_messages_and_acks_paho_does(protocol, manual_ack):
    """PUBLISH packets taken straight from the read buffer (and the ones that fall back to
    paho: QoS 2, MQTT 5 properties, an empty topic) reach on_message with the same
    arguments, in the same order, and put the same PUBACK/PUBREC bytes on the wire as
    paho's own reader and handler, whatever the chunking."""
    rng = random.Random(7)
    v5 = protocol == mqtt.MQTTv5
    props = b"\x00" if v5 else None
    stream = []
    for i in range(400):
        kind = rng.random()
        if kind < 0.03:
            stream.append(_wire(0xD0, b""))  # PINGRESP
            continue
        qos = 2 if kind < 0.06 else (i % 2)
        topic = b"" if (kind < 0.08 and v5) else f"sensors/p{i % 7}/t".encode()
        p = _alias_props(3) if not topic else (_user_props() if v5 and kind < 0.12 else props)
        header, body = _publish_packet(
            topic,
            bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 90))),
            qos=qos,
            mid=i + 1,
            retain=kind > 0.95,
            props=p,
        )
        stream.append(_wire(header, body))
    data = b"".join(stream)
    kwargs = {"callback_api_version": CallbackAPIVersion.VERSION2, "protocol": protocol, "manual_ack": manual_ack}
    results = []
    for client in (mqtt_fast._FastClient(**kwargs), mqtt.Client(**kwargs)):
        seen: list = []

        def on_message(c, userdata, msg, seen=seen):
            seen.append((msg.topic, bytes(msg.payload), msg.qos, msg.retain, msg.mid, msg.dup))

        client.on_message = on_message
        handled: list = []
        if isinstance(client, mqtt_fast._FastClient):
            client._fast_handler = client.on_message
            assert client._fast_ok()
            handle = client._packet_handle
            client._packet_handle = lambda c=client, h=handle, out=handled: (
                out.append(c._in_packet["command"] & 0xF0) or h()
            )
        ours, peer = socket.socketpair()
        ours.setblocking(False)
        peer.settimeout(2)
        client._sock = ours
        pos = 0
        while pos < len(data):
            chunk = data[pos : pos + rng.choice([1, 5, 64, 700, 5000])]
            pos += len(chunk)
            peer.sendall(chunk)
            _drain(client)
        wire = b""
        peer.setblocking(False)
        try:
            while True:
                wire += peer.recv(65536)
        except BlockingIOError:
            pass
        results.append((seen, wire, handled))
    (fast_seen, fast_wire, handled), (paho_seen, paho_wire, _) = results
    publishes = sum(1 for p in stream if p[0] & 0xF0 == 0x30)
    assert 0 < handled.count(0x30) < 0.2 * publishes  # only the fallbacks went through paho's dispatch
    assert len(paho_seen) > 300 and fast_seen == paho_seen
    assert fast_wire == paho_wire and (manual_ack or len(paho_wire) > 400)
