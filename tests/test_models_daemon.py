"""`monitor models rollback` against a live fleet daemon and a real Mosquitto: the pointer of
one group moves while readings keep flowing, the daemon's watcher swaps that group's model,
no reading or window is lost, the other group is untouched, and the alerts that follow
name the rolled-back-to version."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from monitor.core.model.bundle import current_bundle_path, set_current
from tests.broker import Mosquitto, mosquitto_binary
from tests.daemon_support import Publisher, Subscriber, metric_value, wait_until
from tests.test_fleet_daemon import FAULTS, ROWS, Running, accepted, fleet_config, fleet_feed, fleet_models

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(mosquitto_binary() is None, reason="the mosquitto binary is not installed"),
]

__all__ = ["fleet_models"]  # the module-scoped fixture that trains one bundle per group
ROOT = Path(__file__).resolve().parents[1]
OLD = "motors-previous"
SWAP_BEFORE_ROW = 350  # the motor3 fault starts at row 400: its alert comes after the swap


def _previous_motors_version(models: Path, trained: str) -> None:
    """An earlier motors version (same weights, another name and an older created time), as the
    last retrain would have left it; the history then reads ... OLD, trained: rollback -> OLD."""
    src, dst = models / "motors" / trained, models / "motors" / OLD
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest |= {"version": OLD, "created_at": "2020-01-01T00:00:00Z"}
    (dst / "manifest.json").write_text(json.dumps(manifest))
    set_current(models / "motors", OLD)
    set_current(models / "motors", trained)


def test_models_rollback_swaps_one_groups_live_model_without_losing_readings(tmp_path, fleet_models):
    src, versions = fleet_models
    models = tmp_path / "models"
    shutil.copytree(src, models, symlinks=True)
    _previous_motors_version(models, versions["motors"])
    with Mosquitto(tmp_path / "broker") as broker:
        cfg = fleet_config(broker.port, models)
        cfg_path = tmp_path / "fleet.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg.to_dict()))
        run = Running(cfg)
        alerts = Subscriber(broker.port, "monitor/alerts/#")
        pub = Publisher(broker.port)
        allowed = [0]  # rows the feeder may publish so far; the test raises it
        more = threading.Condition()
        sent: list[int] = []

        def allow(rows: int) -> None:
            with more:
                allowed[0] = max(allowed[0], rows)
                more.notify_all()

        def feed_rows() -> None:
            infos = []
            for i in range(ROWS):
                with more:
                    more.wait_for(lambda i=i: i < allowed[0], timeout=60)
                for stream, (t, v, channels) in feed.items():
                    body = {"ts": float(t[i]), **{c: float(x) for c, x in zip(channels, v[i], strict=True)}}
                    infos.append(pub.publish(f"plant/{stream}", json.dumps(body).encode()))
            for info in infos:
                info.wait_for_publish(10)
            sent.append(len(infos))

        def motor_rows() -> int:
            return accepted(run.service, "motors") // 9  # 3 motors x 3 channels per row

        try:
            wait_until(lambda: run.service.ready()[0], what="every group has a model")
            assert run.service.fleet.model("motors").version == versions["motors"]
            pumps_pipe = run.service.fleet.pipeline("pumps")
            feed = fleet_feed(float(int(time.time()) - ROWS - 60))
            feeder = threading.Thread(target=feed_rows)
            feeder.start()
            allow(100)
            wait_until(lambda: motor_rows() >= 100, what="readings flowing")
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            cmd = [
                sys.executable,
                "-m",
                "monitor",
                "models",
                "rollback",
                "--config",
                str(cfg_path),
                "--group",
                "motors",
            ]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            while proc.poll() is None:  # readings keep arriving while the command runs
                allow(min(SWAP_BEFORE_ROW, allowed[0] + 5))
                time.sleep(0.05)
            out, err = proc.communicate()
            assert proc.returncode == 0, err
            assert f"current {versions['motors']} -> {OLD}" in out
            assert current_bundle_path(models / "motors").name == OLD
            rows_during_rollback = allowed[0] - 100
            wait_until(lambda: run.service.fleet.model("motors").version == OLD, what="the daemon swapped motors")
            assert rows_during_rollback > 0 and allowed[0] <= SWAP_BEFORE_ROW  # swapped mid-feed, before the fault
            allow(ROWS)
            feeder.join(60)
            assert not feeder.is_alive() and sent
            wait_until(
                lambda: accepted(run.service, "pumps") + accepted(run.service, "motors") >= 3 * ROWS * 8,
                what="every reading scored",
            )
            wait_until(lambda: len(alerts.messages) >= 4, what="two firing and two resolved alerts")
            time.sleep(0.5)
            got = alerts.json()
            text = wait_until(
                lambda: (
                    (m := run.metrics())
                    and metric_value(m, "monitor_windows_scored_total") >= 6 * (ROWS - 16 + 1)
                    and metric_value(m, "monitor_messages_received_total") >= sent[0]
                    and m
                ),
                what="every window exported",
            )
        finally:
            allow(ROWS)
            pub.close()
            alerts.close()
            code = run.stop()
    assert code == 0
    # no reading lost: every message received, every reading accepted, every window scored
    assert metric_value(text, "monitor_messages_received_total") == sent[0] == 3 * ROWS * 2
    assert accepted(run.service, "pumps") == 3 * ROWS * 5 and accepted(run.service, "motors") == 3 * ROWS * 3
    assert metric_value(text, "monitor_drops_total") == 0
    for group in ("pumps", "motors"):
        assert metric_value(text, "monitor_group_windows_scored_total", {"group": group}) == 3 * (ROWS - 16 + 1)
    # motors serve the rolled-back-to version, pumps never noticed
    assert metric_value(text, "monitor_group_model_info", {"group": "motors", "version": OLD}) == 1
    assert metric_value(text, "monitor_group_model_info", {"group": "pumps", "version": versions["pumps"]}) == 1
    assert run.service.fleet.pipeline("pumps") is pumps_pipe
    assert metric_value(text, "monitor_model_loads_total", {"result": "rejected"}) == 0
    # the episodes: the motor fault came after the swap and names the new version
    firing = sorted((a["group"], a["stream"], a["model_version"]) for a in got if a["state"] == "firing")
    assert firing == [("motors", "site1/motor3", OLD), ("pumps", "site1/pump2", versions["pumps"])]
    for a in got:
        start, stop = FAULTS[a["stream"]]
        assert start <= a["started_at"] - feed[a["stream"]][0][0] <= stop
