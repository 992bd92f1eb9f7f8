"""A fleet in one daemon, against a real Mosquitto: two groups with different channel sets,
a fault in one stream of each, per-group hot swap isolation, replay of the recorded fleet,
and the single-model config of before (one implicit group "default")."""

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
import torch
import yaml

from monitor.app.replay import replay_offline
from monitor.app.service import Service
from monitor.app.training import StreamData, train_bundle
from monitor.core.config import Config
from monitor.core.model.bundle import load_bundle, set_current
from monitor.core.scoring_model import ScoringModel
from monitor.core.synthetic import CHANNELS, Fault, pump
from tests.broker import Mosquitto, mosquitto_binary
from tests.daemon_support import (
    MODEL_YAML,
    Publisher,
    Subscriber,
    config_from,
    daemon_config,
    feed_rows,
    http_get,
    load_yaml,
    metric_value,
    train_small_model,
    wait_until,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(mosquitto_binary() is None, reason="the mosquitto binary is not installed"),
]

PUMP_CHANNELS = list(CHANNELS)  # 5 channels
MOTOR_CHANNELS = ["flow", "pressure", "current"]  # 3 of them: another model, another input width
PUMPS = ["site1/pump1", "site1/pump2", "site1/pump3"]
MOTORS = ["site1/motor1", "site1/motor2", "site1/motor3"]
FAULTS = {"site1/pump2": (700, 820), "site1/motor3": (400, 520)}
ROWS = 1000
ROOT = Path(__file__).resolve().parents[1]


def fleet_config(broker_port: int, models_dir, **extra) -> Config:
    raw = load_yaml(MODEL_YAML)
    raw.update(
        {
            "mqtt": {
                "host": "127.0.0.1",
                "port": broker_port,
                "client_id": "monitor-fleet-test",
                "reconnect_min_seconds": 0.1,
                "reconnect_max_seconds": 0.5,
            },
            "topics": [
                {
                    "name": "plant",
                    "template": "plant/{site}/{asset}",
                    "format": "json_multi",
                    "stream": "{site}/{asset}",
                }
            ],
            "stream": {"period_seconds": 1.0, "max_gap_seconds": 5, "max_streams": 50},
            "alarm": {"k": 3, "n": 5, "resolve_m": 10},
            "metrics": {"address": "127.0.0.1", "port": 0},
            "models": {"dir": str(models_dir), "poll_seconds": 0.2},
            "groups": [
                {"name": "pumps", "streams": ["site*/pump*"], "stream": {"channels": PUMP_CHANNELS}},
                {
                    "name": "motors",
                    "streams": ["site*/motor*"],
                    "topics": ["plant"],
                    "stream": {"channels": MOTOR_CHANNELS},
                    "model": {"hidden": [16], "code_size": 3},
                },
            ],
            **extra,
        }
    )
    return config_from(raw)


@pytest.fixture(scope="module")
def fleet_models(tmp_path_factory):
    """One small bundle per group, each trained on its own channels (torch on one thread)."""
    torch.set_num_threads(1)
    models = tmp_path_factory.mktemp("fleet-models")
    cfg = fleet_config(1883, models)  # the port is not used: training only
    t, v, _ = pump(2400, seed=11, steps_per_hour=0)
    versions = {}
    for group, channels in (("pumps", PUMP_CHANNELS), ("motors", MOTOR_CHANNELS)):
        cols = [list(CHANNELS).index(c) for c in channels]
        sd = StreamData(f"site1/{group[:-1]}1", channels, t, v[:, cols])
        out = train_bundle([sd], cfg.for_group(group), cfg.group_models_dir(group), write_plots=False)
        versions[group] = out.bundle_path.name
    return models, versions


@pytest.fixture
def models_dir(fleet_models, tmp_path):
    src, versions = fleet_models
    dst = tmp_path / "models"
    shutil.copytree(src, dst, symlinks=True)
    return dst, versions


@pytest.fixture
def broker(tmp_path):
    with Mosquitto(tmp_path / "broker") as b:
        yield b


class Running:
    def __init__(self, cfg: Config):
        self.service = Service(cfg)
        self.service.start()
        self.code = None
        self.thread = threading.Thread(target=lambda: setattr(self, "code", self.service.run_forever(False)))
        self.thread.start()

    def metrics(self) -> str:
        return http_get(self.service.http.port, "/metrics")[1]

    def stop(self) -> int:
        self.service.request_stop()
        self.thread.join(15)
        assert not self.thread.is_alive()
        return self.code


def fleet_feed(start: float):
    """Per stream: (times, values of its group's channels), faults as in FAULTS."""
    out = {}
    for i, stream in enumerate(PUMPS + MOTORS):
        span = FAULTS.get(stream)
        faults = [Fault(span[0], span[1], "cavitation")] if span else []
        t, v, _ = pump(ROWS, seed=40 + i, steps_per_hour=0, faults=faults, start_time=start)
        channels = PUMP_CHANNELS if stream in PUMPS else MOTOR_CHANNELS
        out[stream] = (t, v[:, [list(CHANNELS).index(c) for c in channels]], channels)
    return out


def publish_feed(pub: Publisher, feed: dict, rows: range) -> int:
    infos = []
    for i in rows:
        for stream, (t, v, channels) in feed.items():
            body = {"ts": float(t[i]), **{c: float(x) for c, x in zip(channels, v[i], strict=True)}}
            infos.append(pub.publish(f"plant/{stream}", json.dumps(body).encode()))
    for info in infos:
        info.wait_for_publish(10)
    return len(infos)


def accepted(svc: Service, group: str) -> int:
    return svc.fleet.group_counters(group)["accepted"]


def test_heterogeneous_fleet_alerts_exactly_the_two_faults_and_replay_reproduces_them(broker, models_dir, tmp_path):
    models, versions = models_dir
    cfg = fleet_config(broker.port, models, record={"enabled": True, "dir": str(tmp_path / "rec")})
    run = Running(cfg)
    alerts = Subscriber(broker.port, "monitor/alerts/#")
    pub = Publisher(broker.port)
    try:
        wait_until(lambda: run.service.ready()[0], what="every group has a model")
        assert http_get(run.service.http.port, "/readyz")[0] == 200
        feed = fleet_feed(float(int(time.time()) - ROWS - 60))
        sent = publish_feed(pub, feed, range(ROWS))
        wait_until(
            lambda: accepted(run.service, "pumps") + accepted(run.service, "motors") >= 3 * ROWS * 8,
            what="every reading scored",
        )
        wait_until(lambda: len(alerts.messages) >= 4, what="two firing and two resolved alerts")
        time.sleep(0.5)
        got = alerts.json()
        firing = sorted((a["group"], a["stream"], a["model_version"]) for a in got if a["state"] == "firing")
        assert firing == [("motors", "site1/motor3", versions["motors"]), ("pumps", "site1/pump2", versions["pumps"])]
        assert sorted(a["stream"] for a in got if a["state"] == "resolved") == ["site1/motor3", "site1/pump2"]
        for a in got:
            start, stop = FAULTS[a["stream"]]
            assert start <= a["started_at"] - feed[a["stream"]][0][0] <= stop
        text = wait_until(
            lambda: (
                (m := run.metrics())
                and metric_value(m, "monitor_windows_scored_total") >= 6 * (ROWS - 16 + 1)
                and metric_value(m, "monitor_messages_received_total") >= sent
                and m
            ),
            what="every window exported",
        )
        assert metric_value(text, "monitor_messages_received_total") == sent
        for group in ("pumps", "motors"):
            assert metric_value(text, "monitor_group_alerts_total", {"group": group, "state": "firing"}) == 1
            assert metric_value(text, "monitor_group_windows_scored_total", {"group": group}) == 3 * (ROWS - 16 + 1)
            assert metric_value(text, "monitor_group_model_info", {"group": group, "version": versions[group]}) == 1
            assert 0 <= metric_value(text, "monitor_group_model_age_seconds", {"group": group}) < 3600
            assert metric_value(text, "monitor_group_ready", {"group": group}) == 1
        assert metric_value(text, "monitor_drops_total") == 0
    finally:
        pub.close()
        alerts.close()
        assert run.stop() == 0
    # the recorded fleet, replayed offline with each group's model, raises the same alerts
    group_models = {g: ScoringModel.from_bundle(load_bundle(cfg.group_models_dir(g))) for g in ("pumps", "motors")}
    offline = replay_offline([tmp_path / "rec"], cfg, group_models)

    def key(a: dict) -> tuple:
        return (a["alert_id"], a["state"], a["group"], a["stream"], a["started_at"], a["ended_at"], a["model_version"])

    assert sorted(key(a.to_dict()) for a in offline.alerts) == sorted(key(a) for a in got)
    live_peaks = {(a["alert_id"], a["state"]): a["peak_score"] for a in got}
    for a in offline.alerts:
        assert a.peak_score == pytest.approx(live_peaks[(a.alert_id, a.state)], rel=1e-5)


def test_a_corrupt_bundle_in_one_group_is_refused_and_the_other_loses_nothing(broker, models_dir):
    models, versions = models_dir
    cfg = fleet_config(broker.port, models)
    run = Running(cfg)
    pub = Publisher(broker.port)
    try:
        wait_until(lambda: run.service.ready()[0], what="ready")
        pumps_pipe = run.service.fleet.pipeline("pumps")
        feed = fleet_feed(float(int(time.time()) - ROWS - 60))
        half = ROWS // 2
        publish_feed(pub, feed, range(half))
        # a bundle for motors whose weights do not load: the pointer moves to it mid-feed
        bad = models / "motors" / "v-corrupt"
        shutil.copytree(models / "motors" / versions["motors"], bad)
        for f in bad.iterdir():
            if f.suffix in (".pt", ".safetensors", ".bin"):
                f.write_bytes(b"not a model")
        set_current(models / "motors", "v-corrupt")
        wait_until(
            lambda: metric_value(run.metrics(), "monitor_model_loads_total", {"result": "rejected"}) >= 1,
            what="the corrupt bundle refused",
        )
        publish_feed(pub, feed, range(half, ROWS))
        wait_until(lambda: accepted(run.service, "pumps") >= 3 * ROWS * 5, what="every pump reading")
        wait_until(lambda: accepted(run.service, "motors") >= 3 * ROWS * 3, what="every motor reading")
        assert accepted(run.service, "pumps") == 3 * ROWS * 5 and accepted(run.service, "motors") == 3 * ROWS * 3
        assert run.service.fleet.pipeline("pumps") is pumps_pipe  # untouched: same pipeline, same model
        assert run.service.fleet.model("pumps").version == versions["pumps"]
        assert run.service.fleet.model("motors").version == versions["motors"]  # the old one keeps serving
        assert "v-corrupt" in (run.service.watchers["motors"].last_error or "")
        assert run.service.watchers["pumps"].last_error is None
        text = wait_until(  # the scoring thread exports after its flush: wait for it, then compare exactly
            lambda: (
                (m := run.metrics())
                and metric_value(m, "monitor_group_windows_scored_total", {"group": "pumps"}) >= 3 * (ROWS - 16 + 1)
                and m
            ),
            what="pump windows exported",
        )
        assert metric_value(text, "monitor_drops_total") == 0
        assert metric_value(text, "monitor_group_windows_scored_total", {"group": "pumps"}) == 3 * (ROWS - 16 + 1)
    finally:
        pub.close()
        assert run.stop() == 0


def test_a_group_without_a_model_holds_readiness_and_counts_its_readings(broker, models_dir):
    models, _ = models_dir
    shutil.rmtree(models / "motors")
    run = Running(fleet_config(broker.port, models))
    pub = Publisher(broker.port)
    try:
        wait_until(lambda: run.service.ingest.connected, what="connected")
        code, body = http_get(run.service.http.port, "/readyz")
        assert code == 503 and "motors" in body and "pumps" not in body.split("(")[0]
        feed = fleet_feed(float(int(time.time()) - 200 - 60))
        publish_feed(pub, {s: (t[:200], v[:200], c) for s, (t, v, c) in feed.items()}, range(200))
        wait_until(lambda: run.service.fleet.group_counters("motors")["no_model"] >= 3 * 200 * 3, what="no_model")
        wait_until(lambda: accepted(run.service, "pumps") >= 3 * 200 * 5, what="pumps scored")
        text = wait_until(
            lambda: (
                (m := run.metrics())
                and metric_value(m, "monitor_group_drops_total", {"group": "motors", "reason": "no_model"}) >= 1800
                and m
            ),
            what="no_model drops exported",
        )
        assert metric_value(text, "monitor_group_drops_total", {"group": "motors", "reason": "no_model"}) == 1800
        assert metric_value(text, "monitor_group_ready", {"group": "motors"}) == 0
        assert metric_value(text, "monitor_group_ready", {"group": "pumps"}) == 1
    finally:
        pub.close()
        assert run.stop() == 0


def test_an_old_single_model_config_and_bundle_run_unchanged_as_group_default(broker, tmp_path):
    models = tmp_path / "models"
    train_small_model(models)  # models/current, as before groups existed
    assert (models / "current").exists() and not (models / "default").exists()
    cfg = daemon_config(broker.port, models)
    assert not cfg.groups
    run = Running(cfg)
    alerts = Subscriber(broker.port, "monitor/alerts/#")
    pub = Publisher(broker.port)
    try:
        wait_until(lambda: run.service.ready()[0], what="ready")
        t, v, _ = feed_rows()
        pub.publish_rows("plant/site1/pump1", t, v)
        wait_until(lambda: len(alerts.messages) >= 2, what="firing and resolved")
        got = alerts.json()
        assert [(a["state"], a["group"]) for a in got] == [("firing", "default"), ("resolved", "default")]
        text = wait_until(
            lambda: (m := run.metrics()) and metric_value(m, "monitor_windows_scored_total") >= len(t) - 16 + 1 and m,
            what="windows exported",
        )
        assert metric_value(text, "monitor_group_alerts_total", {"group": "default", "state": "firing"}) == 1
        assert metric_value(text, "monitor_windows_scored_total") == len(t) - 16 + 1
    finally:
        pub.close()
        alerts.close()
        assert run.stop() == 0


def test_train_cli_trains_each_group_on_the_streams_routed_to_it(tmp_path):
    t, v, _ = pump(900, seed=11, steps_per_hour=0)
    csv = tmp_path / "pump.csv"
    with open(csv, "w") as fh:
        fh.write("timestamp," + ",".join(CHANNELS) + "\n")
        for ti, row in zip(t, v, strict=True):
            fh.write(f"{ti}," + ",".join(f"{x:.6f}" for x in row) + "\n")
    models = tmp_path / "models"
    raw = fleet_config(1883, models).to_dict()
    raw["data"] = {"timestamp_column": "timestamp", "label_column": None, "stream": "site1/pump9"}
    raw["model"]["epochs"] = 2
    for g in raw["groups"]:
        g.pop("model", None)  # the top level's (2 epochs) everywhere
        for section in ("filters", "calibration", "alarm"):
            g.pop(section, None)
        g["stream"] = {"channels": g["stream"]["channels"]}
    cfg_path = tmp_path / "fleet.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "monitor", "train", "--config", str(cfg_path), "--data", str(csv), "--quiet"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "group motors: no stream of the data routes to it" in res.stderr
    pumps = load_bundle(models / "pumps")  # models/pumps/current
    assert pumps.manifest.channels == PUMP_CHANNELS and pumps.manifest.streams == ["site1/pump9"]
    assert not (models / "motors").exists() and not (models / "current").exists()
    res = subprocess.run([*cmd, "--group", "motors"], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 1 and "no training data for group(s) motors" in res.stderr
