"""Masked scoring through the daemon against a real Mosquitto: a channel in sensor fault
is scored from the others, so a stuck or out-of-range sensor gives its one ``kind:
sensor`` alert and no ``kind: anomaly`` alert of its own, while a process fault that
starts during the mask is still alerted and names the masked channel."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from monitor.app.service import Service
from monitor.core.synthetic import CHANNELS, Fault, pump
from tests.broker import mosquitto_binary
from tests.daemon_support import Publisher, Subscriber, daemon_config, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(mosquitto_binary() is None, reason="the mosquitto binary is not installed"),
]

ROWS = 900
PRESSURE, CURRENT = CHANNELS.index("pressure"), CHANNELS.index("current")


def rows(faults: list[Fault]):
    start = float(int(time.time()) - ROWS - 60)
    t, v, _ = pump(ROWS, seed=21, steps_per_hour=0, faults=faults, start_time=start)
    return t, v


def run_daemon(broker, models_dir, t: np.ndarray, v: np.ndarray, until) -> list[dict]:
    """Feed the rows through a real daemon; the alerts it published once `until(alerts)`."""
    cfg = daemon_config(broker.port, models_dir, sensors={"stale_seconds": 0, "ranges": {"current": [0.0, 20.0]}})
    svc = Service(cfg)
    svc.start()
    runner = threading.Thread(target=svc.run_forever, args=(False,))
    runner.start()
    alerts = Subscriber(broker.port, "monitor/alerts/#")
    pub = Publisher(broker.port)
    try:
        wait_until(lambda: svc.ready()[0], what="model loaded and connected")
        infos = []
        for i in range(len(t)):
            body = {"ts": float(t[i]), **{c: float(x) for c, x in zip(CHANNELS, v[i], strict=True)}}
            infos.append(pub.publish("plant/site1/pump1", json.dumps(body).encode()))
        for info in infos:
            info.wait_for_publish(10)
        wait_until(lambda: until(alerts.json()), what="the expected alerts")
        time.sleep(1.5)  # nothing more may come
        return alerts.json()
    finally:
        pub.close()
        alerts.close()
        svc.request_stop()
        runner.join(15)


def test_stuck_and_out_of_range_channels_give_sensor_alerts_only(broker, models_dir):
    t, v = rows([])
    v[300:420, PRESSURE] = v[300, PRESSURE]  # pressure frozen for two minutes
    v[600:680, CURRENT] += 40.0  # current reads an impossible 44 A or so for 80 s
    got = run_daemon(
        broker, models_dir, t, v, lambda a: sum(x.get("kind") == "sensor" and x["state"] == "resolved" for x in a) >= 2
    )
    sensor = sorted((a["cause"], a["channel"], a["state"]) for a in got if a["kind"] == "sensor")
    assert sensor == [
        ("out_of_range", "current", "firing"),
        ("out_of_range", "current", "resolved"),
        ("stuck", "pressure", "firing"),
        ("stuck", "pressure", "resolved"),
    ]
    assert [a for a in got if a["kind"] == "anomaly"] == []


def test_process_fault_during_a_mask_is_still_alerted(broker, models_dir):
    t, v = rows([Fault(450, 570, "cavitation")])  # flow and pressure collapse
    v[300:700, CURRENT] += 40.0  # current out of range from before the fault to after it
    got = run_daemon(
        broker, models_dir, t, v, lambda a: any(x["kind"] == "anomaly" and x["state"] == "resolved" for x in a)
    )
    anomaly = [a for a in got if a["kind"] == "anomaly"]
    assert [a["state"] for a in anomaly] == ["firing", "resolved"]
    firing = anomaly[0]
    assert 0 <= firing["started_at"] - t[450] < 60
    assert firing["masked"] == ["current"]
    assert "current" not in [c["channel"] for c in firing["top_channels"]]
    sensor = [(a["cause"], a["channel"], a["state"]) for a in got if a["kind"] == "sensor"]
    assert sensor == [("out_of_range", "current", "firing"), ("out_of_range", "current", "resolved")]
