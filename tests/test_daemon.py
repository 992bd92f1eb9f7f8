"""The live daemon against a real Mosquitto that the tests start on a free loopback port."""

from __future__ import annotations

import json
import logging
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from broker import Mosquitto, free_port, make_test_ca, mosquitto_binary
from daemon_support import (
    FAULT,
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

from monitor.app.backtest import run_backtest
from monitor.app.service import Service
from monitor.core.model.bundle import load_bundle, set_current
from monitor.core.scoring_model import ScoringModel
from monitor.core.synthetic import CHANNELS
from monitor.io.recording import RecordingStats, iter_recordings

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(mosquitto_binary() is None, reason="the mosquitto binary is not installed"),
]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    bundle = train_small_model(models)
    return models, bundle


@pytest.fixture
def models_dir(trained, tmp_path):
    """A private copy of the trained models directory (tests move `current`)."""
    src, _ = trained
    dst = tmp_path / "models"
    shutil.copytree(src, dst, symlinks=True)
    return dst


class Running:
    """A Service running its main loop in a thread (signals are the subprocess tests' job)."""

    def __init__(self, cfg, **kw):
        self.service = Service(cfg, **kw)
        self.service.start()
        self.code = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.code = self.service.run_forever(install_signals=False)

    @property
    def port(self) -> int:
        return self.service.http.port

    def metrics(self) -> str:
        return http_get(self.port, "/metrics")[1]

    def stop(self):
        self.service.request_stop()
        self.thread.join(15)
        assert not self.thread.is_alive()
        return self.code


def expected_alerts(cfg, models_dir, times, values):
    """What the offline pipeline says for the same feed: the daemon must agree."""
    model = ScoringModel.from_bundle(load_bundle(models_dir))
    cfg.data.stream = "site1/pump1"
    res = run_backtest(cfg, times, values, list(CHANNELS), model)
    return [(a.state, a.alert_id) for a in res.alerts]


def test_fault_fires_once_and_resolves_once_with_matching_metrics(broker, models_dir):
    cfg = daemon_config(broker.port, models_dir)
    run = Running(cfg)
    alerts = Subscriber(broker.port, "monitor/alerts/#")
    pub = Publisher(broker.port)
    try:
        wait_until(lambda: run.service.ready()[0], what="daemon ready")
        assert http_get(run.port, "/readyz")[0] == 200
        t, v, _ = feed_rows()
        pub.publish_rows("plant/site1/pump1", t, v)
        wait_until(lambda: len(alerts.messages) >= 2, what="firing and resolved alerts")
        time.sleep(0.5)  # nothing more may arrive
        got = alerts.json()
        assert [a["state"] for a in got] == ["firing", "resolved"]
        assert got[0]["alert_id"] == got[1]["alert_id"] and got[0]["stream"] == "site1/pump1"
        assert FAULT[0] <= got[0]["started_at"] - t[0] <= FAULT[1]
        assert got[1]["ended_at"] > got[0]["started_at"] and got[1]["peak_score"] >= 1.0
        assert got[0]["threshold"] > 0 and got[0]["model_version"]
        top = got[0]["top_channels"]
        assert top and {"channel", "observed", "reconstructed", "score"} <= set(top[0])
        assert [(a["state"], a["alert_id"]) for a in got] == expected_alerts(cfg, models_dir, t, v)
        text = wait_until(
            lambda: (m := run.metrics()) and metric_value(m, "monitor_messages_received_total") >= len(t) and m,
            what="message counter",
        )
        assert metric_value(text, "monitor_messages_received_total") == len(t)
        assert metric_value(text, "monitor_alerts_total", {"state": "firing"}) == 1
        assert metric_value(text, "monitor_alerts_total", {"state": "resolved"}) == 1
        assert metric_value(text, "monitor_windows_scored_total") == len(t) - 16 + 1
        assert metric_value(text, "monitor_alert_state", {"stream": "site1/pump1"}) == 0
    finally:
        pub.close()
        alerts.close()
        assert run.stop() == 0


def test_bad_inputs_are_counted_by_reason_and_good_ones_around_them_processed(broker, models_dir):
    cfg = daemon_config(broker.port, models_dir)
    run = Running(cfg)
    pub = Publisher(broker.port)
    try:
        wait_until(lambda: run.service.ready()[0], what="ready")
        t, v, _ = feed_rows(200, fault=None)
        topic = "plant/site1/pump1"
        bad = [
            (topic, b"{not json"),  # malformed
            (topic, b"x" * 70000),  # oversized (max_payload_bytes 65536)
            (topic, b'{"flow": NaN}'),  # non-finite
            (topic, b'{"ts": 4000000000, "flow": 1.0}'),  # timestamp far in the future
            ("plant/site1/pump1/flow", b'{"value": Infinity}'),
            ("other/topic", b"1.0"),  # not subscribed: never arrives
        ]
        for i in range(len(t)):
            pub.publish(topic, row_payload(t[i], v[i]))
            if i == 50:
                for tp, payload in bad:
                    pub.publish(tp, payload)
            if i == 60:
                pub.publish(topic, row_payload(t[i], v[i]))  # duplicate
                pub.publish(topic, row_payload(t[i - 5], v[i - 5]))  # out of order / late
            if i == 70:
                pub.publish("plant/site1/pump1/unknown_chan", b"3.0")  # unknown channel
        for s in range(60):  # stream cap is 50
            pub.publish(f"plant/site9/p{s}", row_payload(t[0], v[0]))
        pub.publish(topic, row_payload(t[-1] + 1, v[-1])).wait_for_publish(5)

        def done():
            m = run.metrics()
            return m if metric_value(m, "monitor_windows_scored_total") >= len(t) + 1 - 16 + 1 else None

        text = wait_until(done, what="all good rows scored")
        assert metric_value(text, "monitor_windows_scored_total") == len(t) + 1 - 16 + 1
        rej = lambda reason: metric_value(text, "monitor_readings_rejected_total", {"reason": reason})  # noqa: E731
        drops = lambda reason: metric_value(text, "monitor_drops_total", {"reason": reason})  # noqa: E731
        assert rej("malformed") == 1
        assert rej("oversized") == 1
        assert rej("non_finite") == 2
        assert rej("future_timestamp") == 1
        assert drops("duplicate") == 5  # one per channel of the repeated row
        assert drops("out_of_order") + drops("late") == 5
        assert drops("unknown_channel") == 1
        assert drops("stream_cap") == 11 * 5  # 60 new streams, 49 fit beside site1/pump1 (cap 50)
        assert run.service.health()[0]
    finally:
        pub.close()
        assert run.stop() == 0


class ScoreProbe:
    """Collects the data timestamps of every scored window (the daemon's own output)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.times: list[float] = []
        self.versions: set[str] = set()

    def __call__(self, scores):
        with self.lock:
            self.times.extend(s.timestamp for s in scores)

    def seen(self) -> set[float]:
        with self.lock:
            return set(self.times)


def test_broker_restart_reconnects_resubscribes_and_loses_nothing(broker, models_dir):
    cfg = daemon_config(broker.port, models_dir)
    probe = ScoreProbe()
    run = Running(cfg, score_listeners=[probe])
    try:
        wait_until(lambda: run.service.ready()[0], what="ready")
        t, v, _ = feed_rows(600, fault=None)
        pub = Publisher(broker.port)
        pub.publish_rows("plant/site1/pump1", t[:200], v[:200])
        pub.close()
        wait_until(lambda: len(probe.seen()) == 200 - 16 + 1, what="first part scored")
        broker.stop()
        wait_until(lambda: not run.service.ingest.connected, what="daemon notices the broker is gone")
        broker.start()  # same port; persistence keeps the daemon's session and subscriptions
        pub = Publisher(broker.port, client_id="feed2")
        # published at once, likely before the daemon has reconnected: the broker queues them
        pub.publish_rows("plant/site1/pump1", t[200:], v[200:])
        pub.close()
        wait_until(lambda: run.service.ingest.connected, what="reconnect")
        expected = set(t[15:].tolist())  # every row once the first window is full
        wait_until(lambda: probe.seen() >= expected, timeout=30, what="every reading after the restart")
        assert probe.seen() == expected
        assert len(probe.times) == len(expected)  # and none twice
        text = run.metrics()
        assert metric_value(text, "monitor_mqtt_reconnects_total") >= 1
        assert metric_value(text, "monitor_mqtt_connected") == 1
    finally:
        assert run.stop() == 0


def test_broker_down_at_start_stays_up_not_ready_then_connects(tmp_path, models_dir):
    port = free_port()
    cfg = daemon_config(port, models_dir)
    probe = ScoreProbe()
    run = Running(cfg, score_listeners=[probe])
    try:
        time.sleep(1.0)
        ok, why = run.service.ready()
        assert not ok and "not connected" in why
        assert http_get(run.port, "/readyz")[0] == 503
        assert http_get(run.port, "/healthz")[0] == 200
        with Mosquitto(tmp_path / "late-broker", port=port) as late:
            wait_until(lambda: run.service.ready()[0], timeout=15, what="ready after the broker starts")
            t, v, _ = feed_rows(100, fault=None)
            pub = Publisher(late.port)
            pub.publish_rows("plant/site1/pump1", t, v)
            pub.close()
            wait_until(lambda: len(probe.seen()) == 100 - 16 + 1, what="readings processed")
    finally:
        assert run.stop() == 0


def _corrupt_copy(models_dir: Path, good: Path) -> str:
    bad = models_dir / "bad-bundle"
    shutil.copytree(good, bad)
    weights = bad / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    return bad.name


def _retrained_copy(models_dir: Path, good: Path) -> str:
    """A second valid bundle: same geometry, different version (as a retrain would give)."""
    manifest = json.loads((good / "manifest.json").read_text())
    new = models_dir / "v2-bundle"
    shutil.copytree(good, new)
    manifest["version"] = "v2-bundle"
    (new / "manifest.json").write_text(json.dumps(manifest))
    return new.name


def test_corrupt_bundle_is_refused_and_good_bundle_swaps_without_losing_messages(broker, models_dir, caplog):
    good = (models_dir / "current").resolve()
    cfg = daemon_config(broker.port, models_dir)
    probe = ScoreProbe()
    run = Running(cfg, score_listeners=[probe])
    pub = Publisher(broker.port)
    try:
        wait_until(lambda: run.service.ready()[0], what="ready")
        first = run.service.pipeline.model.version
        t, v, _ = feed_rows(900, fault=None)
        pub.publish_rows("plant/site1/pump1", t[:300], v[:300])
        set_current(models_dir, _corrupt_copy(models_dir, good))
        text = wait_until(
            lambda: (
                (m := run.metrics()) and metric_value(m, "monitor_model_loads_total", {"result": "rejected"}) >= 1 and m
            ),
            what="corrupt bundle refused",
        )
        assert run.service.pipeline.model.version == first
        assert "sha256" in (run.service.watcher.last_error or "")
        pub.publish_rows("plant/site1/pump1", t[300:600], v[300:600])
        set_current(models_dir, _retrained_copy(models_dir, good))
        # keep publishing while the swap happens
        pub.publish_rows("plant/site1/pump1", t[600:], v[600:])
        wait_until(lambda: run.service.pipeline.model.version == "v2-bundle", what="swap")
        expected = set(t[15:].tolist())
        wait_until(lambda: probe.seen() >= expected, what="every reading scored across the swap")
        assert probe.seen() == expected and len(probe.times) == len(expected)
        text = run.metrics()
        assert metric_value(text, "monitor_model_loads_total", {"result": "ok"}) == 2
        assert metric_value(text, "monitor_model_info", {"version": "v2-bundle"}) == 1
    finally:
        pub.close()
        assert run.stop() == 0


def _write_yaml(path: Path, cfg) -> Path:
    data = cfg.to_dict()
    data["mqtt"]["password"] = None
    path.write_text(yaml.safe_dump(data))
    return path


def test_sigterm_under_load_exits_zero_within_ten_seconds(broker, models_dir, tmp_path):
    cfg = daemon_config(
        broker.port, models_dir, metrics_port=free_port(), record={"enabled": True, "dir": str(tmp_path / "rec")}
    )
    conf = _write_yaml(tmp_path / "daemon.yaml", cfg)
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "run", "--config", str(conf)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        wait_until(
            lambda: http_get(cfg.metrics.port, "/readyz")[0] == 200 if proc.poll() is None else True,
            timeout=60,
            what="subprocess ready",
        )
        assert proc.poll() is None, proc.stderr.read()
        t, v, _ = feed_rows(3000, fault=None)
        pub = Publisher(broker.port)
        stop_feed = threading.Event()

        def feed():
            i = 0
            while not stop_feed.is_set() and i < len(t):
                pub.publish("plant/site1/pump1", row_payload(t[i], v[i]))
                i += 1

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        time.sleep(1.5)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
        elapsed = time.monotonic() - started
        stop_feed.set()
        feeder.join(5)
        pub.close()
        _, err = proc.communicate(timeout=5)
        assert code == 0, err[-2000:]
        assert elapsed < 10
        lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
        messages = [rec["message"] for rec in lines]
        assert "scoring thread drained and stopped" in messages
        assert messages[-1] == "monitor stopped"
        # nothing half-written: every recording file reads to its end, no truncated block
        stats = RecordingStats()
        recorded = list(iter_recordings([tmp_path / "rec"], stats=stats))
        assert recorded and stats.truncated_files == 0 and stats.corrupt_files == 0 and stats.malformed_lines == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_bad_config_exits_78_before_connecting(tmp_path):
    conf = tmp_path / "bad.yaml"
    conf.write_text("mqtt: {port: 99999}\n")
    res = subprocess.run(
        [sys.executable, "-m", "monitor", "run", "--config", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert res.returncode == 78
    assert "mqtt.port" in res.stderr


def test_tls_connects_with_the_right_ca_and_refuses_an_untrusted_server(tmp_path, models_dir, caplog):
    caplog.set_level(logging.DEBUG)
    pki = make_test_ca(tmp_path / "pki")
    secret = "pa55-w0rd-never-logged"
    good_tls = {"cafile": pki["ca"], "certfile": pki["server_cert"], "keyfile": pki["server_key"]}
    with Mosquitto(tmp_path / "tls-broker", tls=good_tls) as b:
        cfg = daemon_config(
            b.tls_port,
            models_dir,
            mqtt={
                "tls": {"enabled": True, "ca_file": pki["ca"]},
                "username": "mon",
                "password": secret,
                "client_id": "monitor-tls",
            },
        )
        run = Running(cfg)
        try:
            wait_until(lambda: run.service.ready()[0], what="TLS connection")
            assert secret not in run.metrics()
        finally:
            assert run.stop() == 0
    bad_tls = {
        "cafile": pki["untrusted_ca"],
        "certfile": pki["untrusted_server_cert"],
        "keyfile": pki["untrusted_server_key"],
    }
    with Mosquitto(tmp_path / "untrusted-broker", tls=bad_tls) as b:
        cfg = daemon_config(
            b.tls_port,
            models_dir,
            mqtt={
                "tls": {"enabled": True, "ca_file": pki["ca"]},
                "username": "mon",
                "password": secret,
                "client_id": "monitor-tls2",
            },
        )
        run = Running(cfg)
        try:
            wait_until(
                lambda: "certificate" in (run.service.ingest.last_error or "").lower(), what="a clear certificate error"
            )
            time.sleep(1.0)
            ok, why = run.service.ready()
            assert not ok and "certificate" in why.lower()
            assert not run.service.ingest.connected
            assert metric_value(run.metrics(), "monitor_mqtt_connected") == 0
        finally:
            assert run.stop() == 0
    assert secret not in caplog.text


def test_scores_and_denoised_readings_are_published_for_integrators(broker, models_dir):
    cfg = daemon_config(
        broker.port,
        models_dir,
        alerts={"scores_topic": "monitor/scores/{stream}", "denoised_topic": "monitor/denoised/{stream}"},
    )
    run = Running(cfg)
    scores = Subscriber(broker.port, "monitor/scores/#")
    denoised = Subscriber(broker.port, "monitor/denoised/#")
    pub = Publisher(broker.port)
    try:
        wait_until(lambda: run.service.ready()[0], what="ready")
        t, v, _ = feed_rows(100, fault=None)
        pub.publish_rows("plant/site1/pump1", t, v)
        n = 100 - 16 + 1
        wait_until(lambda: len(scores.messages) == n and len(denoised.messages) == n, what="integrator topics")
        s = scores.json()
        assert [m["ts"] for m in s] == list(t[15:]) and all(m["score"] >= 0 for m in s)
        assert scores.messages[0][0] == "monitor/scores/site1/pump1"
        d = denoised.json()
        assert set(d[0]) == {"stream", "ts", *CHANNELS}
        assert d[-1]["flow"] == pytest.approx(v[-1][0])  # this bundle has no filter: denoised == observed
    finally:
        pub.close()
        scores.close()
        denoised.close()
        assert run.stop() == 0


def test_sighup_applies_log_level_reports_restart_only_changes_and_survives_a_bad_file(models_dir, tmp_path):
    cfg = daemon_config(free_port(), models_dir, metrics_port=free_port())  # no broker needed for this
    conf = _write_yaml(tmp_path / "daemon.yaml", cfg)
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "run", "--config", str(conf)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    lines: list[str] = []  # stderr as it comes: each step waits for the daemon's own log line
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()

    def logged(text: str) -> bool:
        return any(text in line for line in list(lines))

    try:
        wait_until(lambda: http_get(cfg.metrics.port, "/healthz")[0] == 200, timeout=60, what="daemon up")
        text = conf.read_text()
        conf.write_text(text.replace("log_level: INFO", "log_level: DEBUG").replace("k: 3", "k: 2"))
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: logged("take effect after a restart"), what="the first reload")
        conf.write_text("alarm: {k: 0}\n")
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: logged("keeping the running config"), what="the refused reload")
        assert proc.poll() is None, "a bad config on SIGHUP must not stop the daemon"
        assert http_get(cfg.metrics.port, "/healthz")[0] == 200
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        reader.join(5)
        err = "".join(lines)
        assert proc.returncode == 0
        assert "SIGHUP: log level INFO -> DEBUG" in err
        assert "SIGHUP: changes in alarm take effect after a restart" in err
        assert "is invalid, keeping the running config" in err and "alarm.k" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
