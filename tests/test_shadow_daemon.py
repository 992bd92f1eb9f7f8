"""Shadow scoring in the live daemon against a real Mosquitto (decision 0021).

A candidate registered as ``shadow`` scores the same windows as the serving model, sends
no alert, and after ``retrain.shadow_hours`` of live data (here 60 s of data time) is
promoted only within its budgets: one that alarms too much is rejected and the serving
model keeps serving; a good one is promoted and swapped in.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest

from monitor.app.service import Service
from monitor.app.shadowing import REPORT_FILE
from monitor.core.model.registry import current_bundle_path, set_shadow, shadow_bundle_path
from tests.broker import Mosquitto, mosquitto_binary
from tests.daemon_support import (
    Publisher,
    Subscriber,
    daemon_config,
    feed_rows,
    metric_value,
    train_small_model,
    wait_until,
)
from tests.test_fleet_daemon import Running

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(mosquitto_binary() is None, reason="the mosquitto binary is not installed"),
]

SHADOW = {
    "shadow_hours": 60 / 3600,  # 60 s of data time (rows are 1 s apart)
    "shadow_min_windows": 30,
    "shadow_alert_margin": 0,
    "shadow_max_alert_episodes": 2,
    "shadow_max_quantile_ratio": 3.0,
}


def _variant(models: Path, serving: str, name: str, threshold_factor: float) -> str:
    """A copy of the serving bundle under another version, its threshold scaled."""
    shutil.copytree(models / serving, models / name)
    path = models / name / "manifest.json"
    m = json.loads(path.read_text())
    m["version"] = name
    m["threshold"]["threshold"] *= threshold_factor
    path.write_text(json.dumps(m))
    return name


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    models = tmp_path_factory.mktemp("shadow-models") / "models"
    train_small_model(models)
    return models


def _metrics(svc: Service) -> str:
    return generate_latest(svc.registry).decode()


def test_shadow_rejects_a_noisy_candidate_and_promotes_a_good_one(tmp_path, trained, caplog):
    caplog.set_level(logging.INFO, logger="monitor.app.shadowing")
    models = tmp_path / "models"
    shutil.copytree(trained, models, symlinks=True)
    serving = current_bundle_path(models).name
    noisy = _variant(models, serving, "noisy", 1 / 20)  # scores 20x: alarms on normal data
    good = _variant(models, serving, "good", 1.0)
    t, v, _ = feed_rows(400, fault=None)
    with Mosquitto(tmp_path / "broker") as broker:
        cfg = daemon_config(broker.port, models, retrain=SHADOW)
        alerts = Subscriber(broker.port, "monitor/alerts/#")
        pub = Publisher(broker.port)
        set_shadow(models, noisy)
        run = Running(cfg)  # run_forever on a thread: the main loop polls the pointers
        svc = run.service
        try:
            wait_until(lambda: svc.ready()[0], what="ready")
            wait_until(lambda: metric_value(_metrics(svc), "monitor_shadow_active") == 1, what="noisy in shadow")
            pub.publish_rows("plant/site1/pump1", t[:230], v[:230])
            wait_until(lambda: svc.shadows.verdicts, timeout=30, what="the noisy candidate's verdict")
            wait_until(lambda: shadow_bundle_path(models) is None, what="the shadow pointer removed")
            first = svc.shadows.verdicts[0]
            assert first["state"] == "rejected", first
            failed = {c["check"] for c in first["checks"] if not c["passed"]}
            assert {"alert_episodes", "score_quantile"} <= failed, first["checks"]
            assert first["summary"]["episodes"]["candidate"] >= 1 and first["summary"]["episodes"]["current"] == 0
            text = _metrics(svc)
            assert metric_value(text, "monitor_shadow_would_alert_total") >= 1
            assert metric_value(text, "monitor_shadow_verdict", {"verdict": "rejected"}) == 1
            assert current_bundle_path(models).name == serving  # the serving model keeps serving
            assert svc.fleet.model("default").version == serving
            report = json.loads((models / REPORT_FILE).read_text())
            assert report["state"] == "rejected" and report["summary"]["candidate"] == noisy
            assert alerts.messages == []  # the candidate's would-be alerts were never sent
            # the serving model's 215 windows are under one 300 s load cycle of the pump: too few
            # to tell drift from where the cycle is (they read 0.57 on this normal feed), so NaN
            drift = svc.shadows.drift["default"]
            assert drift is not None and drift.filled == 215 and math.isnan(drift.value())
            assert math.isnan(metric_value(_metrics(svc), "monitor_model_drift"))

            set_shadow(models, good)
            wait_until(lambda: svc.ready()[0], what="ready")  # subscribed: nothing published is lost
            wait_until(lambda: metric_value(_metrics(svc), "monitor_shadow_active") == 1, what="good in shadow")
            pub.publish_rows("plant/site1/pump1", t[230:], v[230:])
            wait_until(lambda: len(svc.shadows.verdicts) == 2, timeout=30, what="the good candidate's verdict")
            second = svc.shadows.verdicts[1]
            assert second["state"] == "promoted", second["checks"]
            assert current_bundle_path(models).name == good
            wait_until(lambda: svc.fleet.model("default").version == good, what="the promoted model swapped in")
            # it serves with the drift summary of its own errors in the shadow period (here every
            # window published since it was installed), not an empty one
            shadowed = second["summary"]["windows"]
            seeded = svc.shadows.drift["default"]
            assert seeded is not None and seeded is not drift and seeded.filled == seeded.seen >= shadowed >= 60
            assert f"{good} goes on with the {shadowed} windows it scored in shadow" in caplog.text
            assert metric_value(_metrics(svc), "monitor_shadow_verdict", {"verdict": "promoted"}) == 1
            assert alerts.messages == []
            cfg_path = tmp_path / "monitor.yaml"
            cfg_path.write_text(yaml.safe_dump(cfg.to_dict()))
            code = subprocess.run(
                [sys.executable, "-m", "monitor", "models", "shadow-report", "--config", str(cfg_path)],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert code.returncode == 0, code.stderr
            lines = code.stdout.splitlines()
            assert lines[1].startswith("shadow: promoted") and lines[3].split()[1:] == [good, serving]
            assert lines[4].split()[:2] == ["alert", "episodes"] and "PASS score_quantile" in code.stdout
            assert (models / "shadow-report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        finally:
            assert run.stop() == 0
            pub.close()
            alerts.close()


def test_the_shadow_period_goes_on_across_a_daemon_restart(tmp_path, trained, caplog):
    models = tmp_path / "models"
    shutil.copytree(trained, models, symlinks=True)
    serving = current_bundle_path(models).name
    good = _variant(models, serving, "good", 1.0)
    other = _variant(models, serving, "other", 1.0)
    t, v, _ = feed_rows(120, fault=None)
    state_file = models / "state" / "shadow.json"
    topic = "plant/site1/pump1"
    with Mosquitto(tmp_path / "broker") as broker:
        cfg = daemon_config(broker.port, models, retrain=SHADOW)
        pub = Publisher(broker.port)
        set_shadow(models, good)
        run = Running(cfg)
        svc = run.service
        try:
            wait_until(lambda: svc.ready()[0], what="ready")  # subscribed: nothing published is lost
            wait_until(lambda: metric_value(_metrics(svc), "monitor_shadow_active") == 1, what="good in shadow")
            pub.publish_rows(topic, t[:50], v[:50])  # 35 windows over 34 s of the 60
            wait_until(lambda: metric_value(_metrics(svc), "monitor_shadow_windows_total") == 35, what="35 windows")
        finally:
            assert run.stop() == 0
        assert not svc.shadows.verdicts
        saved = json.loads(state_file.read_text())
        assert (saved["candidate"], saved["current"], saved["windows"]) == (good, serving, 35)
        assert saved["first_time"] == pytest.approx(t[15]) and saved["last_time"] == pytest.approx(t[49])

        run = Running(cfg)  # the restart: the shadow clock goes on from the first run's first window
        svc = run.service
        try:
            wait_until(lambda: svc.ready()[0], what="ready again")
            wait_until(lambda: metric_value(_metrics(svc), "monitor_shadow_active") == 1, what="good in shadow again")
            sh = svc.fleet.pipeline("default").shadow
            assert sh is not None and sh.windows == 35 and sh.first_time == saved["first_time"]
            assert metric_value(_metrics(svc), "monitor_shadow_elapsed_seconds") == pytest.approx(34.0)
            # 30 more rows: 15 windows once the window refilled, 64 s since the first window
            # (a fresh period would stand at 14 s and 15 windows: not due)
            pub.publish_rows(topic, t[50:80], v[50:80])
            wait_until(lambda: svc.shadows.verdicts, timeout=30, what="the verdict after the restart")
            verdict = svc.shadows.verdicts[0]
            assert verdict["state"] == "promoted", verdict["checks"]
            assert verdict["summary"]["windows"] == 50 and verdict["summary"]["elapsed_seconds"] == pytest.approx(64.0)
            assert metric_value(_metrics(svc), "monitor_shadow_windows_total") == 15  # this process's windows
            wait_until(lambda: not state_file.exists(), what="the state file gone with the verdict")
            wait_until(lambda: svc.fleet.model("default").version == good, what="the promoted model swapped in")
        finally:
            assert run.stop() == 0
        assert not state_file.exists()  # no shadow running at the stop: nothing saved

        # an unusable state file: a WARNING, a count, a fresh period (and no crash)
        state_file.write_text('{"version": 1, "candidate": "other", "current": "good", "windows": "many"}')
        set_shadow(models, other)
        run = Running(cfg)
        svc = run.service
        try:
            wait_until(lambda: metric_value(_metrics(svc), "monitor_shadow_active") == 1, what="other in shadow")
            sh = svc.fleet.pipeline("default").shadow
            assert sh is not None and sh.model.version == other and sh.windows == 0
            assert metric_value(_metrics(svc), "monitor_shadow_state_errors_total", {"op": "read"}) == 1
            assert any(
                r.levelname == "WARNING" and "shadow state of group default unusable" in r.getMessage()
                for r in caplog.records
            )
        finally:
            assert run.stop() == 0
            pub.close()


def test_the_drift_summary_goes_on_across_a_daemon_restart(tmp_path, trained, caplog):
    """Without it every restart costs the drift statistic its hours of windows (NaN for
    the first 2.3 h at 1 Hz): the summary is saved with the other state and restored for
    the same serving model; an unusable file is a warning, a count and a fresh start."""
    models = tmp_path / "models"
    shutil.copytree(trained, models, symlinks=True)
    serving = current_bundle_path(models).name
    t, v, _ = feed_rows(120, fault=None)
    state_file = models / "state" / "drift.json"
    topic = "plant/site1/pump1"
    with Mosquitto(tmp_path / "broker") as broker:
        cfg = daemon_config(broker.port, models)
        pub = Publisher(broker.port)
        try:
            run = Running(cfg)
            svc = run.service
            try:
                wait_until(lambda: svc.ready()[0], what="ready")
                pub.publish_rows(topic, t[:50], v[:50])  # 35 windows
                wait_until(lambda: metric_value(_metrics(svc), "monitor_windows_scored_total") == 35, what="35")
            finally:
                assert run.stop() == 0
            saved = json.loads(state_file.read_text())
            assert (saved["model"], saved["seen"]) == (serving, 35)

            run = Running(cfg)
            svc = run.service
            try:
                wait_until(lambda: svc.ready()[0], what="ready again")
                tracker = svc.shadows.drift["default"]
                assert tracker is not None and tracker.seen == 35  # went on, not from zero
                pub.publish_rows(topic, t[50:80], v[50:80])  # the window refills: 15 more
                wait_until(lambda: metric_value(_metrics(svc), "monitor_windows_scored_total") == 15, what="15")
            finally:
                assert run.stop() == 0
            assert json.loads(state_file.read_text())["seen"] == 50

            state_file.write_text(json.dumps({**saved, "current": "lots"}))
            run = Running(cfg)
            svc = run.service
            try:
                wait_until(lambda: svc.ready()[0], what="ready a third time")
                tracker = svc.shadows.drift["default"]
                assert tracker is not None and tracker.seen == 0
                assert metric_value(_metrics(svc), "monitor_drift_state_errors_total", {"op": "read"}) == 1
                assert any(
                    r.levelname == "WARNING" and "drift state of group default unusable" in r.getMessage()
                    for r in caplog.records
                )
            finally:
                assert run.stop() == 0
        finally:
            pub.close()
