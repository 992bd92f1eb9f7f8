"""Alarm state across a restart, against a real Mosquitto and the real daemon process:
SIGTERM or SIGKILL in the middle of an episode gives no second ``firing`` and exactly one
``resolved`` later; a restored episode whose stream stays silent resolves with
``reason: stale``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from monitor.app.alarm_persist import alarm_state_path
from tests.broker import free_port, mosquitto_binary
from tests.daemon_support import (
    FAULT,
    Publisher,
    Subscriber,
    daemon_config,
    feed_rows,
    http_get,
    row_payload,
    wait_until,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(mosquitto_binary() is None, reason="the mosquitto binary is not installed"),
]

ROOT = Path(__file__).resolve().parents[1]
ROWS = 1000
CUT = FAULT[0] + 60  # the daemon is stopped here, in the middle of the fault's episode


class Daemon:
    """`monitor run` as a child process."""

    def __init__(self, conf: Path, port: int):
        self.port = port
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--config", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        wait_until(
            lambda: self.proc.poll() is not None or http_get(port, "/readyz")[0] == 200, timeout=90, what="ready"
        )
        assert self.proc.poll() is None, self.proc.stderr.read() if self.proc.stderr else ""

    def stop(self, sig: signal.Signals) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=15)
        self.proc.communicate(timeout=5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def open_episode(path: Path) -> bool:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    streams = state.get("default", {}).get("streams", {})
    return any(s.get("episode") for s in streams.values())


def anomaly(sub: Subscriber) -> list[dict]:
    return [a for a in sub.json() if a.get("kind") == "anomaly"]


@pytest.mark.parametrize(("sig", "feed_after"), [("SIGTERM", True), ("SIGKILL", True), ("SIGTERM", False)])
def test_restart_mid_episode_continues_it_and_resolves_it_once(broker, models_dir, tmp_path, sig, feed_after):
    port = free_port()
    cfg = daemon_config(
        broker.port,
        models_dir,
        metrics_port=port,
        alerts={"state_save_seconds": 0.2},
        sensors={"stale_seconds": 3.0},
    )
    data = cfg.to_dict()
    data["mqtt"]["password"] = None
    conf = tmp_path / "daemon.yaml"
    conf.write_text(yaml.safe_dump(data))
    state = alarm_state_path(models_dir)
    t, v, _ = feed_rows(ROWS)
    alerts = Subscriber(broker.port, "monitor/alerts/#")
    pub = Publisher(broker.port)
    daemon = Daemon(conf, port)
    try:
        for i in range(CUT):
            pub.publish("plant/site1/pump1", row_payload(t[i], v[i])).wait_for_publish(10)
        wait_until(lambda: [a["state"] for a in anomaly(alerts)] == ["firing"], what="the episode firing")
        wait_until(lambda: open_episode(state), what="the open episode saved")
        code = daemon.stop(getattr(signal, sig))
        assert code == (0 if sig == "SIGTERM" else -signal.SIGKILL)
        daemon = Daemon(conf, port)
        if feed_after:
            for i in range(CUT, ROWS):
                pub.publish("plant/site1/pump1", row_payload(t[i], v[i])).wait_for_publish(10)
        wait_until(lambda: len(anomaly(alerts)) >= 2, timeout=60, what="the resolved alert")
        time.sleep(1.5)  # nothing more may come
        got = anomaly(alerts)
        assert [a["state"] for a in got] == ["firing", "resolved"]
        assert got[0]["alert_id"] == got[1]["alert_id"]
        assert got[1].get("reason") == (None if feed_after else "stale")
        if feed_after:
            assert FAULT[0] < got[1]["ended_at"] - t[0] <= FAULT[1] + 30
        else:
            assert got[1]["ended_at"] == pytest.approx(t[CUT - 1])
    finally:
        daemon.kill()
        pub.close()
        alerts.close()
