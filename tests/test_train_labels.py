"""`monitor train --exclude-alerts` honours the operators' labels as `monitor retrain` does:
confirmed and unlabelled episodes are left out, false alarms are trained on as normal."""

from __future__ import annotations

import json
from pathlib import Path

from monitor.app import cli
from monitor.app.exclude import labelled_spans
from monitor.core.synthetic import CHANNELS, pump
from monitor.core.types import RawMessage
from monitor.io.alertlog import LABELS_FILE, write_label
from monitor.io.recording import RecordingWriter

CONFIG = """
stream: {channels: [flow, pressure, current, vibration, temperature], period_seconds: 1.0, max_gap_seconds: 5}
model: {architecture: dense, window_size: 16, hidden: [16], code_size: 4, epochs: 2, patience: 2, seed: 1}
calibration: {method: quantile, quantile: 0.99, factor: 1.5, holdout_fraction: 0.25}
topics:
  - {template: "plant/{site}/{asset}", format: json_multi, stream: "{site}/{asset}"}
models: {dir: MODELS}
"""
STREAM = "site1/pump1"


def _alert(alert_id: str, start: float, end: float) -> str:
    base = {"alert_id": alert_id, "stream": STREAM, "started_at": start, "threshold": 1.0}
    return "".join(
        json.dumps({**base, "state": state, "ended_at": ended}) + "\n"
        for state, ended in (("firing", None), ("resolved", end))
    )


def _recording(folder: Path, n: int) -> list[float]:
    folder.mkdir(parents=True, exist_ok=True)
    t, v, _ = pump(n, seed=2, steps_per_hour=0, start_time=1_700_000_000.0)
    with RecordingWriter(folder / "part-1.jsonl.gz") as w:
        for ti, row in zip(t, v, strict=True):
            body = json.dumps({"ts": float(ti), **{c: float(x) for c, x in zip(CHANNELS, row, strict=True)}})
            w.write(RawMessage(float(ti), "plant/site1/pump1", body.encode(), 1, False))
    return [float(x) for x in t]


def test_labelled_spans_keep_false_alarms_and_leave_out_the_rest(tmp_path):
    log = tmp_path / "alerts.ndjson"
    log.write_text(_alert("real", 100.0, 150.0) + _alert("noise", 200.0, 210.0) + _alert("unseen", 300.0, 320.0))
    spans, counts = labelled_spans([log])
    assert counts == {"confirmed": 0, "false_alarm": 0, "unlabelled": 3} and len(spans) == 3
    write_label(tmp_path / LABELS_FILE, "real", "confirmed")
    write_label(tmp_path / LABELS_FILE, "noise", "false_alarm")
    spans, counts = labelled_spans([log])
    assert counts == {"confirmed": 1, "false_alarm": 1, "unlabelled": 1}
    assert sorted(spans) == [(100.0, 150.0, STREAM), (300.0, 320.0, STREAM)]


def test_train_exclude_alerts_trains_on_false_alarm_spans(tmp_path, capsys):
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(CONFIG.replace("MODELS", str(tmp_path / "models")))
    rec = tmp_path / "rec"
    t = _recording(rec, 600)
    log = rec / "alerts.ndjson"
    log.write_text(_alert("fault-1", t[100], t[200]) + _alert("noise-1", t[400], t[450]))
    write_label(rec / LABELS_FILE, "fault-1", "confirmed")
    write_label(rec / LABELS_FILE, "noise-1", "false_alarm")
    args = ["train", "--config", str(cfg), "--data", str(rec), "--exclude-alerts", str(log), "--quiet"]
    assert cli.main([*args, "--no-promote"]) == 0
    err = capsys.readouterr().err
    assert "1 confirmed and 0 unlabelled left out, 1 labelled false alarm kept as normal data" in err
    # 5 channels x (the confirmed span's 101 rows + the 16-row window before it); the false alarm's stay
    assert f"left out {5 * (101 + 16)} rows/readings inside 1 alerting span(s)" in err
    assert f"training on {5 * (600 - 117)} readings/rows" in err
