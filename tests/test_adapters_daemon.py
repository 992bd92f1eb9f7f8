"""Per-stream adapters end to end: `monitor train` on a multi-stream recording learns them
(and says how many streams got their own), the daemon against a real Mosquitto raises
exactly the one fault of the quiet stream, and `replay --offline` of what it recorded
reproduces its alerts exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from monitor.app.replay import replay_offline
from monitor.app.service import Service
from monitor.core.config import Config
from monitor.core.model.bundle import load_bundle
from monitor.core.scoring_model import ScoringModel
from monitor.core.types import RawMessage
from monitor.io.recording import RecordingWriter
from tests.broker import Mosquitto, mosquitto_binary
from tests.daemon_support import Publisher, Subscriber, config_from, load_yaml, wait_until
from tests.test_adapters import CHANNELS, FAULT, SHORT, STREAMS, YAML, series

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(mosquitto_binary() is None, reason="the mosquitto binary is not installed"),
]

ROOT = Path(__file__).resolve().parents[1]
ROWS = 600


def raw_config(port: int, models: Path, **extra) -> dict:
    raw = load_yaml(YAML)
    raw.update(
        {
            "mqtt": {"host": "127.0.0.1", "port": port, "client_id": "monitor-adapters-test"},
            "topics": [{"template": "plant/{site}/{asset}", "format": "json_multi", "stream": "{site}/{asset}"}],
            "metrics": {"address": "127.0.0.1", "port": 0},
            "models": {"dir": str(models), "poll_seconds": 0.2},
            **extra,
        }
    )
    raw["stream"]["max_streams"] = 50
    return raw


def payload(t: float, row) -> bytes:
    return json.dumps({"ts": float(t), **{c: float(x) for c, x in zip(CHANNELS, row, strict=True)}}).encode()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`monitor train` on a recording of five streams (one of them short)."""
    tmp = tmp_path_factory.mktemp("adapters-cli")
    rec = tmp / "train.jsonl.gz"
    with RecordingWriter(rec) as w:
        for i, (name, (level, scale)) in enumerate([*STREAMS.items(), (SHORT, (50.0, 1.0))]):
            t, v = series(level, scale, 80 if name == SHORT else 900, seed=i if name != SHORT else 9)
            for ti, vi in zip(t, v, strict=True):
                w.write(RawMessage(float(ti), f"plant/{name}", payload(ti, vi), 1, False))
    models = tmp / "models"
    cfg_path = tmp / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(raw_config(1883, models)))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "monitor", "train", "--config", str(cfg_path), "--data", str(rec), "--quiet"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    return models, res.stdout


def test_train_on_a_multi_stream_recording_reports_own_and_fallen_back_streams(trained):
    models, out = trained
    assert (
        "adapters: 4 stream(s) with their own scaler and threshold, 1 on the group's "
        f"(fewer than 100 windows): {SHORT}" in out
    )
    bundle = load_bundle(models)
    assert bundle.adapters is not None and sorted(bundle.adapters.streams) == sorted(STREAMS)


def test_live_daemon_with_adapters_alerts_the_one_fault_and_replay_reproduces_it(trained, tmp_path):
    models, _ = trained
    with Mosquitto(tmp_path / "broker") as broker:
        cfg: Config = config_from(
            raw_config(broker.port, models, record={"enabled": True, "dir": str(tmp_path / "rec")})
        )
        service = Service(cfg)
        service.start()
        code: list[int] = []
        thread = threading.Thread(target=lambda: code.append(service.run_forever(False)))
        thread.start()
        alerts = Subscriber(broker.port, "monitor/alerts/#")
        pub = Publisher(broker.port)
        try:
            wait_until(lambda: service.ready()[0], what="the model is loaded")
            start = float(int(time.time()) - ROWS - 60)
            feed = {
                name: series(level, scale, ROWS, seed=100 + i, start=start, fault=FAULT if name == "p/quiet" else None)
                for i, (name, (level, scale)) in enumerate(STREAMS.items())
            }
            infos = [
                pub.publish(f"plant/{name}", payload(t[i], v[i])) for i in range(ROWS) for name, (t, v) in feed.items()
            ]
            for info in infos:
                info.wait_for_publish(10)
            wait_until(
                lambda: service.fleet.totals()["accepted"] >= len(STREAMS) * ROWS * len(CHANNELS),
                what="every reading handled",
            )
            wait_until(lambda: len(alerts.messages) >= 2, what="a firing and a resolved alert")
            time.sleep(0.5)
            got = alerts.json()
        finally:
            pub.close()
            alerts.close()
            service.request_stop()
            thread.join(15)
        assert code == [0]
    assert [(a["stream"], a["state"]) for a in got] == [("p/quiet", "firing"), ("p/quiet", "resolved")]
    assert FAULT[0] <= got[0]["started_at"] - start <= FAULT[1]
    bundle = load_bundle(models)
    assert got[0]["threshold"] == float(bundle.adapters.threshold[bundle.adapters.index["p/quiet"]])
    offline = replay_offline([tmp_path / "rec"], cfg, ScoringModel.from_bundle(bundle))

    def key(a: dict) -> tuple:
        return (a["alert_id"], a["state"], a["stream"], a["started_at"], a["ended_at"], a["threshold"])

    assert [key(a.to_dict()) for a in offline.alerts] == [key(a) for a in got]
    for live, off in zip(got, offline.alerts, strict=True):
        assert off.peak_score == pytest.approx(live["peak_score"], rel=1e-5)
