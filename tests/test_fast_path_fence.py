"""The paho fast path, fenced: a config switch, an environment switch for CI's second run,
and a circuit breaker that falls back to plain paho for good (real Mosquitto)."""

from __future__ import annotations

import itertools
import os
import queue
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt
import paho.mqtt.client as mqtt
import paho.mqtt.publish as mqtt_publish
import pytest
from broker import Mosquitto, mosquitto_binary
from prometheus_client import CollectorRegistry

from monitor.core.config import MQTTConfig, TopicRule, load_config
from monitor.io import mqtt_fast
from monitor.io.codec import Codec
from monitor.io.metrics import Metrics
from monitor.io.mqtt import MQTTIngest

RULES = [TopicRule(template="sensors/{stream}/{channel}", format="auto", qos=1)]
_ids = itertools.count()
needs_broker = pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed")
verified = pytest.mark.skipif(not mqtt_fast._fast_publish_supported()[0], reason="fast path not available")


def wait_for(predicate: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


@verified
def test_fast_path_off_in_config_means_plain_paho():
    on = MQTTIngest(MQTTConfig(client_id="a"), RULES, Codec(RULES), queue.Queue(10))
    off = MQTTIngest(MQTTConfig(client_id="b", fast_path="off"), RULES, Codec(RULES), queue.Queue(10))
    assert on.fast_path and type(on.client) is mqtt_fast._FastClient
    assert not off.fast_path and type(off.client) is mqtt.Client
    assert load_config(None, environ={"MONITOR_MQTT__FAST_PATH": "off"}).mqtt.fast_path == "off"


def test_the_environment_switch_turns_the_fast_path_off_for_clients_built_in_code():
    code = "import monitor.io.mqtt_fast as m; print(m._FAST_PUBLISH, m._fast_publish_supported()[1])"
    env = {**os.environ, "MONITOR_MQTT__FAST_PATH": "off", "PYTHONPATH": os.getcwd()}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "disabled"]


@needs_broker
@verified
@pytest.mark.parametrize("where", ["_publish", "_buffered_read"])
def test_an_unexpected_exception_trips_the_breaker_to_plain_paho_and_loses_nothing(tmp_path, monkeypatch, where):
    real = getattr(mqtt_fast._FastClient, where)
    calls = []

    def broken(self, *args):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("paho internals changed under us")
        return real(self, *args)

    monkeypatch.setattr(mqtt_fast._FastClient, where, broken)
    registry = CollectorRegistry()
    with Mosquitto(tmp_path / "broker") as broker:
        cfg = MQTTConfig(
            host=broker.host,
            port=broker.port,
            client_id=f"fence-{next(_ids)}",
            clean_start=False,
            reconnect_min_seconds=0.05,
            reconnect_max_seconds=0.2,
        )
        q: queue.Queue = queue.Queue(10_000)
        ingest = MQTTIngest(cfg, RULES, Codec(RULES), q, Metrics(registry), manual_ack=True)
        ingest.start()
        try:
            wait_for(lambda: ingest.subscribed, what="subscription")
            for k in range(30):  # one at a time: several reads, so the third call comes mid-stream
                mqtt_publish.single(f"sensors/p1/c{k}", str(k), qos=1, hostname=broker.host, port=broker.port)
            seen: dict[str, int] = {}
            deadline = time.monotonic() + 15
            while len(seen) < 30 and time.monotonic() < deadline:
                try:
                    item = q.get(timeout=0.1)
                except queue.Empty:
                    continue
                seen[item.message.topic] = seen.get(item.message.topic, 0) + 1
                ingest.ack(item)
            assert sorted(seen) == sorted(f"sensors/p1/c{k}" for k in range(30))  # none lost
            assert ingest.stats["fast_path_failures"] == 1
            assert registry.get_sample_value("monitor_mqtt_fast_path_failures_total") == 1
            assert not ingest.fast_path and len(calls) == 3  # plain paho ever since
        finally:
            ingest.stop(2.0)


def test_paho_is_capped_at_the_verified_range():
    """pyproject's paho-mqtt requirement admits every verified release and no later minor:
    a release the fast path was not read against is never installed by a plain `pip install`."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    Requirement = pytest.importorskip("packaging.requirements").Requirement
    Version = pytest.importorskip("packaging.version").Version

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    (req,) = [Requirement(d) for d in project["dependencies"] if Requirement(d).name == "paho-mqtt"]
    verified = [Version(v) for v in mqtt_fast._VERIFIED_PAHO]
    assert all(v in req.specifier for v in verified)
    newest = max(verified)
    assert Version(f"{newest.major}.{newest.minor + 1}.0") not in req.specifier
    assert Version(f"{newest.major + 1}.0.0") not in req.specifier
    assert paho.mqtt.__version__ in req.specifier  # the installed paho is inside the cap
