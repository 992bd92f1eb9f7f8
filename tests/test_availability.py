"""Availability, per-stream state and Home Assistant discovery against a real Mosquitto.

The discovery checks follow Home Assistant's documented MQTT discovery schema,
https://www.home-assistant.io/integrations/mqtt/ ("MQTT Discovery": the topic
``<discovery_prefix>/<component>/[<node_id>/]<object_id>/config`` with ids of
``[a-zA-Z0-9_-]``, retained JSON configs, an empty retained payload removes the entity;
"Using availability topics": ``availability`` as a list of ``topic`` /
``payload_available`` / ``payload_not_available`` / ``value_template``), the MQTT
binary sensor and sensor pages (``state_topic``, ``value_template``, ``device_class``,
``expire_after``, ``unique_id``, ``device``) and the 2025.10 change that replaced
``object_id`` by ``default_entity_id``.
"""

from __future__ import annotations

import itertools
import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import jinja2
import paho.mqtt.client as mqtt
import pytest
import yaml
from broker import free_port, mosquitto_binary
from daemon_support import Publisher, daemon_config, feed_rows, http_get, wait_until

from monitor import __version__
from monitor.app.service import Service
from monitor.core.synthetic import CHANNELS
from monitor.io.homeassistant import stream_id

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(mosquitto_binary() is None, reason="the mosquitto binary is not installed"),
]
ROOT = Path(__file__).resolve().parents[1]
HA_ID = re.compile(r"[a-zA-Z0-9_-]+")
# keys HA's schema defines for these platforms (mqtt integration docs); every key we send must be one
HA_COMMON_KEYS = {
    "availability",
    "device",
    "origin",
    "qos",
    "state_topic",
    "unique_id",
    "default_entity_id",
    "name",
    "value_template",
    "expire_after",
    "json_attributes_topic",
    "entity_category",
    "device_class",
}
HA_SENSOR_KEYS = HA_COMMON_KEYS | {"state_class", "suggested_display_precision"}
HA_DEVICE_KEYS = {"identifiers", "name", "manufacturer", "model", "sw_version"}
HA_AVAILABILITY_KEYS = {"topic", "payload_available", "payload_not_available", "value_template"}


class Retained:
    """A real MQTT subscriber: the latest payload per topic (retained ones included)."""

    def __init__(self, port: int, topic: str):
        self.latest: dict[str, bytes] = {}
        self.history: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        done = threading.Event()
        self.client.on_subscribe = lambda *a, **k: done.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        assert done.wait(5)

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.latest[msg.topic] = msg.payload
            self.history.append((msg.topic, msg.payload, bool(msg.retain)))

    def get(self, topic: str) -> bytes | None:
        with self._lock:
            return self.latest.get(topic)

    def json(self, topic: str) -> dict | None:
        raw = self.get(topic)
        return json.loads(raw) if raw else None

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _conf(tmp_path: Path, cfg) -> Path:
    data = cfg.to_dict()
    data["mqtt"]["password"] = None
    path = tmp_path / "daemon.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _spawn(conf: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "run", "--config", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    wait_until(
        lambda: http_get(port, "/readyz")[0] == 200 if proc.poll() is None else True, timeout=60, what="daemon ready"
    )
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    return proc


def test_sigkill_makes_the_broker_publish_the_last_will_and_a_restart_publishes_online(broker, models_dir, tmp_path):
    cfg = daemon_config(broker.port, models_dir, metrics_port=free_port())
    conf = _conf(tmp_path, cfg)
    status = Retained(broker.port, "monitor/status")
    proc = _spawn(conf, cfg.metrics.port)
    try:
        wait_until(lambda: (status.json("monitor/status") or {}).get("state") == "online", what="birth message")
        birth = status.json("monitor/status")
        assert birth == {"state": "online", "version": __version__, "groups": ["default"]}
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        # the broker notices the dead connection (socket closed) and publishes the will
        wait_until(lambda: (status.json("monitor/status") or {}).get("state") == "offline", what="last will")
        # retained: a subscriber arriving later still reads offline
        late = Retained(broker.port, "monitor/status")
        wait_until(lambda: late.json("monitor/status") is not None, what="retained will")
        assert late.json("monitor/status")["state"] == "offline"
        late.close()
        proc = _spawn(conf, cfg.metrics.port)
        wait_until(lambda: (status.json("monitor/status") or {}).get("state") == "online", what="online again")
        # SIGTERM: a graceful stop publishes offline itself (a clean DISCONNECT sends no will)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        wait_until(lambda: (status.json("monitor/status") or {}).get("state") == "offline", what="graceful offline")
        states = [json.loads(p)["state"] for t, p, _ in status.history if t == "monitor/status" and p]
        assert states == ["online", "offline", "online", "offline"]
    finally:
        status.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _feed(port: int, rows: int = 200, fault=None):
    t, v, _ = feed_rows(rows, fault=fault)
    pub = Publisher(port)
    pub.publish_rows("plant/site1/pump1", t, v)
    pub.close()


def test_discovery_and_state_topics_follow_home_assistants_documented_schema(broker, models_dir, tmp_path):
    cfg = daemon_config(
        broker.port,
        models_dir,
        homeassistant={"enabled": True, "expire_after_seconds": 120, "state_file": str(tmp_path / "ha.json")},
        availability={"state_interval_seconds": 5},
    )
    run = Service(cfg)
    run.start()
    sub = Retained(broker.port, "#")
    try:
        wait_until(lambda: run.ingest.subscribed, what="daemon subscribed")
        _feed(broker.port)
        sid = stream_id("monitor", "site1/pump1")
        anomaly_topic = f"homeassistant/binary_sensor/monitor/{sid}_anomaly/config"
        wait_until(lambda: sub.get(anomaly_topic), what="discovery config")
        wait_until(lambda: sub.json("monitor/site1/pump1/state"), what="state message")
    finally:
        run.shutdown()
    # a fresh subscriber reads what a restarted Home Assistant reads: the retained messages
    sub.close()
    fresh = Retained(broker.port, "#")
    try:
        wait_until(lambda: fresh.get(anomaly_topic) and fresh.get("monitor/site1/pump1/state"), what="retained")
        configs = {t: json.loads(p) for t, p in fresh.latest.items() if t.startswith("homeassistant/") and p}
        assert len(configs) == 2 + len(CHANNELS)  # anomaly, score, one sensor-health entity per channel
        for topic, config in configs.items():
            prefix, component, node, object_id, last = topic.split("/")
            assert (prefix, node, last) == ("homeassistant", "monitor", "config")
            assert component in ("binary_sensor", "sensor") and HA_ID.fullmatch(object_id)
            allowed = HA_SENSOR_KEYS if component == "sensor" else HA_COMMON_KEYS
            assert set(config) <= allowed, set(config) - allowed
            assert config["unique_id"] == object_id and config["default_entity_id"].startswith(component + ".")
            assert config["state_topic"] == "monitor/site1/pump1/state"
            assert config["expire_after"] == 120
            assert set(config["device"]) <= HA_DEVICE_KEYS and config["device"]["identifiers"] == [sid]
            assert config["device"]["name"] == "site1/pump1"
            (avail,) = config["availability"]
            assert set(avail) == HA_AVAILABILITY_KEYS and avail["topic"] == "monitor/status"
            assert (avail["payload_available"], avail["payload_not_available"]) == ("online", "offline")
            assert config["origin"]["name"] == "monitor"
        anomaly = configs[anomaly_topic]
        assert anomaly["device_class"] == "problem" and anomaly["name"] == "Anomaly"
        score = configs[f"homeassistant/sensor/monitor/{sid}_score/config"]
        assert score["state_class"] == "measurement" and "device_class" not in score
        health = [c for t, c in configs.items() if "_sensor_" in t]
        assert sorted(c["name"] for c in health) == sorted(f"Sensor {ch}" for ch in CHANNELS)
        assert all(c["device_class"] == "problem" and c["entity_category"] == "diagnostic" for c in health)
        # the payloads the templates read: availability JSON and the stream state
        assert fresh.json("monitor/status")["state"] == "offline"  # graceful shutdown above
        state = fresh.json("monitor/site1/pump1/state")
        assert state["state"] == "ok" and state["anomaly"] is False and state["faults"] == {}
        assert isinstance(state["score"], float) and state["group"] == "default"
        # every retained message the daemon left is one of the kinds above
        assert set(fresh.latest) == set(configs) | {"monitor/status", "monitor/site1/pump1/state"}
    finally:
        fresh.close()


def test_state_is_rate_limited_and_a_retired_stream_loses_its_entities(broker, models_dir, tmp_path):
    state_file = tmp_path / "ha.json"
    cfg = daemon_config(
        broker.port,
        models_dir,
        homeassistant={"enabled": True, "retire_after_seconds": 3600, "state_file": str(state_file)},
        availability={"state_interval_seconds": 3600},
    )
    sub = Retained(broker.port, "#")
    run = Service(cfg)
    run.start()
    try:
        wait_until(lambda: run.ingest.subscribed, what="daemon subscribed")
        _feed(broker.port, rows=300)
        wait_until(lambda: run.runner.windows >= 300 - 16, what="all windows scored")
        time.sleep(0.5)
        states = [p for t, p, _ in sub.history if t == "monitor/site1/pump1/state"]
        assert len(states) == 1  # ~285 windows scored, one state message (the first); no change since
        assert json.loads(states[0])["state"] == "ok"
        announced = [t for t, p, _ in sub.history if t.startswith("homeassistant/") and p]
        assert len(announced) == len(set(announced)) == 2 + len(CHANNELS)  # once, when the stream appeared
    finally:
        run.shutdown()
    assert json.loads(state_file.read_text())["streams"]["site1/pump1"]["channels"] == list(CHANNELS)
    # a restart a while later: the stream is gone (its last-seen time is past retire_after)
    saved = json.loads(state_file.read_text())
    saved["streams"]["site1/pump1"]["last_seen"] -= 7200
    state_file.write_text(json.dumps(saved))
    run = Service(cfg)
    run.start()
    try:
        wait_until(lambda: run.ingest.subscribed, what="daemon subscribed")
        wait_until(lambda: not json.loads(state_file.read_text())["streams"], what="stream retired")
    finally:
        run.shutdown()
    fresh = Retained(broker.port, "#")
    try:
        wait_until(lambda: fresh.get("monitor/status"), what="status")
        time.sleep(0.5)  # retained messages arrive together after SUBACK
        assert not [t for t in fresh.latest if t.startswith("homeassistant/")]  # every config removed
        assert "monitor/site1/pump1/state" not in fresh.latest
        removed = [t for t, p, _ in sub.history if t.startswith("homeassistant/") and p == b""]
        assert len(removed) == 2 + len(CHANNELS)
    finally:
        fresh.close()
        sub.close()


def _render(template: str, payload: dict) -> str:
    """What Home Assistant does with a value_template: Jinja2 with ``value_json`` bound."""
    return jinja2.Environment().from_string(template).render(value_json=payload, value=json.dumps(payload))


def test_a_sensor_fault_changes_the_state_topic_and_its_channels_entity(broker, models_dir, tmp_path):
    cfg = daemon_config(
        broker.port,
        models_dir,
        sensors={"ranges": {"current": [0.0, 20.0]}},
        homeassistant={"enabled": True, "state_file": str(tmp_path / "ha.json")},
        availability={"state_interval_seconds": 3600},  # no heartbeat here: every message is a change
    )
    sub = Retained(broker.port, "#")
    run = Service(cfg)
    run.start()
    try:
        wait_until(lambda: run.ingest.subscribed, what="daemon subscribed")
        t, v, _ = feed_rows(300, fault=None)
        v[150:156, 2] = 50.0  # current (channel 2) out of its configured range for 6 rows
        pub = Publisher(broker.port)
        pub.publish_rows("plant/site1/pump1", t, v)
        pub.close()
        topic = "monitor/site1/pump1/state"

        def states() -> list[dict]:
            return [json.loads(p) for tp, p, _ in sub.history if tp == topic and p]

        wait_until(lambda: len(states()) >= 2 and states()[-1]["state"] == "ok", timeout=30, what="back to ok")
        time.sleep(0.5)
        got = states()
        # ok, then the fault; a 50 A spike may also fire the model's alarm (firing wins the summary
        # while both last); then ok again. Each message is a change: none repeats its predecessor.
        # (under load the first scored batch may already hold the spike: then the first message
        # is the fault itself)
        assert got[-1] == {**got[-1], "state": "ok", "faults": {}}
        fault = next(s for s in got if s["state"] == "sensor_fault")
        assert fault["faults"] == {"current": "out_of_range"} and fault["anomaly"] is False
        assert got[0]["state"] in ("ok", "sensor_fault")
        for s in got:
            assert s["anomaly"] == (s["state"] == "firing")
            assert s["state"] != "sensor_fault" or s["faults"]
        pairs = [(s["state"], tuple(s["faults"])) for s in got]
        assert all(x != y for x, y in itertools.pairwise(pairs))
        sid = stream_id("monitor", "site1/pump1")
        config = json.loads(sub.get(f"homeassistant/binary_sensor/monitor/{sid}_sensor_current/config"))
        other = json.loads(sub.get(f"homeassistant/binary_sensor/monitor/{sid}_sensor_flow/config"))
        anomaly = json.loads(sub.get(f"homeassistant/binary_sensor/monitor/{sid}_anomaly/config"))
        score = json.loads(sub.get(f"homeassistant/sensor/monitor/{sid}_score/config"))
        assert [_render(config["value_template"], s) for s in (fault, got[-1])] == ["ON", "OFF"]
        assert _render(other["value_template"], fault) == "OFF"
        assert _render(anomaly["value_template"], fault) == "OFF"
        assert float(_render(score["value_template"], got[-1])) == got[-1]["score"]
        status = json.loads(sub.get("monitor/status"))
        assert _render(anomaly["availability"][0]["value_template"], status) == "online"
    finally:
        run.shutdown()
        sub.close()
