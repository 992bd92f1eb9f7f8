"""Alerts go first (issue 13, item 4): integrator messages give way on a slow connection.

Under a stalled broker an alert used to wait behind every score message queued before it
(7.3 s in the fault matrix). The broker here is a real Mosquitto, stalled with SIGSTOP
so that nothing the client writes is read: the kernel's socket buffers fill, then the
client's own queue. The score messages go through `YieldingPublisher`, the alert through
the plain publish, as in the daemon (monitor/app/service.py).
"""

from __future__ import annotations

import signal
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from monitor.io.yielding import YieldingPublisher
from tests.broker import Mosquitto, mosquitto_binary

pytestmark = pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed")

SCORES = 40_000
PAYLOAD = b"x" * 1024  # 40 MB of scores: far more than loopback socket buffers hold


def _client(broker: Mosquitto, name: str) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name)
    c.connect(broker.host, broker.port)
    c.loop_start()
    return c


def _received_before_alert(broker: Mosquitto, yielding: bool) -> tuple[int, int, int]:
    """(score messages the subscriber got before the alert, scores accepted, scores shed)."""
    got: list[str] = []
    alert_seen = threading.Event()

    def on_message(_c, _u, msg):
        got.append(msg.topic)
        if msg.topic == "monitor/alerts":
            alert_seen.set()

    sub = _client(broker, "watcher")
    sub.on_message = on_message
    sub.subscribe([("monitor/scores/#", 0), ("monitor/alerts", 1)])
    pub = _client(broker, "daemon")
    time.sleep(0.5)  # both subscriptions in place
    shed: list[int] = []
    publish = YieldingPublisher(pub.publish, 256, on_shed=lambda: shed.append(1)) if yielding else pub.publish
    assert broker.proc is not None
    broker.proc.send_signal(signal.SIGSTOP)
    try:
        accepted = 0
        for i in range(SCORES):
            if publish(f"monitor/scores/s{i % 10}", PAYLOAD, 0, False) is not None:
                accepted += 1
        pub.publish("monitor/alerts", b'{"state": "firing"}', 1, False)
    finally:
        broker.proc.send_signal(signal.SIGCONT)
    assert alert_seen.wait(60), "the alert never arrived"
    before = got.index("monitor/alerts")
    for c in (pub, sub):
        c.loop_stop()
        c.disconnect()
    return before, accepted, len(shed)


def test_an_alert_is_not_queued_behind_the_score_backlog(tmp_path):
    with Mosquitto(tmp_path / "b1", extra_config="max_queued_messages 0\n") as broker:
        before, accepted, shed = _received_before_alert(broker, yielding=True)
    # Everything shed is counted; what was accepted was the kernel's buffers plus at most
    # 256 waiting in the client, so the alert had only those ahead of it.
    assert accepted + shed == SCORES and shed > SCORES // 2
    assert before <= accepted < SCORES // 4  # measured here: 1 321 ahead of the alert, 38 679 shed


def test_without_yielding_the_alert_waits_behind_every_score(tmp_path):
    """The baseline the first test improves on (what the daemon did before)."""
    with Mosquitto(tmp_path / "b2", extra_config="max_queued_messages 0\n") as broker:
        before, accepted, shed = _received_before_alert(broker, yielding=False)
    assert accepted == SCORES and shed == 0
    assert before > SCORES // 2  # the alert came after most of the backlog


class _Info:
    def __init__(self, published: bool = False, rc: int = 0):
        self.rc = rc
        self._published = published

    def is_published(self) -> bool:
        return self._published


def test_unsent_handles_age_out_so_a_lost_connection_cannot_shed_forever():
    now = [0.0]
    infos: list[_Info] = []

    def publish(topic, payload, qos, retain):
        infos.append(_Info())
        return infos[-1]

    y = YieldingPublisher(publish, 2, stale_seconds=30.0, clock=lambda: now[0])
    assert y("t", b"", 0, False) is not None and y("t", b"", 0, False) is not None
    assert y("t", b"", 0, False) is None and y.shed == 1  # two waiting: shed
    infos[0]._published = True
    assert y("t", b"", 0, False) is not None  # one written: room again
    now[0] = 31.0  # the rest were dropped with a connection: they age out
    assert y.unsent() == 0
    # a publish refused by the client (not connected) is not waited for
    y2 = YieldingPublisher(lambda *a: _Info(rc=4), 1)
    assert y2("t", b"", 0, False) is not None and y2("t", b"", 0, False) is not None and y2.shed == 0
