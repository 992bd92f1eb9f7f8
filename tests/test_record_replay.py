"""Record and replay: byte-for-byte recordings, deterministic replays, live == offline, the demo."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from broker import Mosquitto, mosquitto_binary
from daemon_support import Publisher, Subscriber, daemon_config, feed_rows, row_payload, train_small_model, wait_until

from monitor.app.exclude import exclude_spans, parse_span, spans_from_alerts
from monitor.app.exclusions import exclude_for_retrain
from monitor.app.replay import replay_offline, replay_to_broker
from monitor.app.service import Service
from monitor.app.training import StreamData, load_training_data
from monitor.core.model.bundle import load_bundle
from monitor.core.scoring_model import ScoringModel
from monitor.core.types import RawMessage, Reading
from monitor.io.record import Recorder
from monitor.io.recording import RecordingWriter, read_recording

ROOT = Path(__file__).resolve().parents[1]
needs_broker = pytest.mark.skipif(mosquitto_binary() is None, reason="the mosquitto binary is not installed")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    train_small_model(d)
    return d


def test_recorder_rotates_by_size_and_every_file_reads_back_in_order(tmp_path):
    rec = Recorder(tmp_path / "rec", rotate_bytes=2000, flush_every=50, flush_seconds=0.05).start()
    sent = [RawMessage(1000.0 + i, f"s/{i % 3}", bytes([i % 256]) * (i % 40), 1, False) for i in range(600)]
    for i, m in enumerate(sent):
        rec.tap(m)
        if i % 100 == 99:
            time.sleep(0.1)  # let blocks flush so files grow and rotate
    rec.close()
    assert len(rec.files) > 1 and rec.stats["recorded"] == 600 and rec.stats["dropped"] == 0
    got = [m for f in sorted(rec.files) for m in read_recording(f)]
    assert got == sent


def test_recorder_counts_write_errors_and_keeps_going(tmp_path):
    errors = []
    rec = Recorder(tmp_path / "rec", flush_every=10, flush_seconds=0.05, on_error=errors.append).start()
    for i in range(10):
        rec.tap(RawMessage(float(i), "a", b"1", 0, False))
    wait_until(lambda: rec.stats["recorded"] == 10, what="first block")
    rec._close_writer()
    shutil.rmtree(tmp_path / "rec")  # ...in a directory that is gone: opening it fails
    for i in range(10):
        rec.tap(RawMessage(float(i), "a", b"2", 0, False))
    wait_until(lambda: rec.stats["write_errors"] >= 1, what="write error counted")
    (tmp_path / "rec").mkdir()  # the disk "recovers": recording resumes
    for i in range(10):
        rec.tap(RawMessage(float(i), "a", b"3", 0, False))
    wait_until(lambda: rec.stats["recorded"] == 20, what="recording resumed")
    rec.close()
    assert errors and rec.stats["dropped"] == 10


def _recorded_feed(tmp_path, fault=True) -> Path:
    t, v, _ = feed_rows(1000 if fault else 300, fault=(700, 820) if fault else None)
    path = tmp_path / "feed.jsonl.gz"
    with RecordingWriter(path) as w:
        for ti, vi in zip(t, v, strict=True):
            w.write(RawMessage(float(ti) + 0.01, "plant/site1/pump1", row_payload(ti, vi), 1, False))
    return path


@pytest.mark.slow  # trains a model
def test_offline_replay_twice_gives_identical_alerts(tmp_path, models):
    cfg = daemon_config(1883, models)
    model = ScoringModel.from_bundle(load_bundle(models))
    feed = _recorded_feed(tmp_path)
    a = replay_offline([feed], cfg, model)
    b = replay_offline([feed], cfg, model)
    assert [x.to_dict() for x in a.alerts] == [x.to_dict() for x in b.alerts]
    assert [x.state for x in a.alerts] == ["firing", "resolved"]
    # other batch sizes (as live traffic gives) take the same decisions; scores agree to float32 rounding
    c = replay_offline([feed], cfg, model, batch_messages=7)
    assert decisions(c.alerts) == decisions(a.alerts)
    for x, y in zip(a.alerts, c.alerts, strict=True):
        assert x.peak_score == pytest.approx(y.peak_score, rel=1e-4)
    assert a.windows == c.windows == 1000 - 16 + 1


def decisions(alerts) -> list[tuple]:
    """What an alert decides: who, what, when, which model, which channels."""
    out = []
    for a in alerts:
        d = a if isinstance(a, dict) else a.to_dict()
        out.append(
            (
                d["alert_id"],
                d["stream"],
                d["state"],
                d["started_at"],
                d["ended_at"],
                d["model_version"],
                d["threshold"],
                [c["channel"] for c in d["top_channels"]],
            )
        )
    return out


def test_replay_to_broker_keeps_order_and_relative_timing():
    msgs = [RawMessage(100.0 + dt, "t", str(i).encode(), 1, False) for i, dt in enumerate([0, 0.5, 0.5, 2.0])]
    now = [0.0]
    sent = []

    def sleep(s):
        now[0] += s

    n = replay_to_broker(msgs, lambda *a: sent.append((now[0], a[1])), speed=2.0, sleep=sleep, clock=lambda: now[0])
    assert n == 4
    assert [p for _, p in sent] == [b"0", b"1", b"2", b"3"]
    assert [round(t, 6) for t, _ in sent] == [0.0, 0.25, 0.25, 1.0]


@needs_broker
@pytest.mark.slow  # the recorder runs for a fixed --duration
def test_record_cli_captures_messages_byte_for_byte(tmp_path):
    with Mosquitto(tmp_path / "broker") as b:
        cfg = daemon_config(b.port, tmp_path / "none")
        conf = tmp_path / "rec.yaml"
        data = cfg.to_dict()
        data["mqtt"]["password"] = None
        data["mqtt"]["client_id"] = "recorder"
        conf.write_text(yaml.safe_dump(data))
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "monitor",
                "record",
                "--config",
                str(conf),
                "--out",
                str(tmp_path / "rec"),
                "--duration",
                "10",  # from its start: room for a slow start-up before the subscription below
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        # the recorder's subscription is in the broker's log before anything is published
        wait_until(lambda: re.search(r"recorder\S* \d plant/", b.log()), timeout=60, what="the recorder subscribed")
        pub = Publisher(b.port)
        payloads = [bytes(range(256)), b"", "ünïcode".encode(), b'{"value": 1}', b"\xff\xfe"]
        for i, p in enumerate(payloads):
            pub.publish(f"plant/s/a{i}/x", p).wait_for_publish(5)
        pub.close()
        _out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    got = [m for f in sorted((tmp_path / "rec").iterdir()) for m in read_recording(f)]
    assert [m.payload for m in got] == payloads
    assert [m.topic for m in got] == [f"plant/s/a{i}/x" for i in range(len(payloads))]


@needs_broker
def test_live_alerts_equal_offline_replay_of_the_daemons_own_recording(tmp_path, models):
    with Mosquitto(tmp_path / "broker") as b:
        cfg = daemon_config(b.port, models, record={"enabled": True, "dir": str(tmp_path / "rec")})
        svc = Service(cfg)
        svc.start()
        alerts = Subscriber(b.port, "monitor/alerts/#")
        try:
            wait_until(lambda: svc.ready()[0], what="ready")
            t, v, _ = feed_rows()
            pub = Publisher(b.port)
            pub.publish_rows("plant/site1/pump1", t, v)
            pub.close()
            wait_until(lambda: len(alerts.messages) >= 2, what="live alerts")
        finally:
            svc.shutdown()
            alerts.close()
    live = alerts.json()
    model = ScoringModel.from_bundle(load_bundle(models))
    offline = replay_offline([tmp_path / "rec"], cfg, model)
    assert decisions(offline.alerts) == decisions(live)
    for x, y in zip(offline.alerts, live, strict=True):
        assert x.peak_score == pytest.approx(y["peak_score"], rel=1e-4)
    # the daemon also wrote its alerts beside the recordings, and a retrain leaves those spans out
    written = [json.loads(line) for line in (tmp_path / "rec" / "alerts.ndjson").read_text().splitlines()]
    assert decisions(written) == decisions(live)
    spans = spans_from_alerts([tmp_path / "rec" / "alerts.ndjson"])
    assert len(spans) == 1 and spans[0][:2] == (live[0]["started_at"], live[1]["ended_at"])
    data = load_training_data([tmp_path / "rec"], cfg)
    before = len(data[0].readings)
    ex = exclude_for_retrain(data, cfg, [str(tmp_path / "rec")], None, no_exclusions=False)
    info = ex.info
    assert ex.check["passed"] and [e.alert_id for e in ex.episodes] == [live[0]["alert_id"]]
    assert info["spans"] == 1 and info["removed"] > 0
    assert all(not (spans[0][0] - 16 <= r.timestamp <= spans[0][1]) for r in data[0].readings)
    assert len(data[0].readings) == before - info["removed"]


def test_exclude_spans_removes_rows_and_readings_inside_spans():
    sd = StreamData(
        "s",
        ["a"],
        np.arange(10.0),
        np.arange(10.0)[:, None],
        readings=[Reading("s", "a", float(i), 0.0) for i in range(10)],
    )
    other = StreamData("o", ["a"], np.arange(10.0), np.arange(10.0)[:, None])
    removed = exclude_spans([sd, other], [(3.0, 5.0, "s"), parse_span("8", "8")], pad_seconds=1.0)
    # "s": [3, 5] padded to [2, 5], and [8, 8] padded to [7, 8]; "o": only the unlabelled span
    assert list(sd.timestamps) == [0, 1, 6, 9]
    assert [r.timestamp for r in sd.readings] == [0, 1, 6, 9]
    assert list(other.timestamps) == [0, 1, 2, 3, 4, 5, 6, 9]
    assert removed == 6 + 6 + 2


@needs_broker
@pytest.mark.slow
def test_demo_runs_end_to_end_in_bounded_mode_and_alerts_the_fault():
    res = subprocess.run(
        # 5 epochs instead of 25 and the 12 min of live feed at 120x: ~15 s of CPU instead of ~140 s
        [
            sys.executable,
            "-m",
            "monitor",
            "demo",
            *("--duration", "150", "--metrics-port", "0", "--speed", "120", "--epochs", "5", "--threads", "1"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "[alert] FIRING" in res.stdout and "fault ALERTED" in res.stdout
    assert "/metrics" in res.stdout
