"""Client ids: one per role, and a takeover loop is named, backed off and counted
(two real clients on one real Mosquitto)."""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable

import pytest
from broker import Mosquitto, mosquitto_binary
from prometheus_client import CollectorRegistry

from monitor.app.cli import main
from monitor.core.config import ROLE_SUFFIXES, MQTTConfig, TopicRule
from monitor.io.codec import Codec
from monitor.io.metrics import Metrics
from monitor.io.mqtt import MQTTIngest

pytestmark = pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed")
RULES = [TopicRule()]


def wait_for(predicate: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def broker(tmp_path):
    with Mosquitto(tmp_path / "broker") as b:
        yield b


def test_every_role_has_its_own_client_id():
    cfg = MQTTConfig(client_id="plant-monitor")
    ids = {role: cfg.for_role(role).client_id for role in ROLE_SUFFIXES}
    assert ids == {
        "daemon": "plant-monitor",
        "record": "plant-monitor-record",
        "replay": "plant-monitor-replay",
        "retrain": "plant-monitor-retrain",
    }
    with pytest.raises(ValueError, match="unknown role"):
        cfg.for_role("shadow")


def test_two_clients_with_one_client_id_are_told_apart_counted_and_backed_off(broker, caplog):
    caplog.set_level(logging.WARNING, logger="monitor.io.mqtt")
    registries = [CollectorRegistry(), CollectorRegistry()]
    cfg = MQTTConfig(
        host=broker.host, port=broker.port, client_id="shared-id", reconnect_min_seconds=0.05, reconnect_max_seconds=0.2
    )
    ingests = [MQTTIngest(cfg, RULES, Codec(RULES), queue.Queue(10), Metrics(r)) for r in registries]
    for ingest in ingests:
        ingest.start()
    try:
        wait_for(lambda: any(i.stats["takeovers"] for i in ingests), what="a takeover loop detected")
        taken = next(i for i in ingests if i.stats["takeovers"])
        assert taken.stats["takeovers"] >= 3  # the streak that revealed the loop
        reg = registries[ingests.index(taken)]
        assert reg.get_sample_value("monitor_mqtt_takeovers_total") == taken.stats["takeovers"]
        assert "another client is using client id 'shared-id'" in caplog.text
        assert "another client is using client id 'shared-id'" in (taken.last_error or "")
        assert taken._takeover_backoff >= 1.0  # backing off, not reconnecting every 50 ms
    finally:
        for ingest in ingests:
            ingest.stop(2.0)


def test_monitor_record_with_the_daemons_config_does_not_take_its_session(broker, tmp_path):
    config = tmp_path / "monitor.yaml"
    config.write_text(f"mqtt:\n  host: {broker.host}\n  port: {broker.port}\n  client_id: plant\n")
    daemon_cfg = MQTTConfig(host=broker.host, port=broker.port, client_id="plant", reconnect_min_seconds=0.05)
    daemon = MQTTIngest(daemon_cfg, RULES, Codec(RULES), queue.Queue(10))
    daemon.start()
    try:
        wait_for(lambda: daemon.subscribed, what="daemon subscribed")
        # (on this thread: record installs signal handlers; the daemon's client runs on paho's)
        assert main(["record", "--config", str(config), "--out", str(tmp_path / "rec"), "--duration", "1.5"]) == 0
        assert "plant-record" in broker.log() and daemon.stats["connections"] == 1  # never taken over
        assert daemon.connected and daemon.stats["takeovers"] == 0
    finally:
        daemon.stop(2.0)
