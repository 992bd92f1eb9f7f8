"""Shared pieces for the daemon tests: a small trained model, configs, a feed publisher."""

from __future__ import annotations

import json
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import yaml

from monitor.app.training import StreamData, train_bundle
from monitor.core.config import Config, load_config
from monitor.core.synthetic import CHANNELS, Fault, pump

MODEL_YAML = """
stream: {period_seconds: 1.0, max_gap_seconds: 5}
model: {architecture: dense, window_size: 16, hidden: [32], code_size: 6, epochs: 15, patience: 4, seed: 1}
calibration: {method: quantile, quantile: 0.999, factor: 1.5, holdout_fraction: 0.25}
"""

FAULT = (700, 820)  # rows of the test feed that carry a cavitation fault


def train_small_model(models_dir: Path) -> Path:
    cfg = config_from(load_yaml(MODEL_YAML))
    t, v, _ = pump(2400, seed=11, steps_per_hour=0)
    outcome = train_bundle([StreamData("site1/pump1", list(CHANNELS), t, v)], cfg, models_dir, write_plots=False)
    return outcome.bundle_path


def load_yaml(text: str) -> dict:
    return yaml.safe_load(text)


def config_from(raw: dict) -> Config:
    """Validate a config given as a dict, through the same loader as a YAML file."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        yaml.safe_dump(raw, fh)
    try:
        return load_config(fh.name, environ={})
    finally:
        Path(fh.name).unlink()


def daemon_config(broker_port: int, models_dir: Path, metrics_port: int = 0, **overrides) -> Config:
    raw = load_yaml(MODEL_YAML)
    raw.update(
        {
            "mqtt": {
                "host": "127.0.0.1",
                "port": broker_port,
                "client_id": "monitor-test",
                "clean_start": False,
                "session_expiry_seconds": 600,
                "reconnect_min_seconds": 0.1,
                "reconnect_max_seconds": 0.5,
                "max_payload_bytes": 65536,
            },
            "topics": [
                {"template": "plant/{site}/{asset}", "format": "json_multi", "stream": "{site}/{asset}"},
                {"template": "plant/{site}/{asset}/{channel}", "format": "auto", "stream": "{site}/{asset}"},
            ],
            "stream": {"channels": list(CHANNELS), "period_seconds": 1.0, "max_gap_seconds": 5, "max_streams": 50},
            "alarm": {"k": 3, "n": 5, "resolve_m": 10},
            "alerts": {"topic": "monitor/alerts/{stream}", "qos": 1},
            "metrics": {"address": "127.0.0.1", "port": metrics_port},
            "models": {"dir": str(models_dir), "poll_seconds": 0.2},
        }
    )
    for section, values in overrides.items():
        if isinstance(values, dict):
            raw.setdefault(section, {}).update(values)
        else:
            raw[section] = values
    return config_from(raw)


def feed_rows(n: int = 1000, seed: int = 21, fault: tuple[int, int] | None = FAULT, start_time: float | None = None):
    """Rows 1 s apart ending a minute ago (payload timestamps are data; the future is rejected)."""
    if start_time is None:
        start_time = float(int(time.time()) - n - 60)
    faults = [Fault(fault[0], fault[1], "cavitation")] if fault else []
    return pump(n, seed=seed, steps_per_hour=0, faults=faults, start_time=start_time)


def row_payload(t: float, values: np.ndarray, seq: int | None = None) -> bytes:
    body = {"ts": float(t), **{c: float(v) for c, v in zip(CHANNELS, values, strict=True)}}
    if seq is not None:
        body["seq_note"] = str(seq)  # strings are metadata for json_multi, not channels
    return json.dumps(body).encode()


class Subscriber:
    """Collects messages on a topic filter from a real broker."""

    def __init__(self, port: int, topic: str, client_id: str | None = None):
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or "")
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a, **k: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        assert subscribed.wait(5), "subscription not acknowledged"

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload))

    def json(self) -> list[dict]:
        with self._lock:
            return [json.loads(p) for _, p in self.messages]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Publisher:
    def __init__(self, port: int, client_id: str = "feed"):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, qos: int = 1):
        return self.client.publish(topic, payload, qos=qos)

    def publish_rows(self, topic: str, times, values, qos: int = 1) -> None:
        infos = [self.publish(topic, row_payload(t, v), qos) for t, v in zip(times, values, strict=True)]
        for info in infos:
            info.wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, OSError) as exc:  # not listening (yet)
        return 0, str(exc)


def metric_value(text: str, name: str, labels: dict | None = None) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    found = False
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        if metric != name:
            continue
        if labels and not all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            continue
        total += float(value)
        found = True
    return total if found else float("nan")
