"""Silences: the file format and the CLI, and the real daemon against a real Mosquitto
holding back a silenced stream's alerts from every sink while still scoring it."""

from __future__ import annotations

import json
import shutil
import threading
import time

import pytest
import torch

from monitor.app.cli import main
from monitor.app.service import Service
from monitor.io import silences
from tests.broker import Mosquitto, mosquitto_binary
from tests.daemon_support import (
    Publisher,
    Subscriber,
    daemon_config,
    feed_rows,
    http_get,
    metric_value,
    row_payload,
    train_small_model,
    wait_until,
)


def test_parse_duration_accepts_units_and_refuses_nonsense():
    assert silences.parse_duration("90s") == 90
    assert silences.parse_duration("15m") == 900
    assert silences.parse_duration("2h") == 7200
    assert silences.parse_duration("1d") == 86400
    for bad in ("", "h", "-2h", "two hours", "0m"):
        with pytest.raises(ValueError, match="--for"):
            silences.parse_duration(bad)


def test_add_list_clear_and_expired_silences_are_dropped(tmp_path):
    path = tmp_path / "state" / "silences.json"
    old = silences.add(path, "site1/pump1", 10, "old", now=1000.0)
    new = silences.add(path, "site1/*", 7200, "pump swap", now=2000.0)  # `old` expired: dropped
    assert [s.id for s in silences.load(path)] == [new.id]
    assert new.matches("site1/pump9") and not new.matches("site2/pump1")
    assert new.active(2000.0 + 7199) and not new.active(2000.0 + 7200)
    assert not silences.clear(path, old.id)
    assert silences.clear(path, new.id) and silences.load(path) == []


def test_bad_file_is_a_clear_error_and_the_watch_keeps_what_it_had(tmp_path):
    path = tmp_path / "silences.json"
    silences.add(path, "a", 3600, "x")
    errors = []
    watch = silences.SilenceWatch(path, on_error=lambda: errors.append(1))
    watch.refresh()
    assert len(watch.silences) == 1
    path.write_text('{"version": 1, "silences": [{"id": "x", "stream": "a", "until": "tomorrow"}]}')
    with pytest.raises(silences.SilenceFileError, match=r"silences\[0\]\.until must be epoch seconds"):
        silences.load(path)
    watch.refresh()
    assert errors == [1] and len(watch.silences) == 1


def test_resolved_is_held_back_only_when_its_firing_was(tmp_path):
    path = tmp_path / "silences.json"
    watch = silences.SilenceWatch(path)
    now = time.time()
    assert not watch.silenced("a", "firing", "ep1", now)  # no silence yet: sent
    silences.add(path, "a", 3600, "maintenance")
    watch.refresh()
    assert watch.silenced("a", "firing", "ep2", now)
    assert not watch.silenced("a", "resolved", "ep1", now)  # its firing went out: so does this
    assert watch.silenced("a", "resolved", "ep2", now)
    assert not watch.silenced("b", "firing", "ep3", now)


def test_cli_silence_list_and_clear(tmp_path, capsys):
    conf = tmp_path / "c.yaml"
    conf.write_text(f"models: {{dir: {tmp_path / 'models'}}}\n")
    assert main(["silence", "--config", str(conf), "site1/pump1", "--for", "2h", "--reason", "pump swap"]) == 0
    sid = capsys.readouterr().out.split()[0]
    assert main(["silence", "--config", str(conf), "--list"]) == 0
    listed = capsys.readouterr().out
    assert sid in listed and "site1/pump1" in listed and "pump swap" in listed
    assert main(["silence", "--config", str(conf), "--clear", sid]) == 0
    assert main(["silence", "--config", str(conf), "--clear", sid]) == 1
    assert main(["silence", "--config", str(conf), "x", "--for", "soon"]) == 1
    assert "--for" in capsys.readouterr().err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    models = tmp_path_factory.mktemp("silence-models")
    train_small_model(models)
    return models


@pytest.mark.slow
@pytest.mark.skipif(mosquitto_binary() is None, reason="the mosquitto binary is not installed")
def test_daemon_holds_back_a_silenced_streams_alerts_and_still_scores_it(trained, tmp_path):
    models_dir = tmp_path / "models"
    shutil.copytree(trained, models_dir, symlinks=True)
    alert_log = tmp_path / "rec"
    with Mosquitto(tmp_path / "broker") as broker:
        cfg = daemon_config(broker.port, models_dir, record={"enabled": True, "dir": str(alert_log)})
        svc = Service(cfg)
        svc.start()
        runner = threading.Thread(target=svc.run_forever, args=(False,))
        runner.start()
        alerts = Subscriber(broker.port, "monitor/alerts/#")
        scores: list = []
        svc.score_listeners.append(lambda batch: scores.extend(batch.streams))
        pub = Publisher(broker.port)
        try:
            wait_until(lambda: svc.ready()[0], what="ready")
            path = silences.silences_path(models_dir)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("not json")  # a bad file first: counted, the daemon keeps running
            wait_until(
                lambda: (
                    metric_value(http_get(svc.http.port, "/metrics")[1], "monitor_silence_file_errors_total", {}) == 1.0
                ),
                what="the bad file counted",
            )
            path.unlink()  # `monitor silence` refuses to overwrite a file it cannot read
            silences.add(path, "site1/pump1", 3600, "maintenance")
            wait_until(lambda: svc.silences.silences, what="the silence read")
            t, v, _ = feed_rows(1000)  # a cavitation fault: firing and resolved without the silence
            for i in range(1000):
                pub.publish("plant/site1/pump1", row_payload(t[i], v[i])).wait_for_publish(10)
                pub.publish("plant/site1/pump2", row_payload(t[i], v[i])).wait_for_publish(10)
            wait_until(
                lambda: [a["state"] for a in alerts.json() if a["stream"] == "site1/pump2"] == ["firing", "resolved"],
                timeout=60,
                what="the unsilenced stream's episode",
            )
            time.sleep(1.0)
            assert [a for a in alerts.json() if a["stream"] == "site1/pump1"] == []
            text = http_get(svc.http.port, "/metrics")[1]
            labels = {"stream": "site1/pump1", "kind": "anomaly"}
            assert metric_value(text, "monitor_alerts_silenced_total", labels) == 2.0  # firing + resolved
            assert scores.count("site1/pump1") == scores.count("site1/pump2") > 0  # still scored
            assert svc.health()[0]
        finally:
            pub.close()
            alerts.close()
            svc.request_stop()
            runner.join(15)
    logged = [json.loads(line) for p in alert_log.rglob("alerts.ndjson") for line in p.read_text().splitlines()]
    assert logged and {a["stream"] for a in logged} == {"site1/pump2"}  # the file sink honours it too
