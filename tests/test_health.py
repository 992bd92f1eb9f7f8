"""One liveness function for /healthz (Docker HEALTHCHECK, Kubernetes) and the systemd
watchdog: a real daemon whose paho thread dies fails /healthz, not only the watchdog."""

from __future__ import annotations

import pytest
from broker import Mosquitto, mosquitto_binary
from daemon_support import daemon_config, http_get, wait_until

from monitor.app.service import Service
from monitor.io import notify

pytestmark = pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed")


def test_healthz_fails_when_pahos_network_thread_stops_as_the_watchdog_does(tmp_path):
    with Mosquitto(tmp_path / "broker") as broker:
        service = Service(daemon_config(broker.port, tmp_path / "models"))  # no model: alive, not ready
        service.start()
        try:
            port = service.http.port
            wait_until(lambda: service.ingest.connected, what="connected")
            assert http_get(port, "/healthz")[0] == 200
            service.ingest.client.loop_stop()  # paho's network thread is gone
            status, body = http_get(port, "/healthz")
            assert status == 503 and "MQTT network thread is not running" in body
            tick = notify.make_systemd_tick(service)
            assert tick.problem() == "MQTT network thread is not running"  # the watchdog agrees
        finally:
            service.request_stop()
            service.shutdown()
