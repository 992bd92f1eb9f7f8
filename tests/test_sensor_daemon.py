"""Sensor faults through the daemon against a real Mosquitto: a stuck, a stale and an
out-of-range channel each give exactly one ``kind: sensor`` firing with the right cause
and channel; and the learned limits travel in the bundle under its hash check."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from monitor.app.service import Service
from monitor.core.config import Config
from monitor.core.model.bundle import BundleError, load_bundle
from monitor.core.model.registry import current_bundle_path
from monitor.core.synthetic import CHANNELS
from tests.broker import mosquitto_binary
from tests.daemon_support import (
    Publisher,
    Subscriber,
    daemon_config,
    feed_rows,
    http_get,
    metric_value,
    wait_until,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(mosquitto_binary() is None, reason="the mosquitto binary is not installed"),
]

ROWS = 1000
STUCK = (300, 400)  # pressure frozen
SPIKE = (600, 606)  # current reads 50 A (configured range 0..20)
SILENT_FROM = 800  # vibration stops reporting


def test_bundle_carries_learned_limits_under_its_hash(models_dir):
    bundle_dir = current_bundle_path(models_dir)
    assert bundle_dir is not None
    bundle = load_bundle(bundle_dir)
    assert bundle.sensor_limits is not None and bundle.sensor_limits.channels == list(CHANNELS)
    assert bundle.manifest.sensor_limits is not None
    assert all(f > 0 for f in bundle.sensor_limits.noise_floor)  # noisy channels: a floor each
    # an old bundle (no sensor_limits in its manifest) loads, with learned checks off
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    old = dict(manifest)
    old.pop("sensor_limits")
    (bundle_dir / "manifest.json").write_text(json.dumps(old))
    assert load_bundle(bundle_dir).sensor_limits is None
    # a changed sensor_limits.json is refused
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest))
    path = bundle_dir / "sensor_limits.json"
    path.write_bytes(path.read_bytes().replace(b'"window": 10', b'"window": 11'))
    with pytest.raises(BundleError, match=r"sensor_limits\.json: sha256 mismatch"):
        load_bundle(bundle_dir)


def sensor_config(port: int, models_dir) -> Config:
    return daemon_config(
        port,
        models_dir,
        sensors={"stale_seconds": 3.0, "ranges": {"current": [0.0, 20.0]}},
    )


def publish(pub: Publisher, t: float, values: np.ndarray, skip: str | None = None):
    body = {"ts": float(t), **{c: float(v) for c, v in zip(CHANNELS, values, strict=True) if c != skip}}
    return pub.publish("plant/site1/pump1", json.dumps(body).encode())


def test_stuck_stale_and_out_of_range_each_give_one_sensor_alert(broker, models_dir):
    svc = Service(sensor_config(broker.port, models_dir))
    svc.start()
    runner = threading.Thread(target=svc.run_forever, args=(False,))
    runner.start()
    alerts = Subscriber(broker.port, "monitor/alerts/#")
    pub = Publisher(broker.port)
    try:
        wait_until(lambda: svc.ready()[0], what="model loaded and connected")
        t, v, _ = feed_rows(ROWS + 80, fault=None)
        v[STUCK[0] : STUCK[1], 1] = v[STUCK[0], 1]
        v[SPIKE[0] : SPIKE[1], 2] = 50.0
        infos = [publish(pub, t[i], v[i], "vibration" if i >= SILENT_FROM else None) for i in range(ROWS)]
        for info in infos:
            info.wait_for_publish(10)
        for i in range(ROWS, ROWS + 80):  # the other channels keep reporting while vibration is silent
            publish(pub, t[i], v[i], "vibration").wait_for_publish(10)
            time.sleep(0.1)

        def sensor_alerts() -> list[dict]:
            return [a for a in alerts.json() if a.get("kind") == "sensor"]

        wait_until(lambda: len(sensor_alerts()) >= 5, what="the sensor alerts")
        time.sleep(1.0)  # nothing more may come
        got = sensor_alerts()
        firing = sorted((a["cause"], a["channel"]) for a in got if a["state"] == "firing")
        assert firing == [("out_of_range", "current"), ("stale", "vibration"), ("stuck", "pressure")]
        resolved = sorted((a["cause"], a["channel"]) for a in got if a["state"] == "resolved")
        assert resolved == [("out_of_range", "current"), ("stuck", "pressure")]
        by_cause = {a["cause"]: a for a in got if a["state"] == "firing"}
        assert 0 <= by_cause["stuck"]["started_at"] - t[STUCK[0]] < 15  # within 15 samples at 1 Hz
        assert by_cause["out_of_range"]["started_at"] == t[SPIKE[0]]
        assert by_cause["out_of_range"]["value"] == 50.0
        for a in got:
            assert a["stream"] == "site1/pump1" and a["group"] == "default"
        text = http_get(svc.http.port, "/metrics")[1]
        for cause in ("stuck", "stale", "out_of_range"):
            labels = {"kind": "sensor", "cause": cause, "state": "firing"}
            assert metric_value(text, "monitor_alert_causes_total", labels) == 1.0
        newest = metric_value(text, "monitor_stream_last_reading_timestamp_seconds", {"stream": "site1/pump1"})
        assert newest == t[ROWS + 79]
    finally:
        pub.close()
        alerts.close()
        svc.request_stop()
        runner.join(15)
    assert not runner.is_alive()
