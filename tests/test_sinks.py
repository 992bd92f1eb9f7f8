"""Alert sinks against real peers: Alertmanager's v2 API (the Debian binary), MQTT JSON."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
import urllib.request

import numpy as np
import pytest
from broker import free_port
from daemon_support import wait_until

from monitor.core.types import Alert
from monitor.io.sinks import AlertmanagerSink, LogSink, MemorySink, alert_json

AM = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def make_alert(state: str, ended: float | None = None) -> Alert:
    now = time.time()
    return Alert(
        "abc123",
        "site1/pump1",
        state,
        now - 30,
        ended,
        4.2,
        3.1 if state == "firing" else 0.4,
        0.05,
        "v1",
        [{"channel": "flow", "score": 3.0, "observed": 80.0, "reconstructed": 104.0}],
    )


def test_alert_json_carries_the_contract_fields():
    body = json.loads(alert_json(make_alert("firing")))
    assert set(body) == {
        "alert_id",
        "stream",
        "state",
        "started_at",
        "ended_at",
        "peak_score",
        "current_score",
        "threshold",
        "model_version",
        "top_channels",
        "group",
        "kind",
    }
    assert body["kind"] == "anomaly"
    assert body["group"] == "default"  # the implicit group of a config without `groups:`
    assert body["kind"] == "anomaly"  # a regime_change event also carries "detail"
    assert body["top_channels"][0] == {"channel": "flow", "score": 3.0, "observed": 80.0, "reconstructed": 104.0}


def test_log_sink_writes_one_structured_record_per_change(caplog):
    caplog.set_level(logging.INFO, logger="monitor.alerts")
    LogSink().send(make_alert("firing"))
    (rec,) = caplog.records
    assert rec.levelname == "WARNING" and rec.alert["stream"] == "site1/pump1"


@pytest.mark.skipif(AM is None, reason="alertmanager is not installed (apt-get install prometheus-alertmanager)")
def test_alertmanager_sink_posts_firing_then_resolved_to_a_real_alertmanager(tmp_path):
    port = free_port()
    conf = tmp_path / "am.yml"
    conf.write_text("route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n")
    proc = subprocess.Popen(
        [
            AM,
            f"--config.file={conf}",
            f"--storage.path={tmp_path}/data",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"

    def alerts():
        try:
            with urllib.request.urlopen(f"{base}/api/v2/alerts", timeout=2) as r:
                return json.loads(r.read())
        except OSError:
            return None

    try:
        wait_until(lambda: alerts() is not None, timeout=20, what="alertmanager up")
        sink = AlertmanagerSink(base, timeout_seconds=2)
        sink.send(make_alert("firing"))
        got = wait_until(lambda: alerts(), what="alert posted")
        (a,) = got
        assert a["labels"]["alertname"] == "MonitorAnomaly" and a["labels"]["stream"] == "site1/pump1"
        assert a["status"]["state"] == "active" and "flow" in a["annotations"]["description"]
        sink.send(make_alert("resolved", ended=time.time() - 1))
        wait_until(lambda: alerts() == [], what="alert resolved")
        sink.close()
        assert sink.failures == 0 and sink.dropped == 0
    finally:
        proc.terminate()
        proc.wait(10)


def test_alertmanager_sink_counts_failures_when_unreachable():
    errors = []
    sink = AlertmanagerSink(f"http://127.0.0.1:{free_port()}", timeout_seconds=0.5, on_error=lambda: errors.append(1))
    sink.send(make_alert("firing"))
    wait_until(lambda: sink.failures >= 1, what="failure counted")
    sink.close()
    assert errors


def test_memory_sink_keeps_alerts_in_order():
    m = MemorySink()
    m.send(make_alert("firing"))
    m.send(make_alert("resolved", 1.0))
    assert [a.state for a in m.alerts] == ["firing", "resolved"]
    assert np.isfinite(m.alerts[0].peak_score)
