"""A long retrain window read thinned by whole files: the newest half in full, one older
file in k, every file of a past episode (`monitor.app.readplan`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from monitor.app import retrain
from monitor.app.exclusions import replay_spans
from monitor.app.readplan import plan_reads
from monitor.core.config import load_config
from monitor.core.synthetic import CHANNELS, Fault, pump
from monitor.core.types import RawMessage
from monitor.io.alertlog import labels_path, write_label
from monitor.io.recording import RecordingWriter

NOW = 1_800_000_000.0
STREAM = "site1/pump1"


def _hourly(folder: Path, hours: int) -> list[Path]:
    """`hours` recording files, one an hour, the last written at NOW (oldest first)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for h in range(hours):
        path = folder / f"rec-{h:04d}.jsonl.gz"
        with RecordingWriter(path) as w:
            w.write(RawMessage(NOW - (hours - h) * 3600 + 1, "t", b"1.0", 0, False))
        at = NOW - (hours - 1 - h) * 3600
        os.utime(path, (at, at))
        out.append(path)
    return out


def test_a_window_within_the_read_bound_is_read_in_full(tmp_path):
    files = _hourly(tmp_path / "rec", 48)
    plan = plan_reads([str(tmp_path / "rec")], 720, 48)
    assert plan.paths == [str(p) for p in files] and plan.thinned == 0 and plan.every == 1
    # no window and no bound: the folder as given, unexpanded
    assert plan_reads([str(tmp_path / "rec")], 0, 0).paths == [str(tmp_path / "rec")]
    assert plan_reads([str(tmp_path / "rec")], 0, 100).paths == [str(tmp_path / "rec")]


def test_a_long_window_reads_the_newest_half_and_one_older_file_in_k(tmp_path):
    files = _hourly(tmp_path / "rec", 200)  # last written 199 h .. 0 h ago
    plan = plan_reads([str(tmp_path / "rec")], 720, 40)
    recent = [str(p) for p in files[-21:]]  # last written within the newest 20 h (+ the slack)
    older = [str(p) for p in files[:-21]]  # 199 h .. 21 h ago: 179 h to spread 20 h of reads over
    assert plan.every == 9
    assert plan.paths[-21:] == recent
    assert plan.paths[:-21] == older[::-1][::9][::-1]  # counting back from the newest older file
    assert plan.thinned == len(older) - len(older[::9]) and plan.for_episodes == 0
    assert len(plan.paths) <= 21 + 179 / 9 + 1  # about max_read_hours of files
    info = plan.info(720, 40)
    assert info["files_read"] == len(plan.paths) and info["files_thinned"] == plan.thinned
    # the window still comes first: files older than it are skipped, not thinned
    plan = plan_reads([str(tmp_path / "rec")], 100, 40)
    in_window = set(map(str, files[99:]))
    assert plan.skipped == 99 and plan.every == 4 and all(p in in_window for p in plan.paths)


def test_files_of_a_past_episode_are_always_read(tmp_path):
    files = _hourly(tmp_path / "rec", 200)
    thinned = set(map(str, files)) - set(plan_reads([str(tmp_path / "rec")], 720, 40).paths)
    target = sorted(thinned)[10]
    at = os.stat(target).st_mtime
    plan = plan_reads([str(tmp_path / "rec")], 720, 40, [(at - 1800, at - 1700)])  # inside the file's hour
    assert target in plan.paths and plan.for_episodes >= 1
    assert plan.thinned == len(thinned) - plan.for_episodes
    assert str(files[files.index(Path(target)) - 1]) not in plan.paths  # the hour before: not needed


def _alert(alert_id: str, start: float, end: float) -> str:
    base = {"alert_id": alert_id, "stream": STREAM, "started_at": start, "threshold": 1.0, "group": "default"}
    return "".join(
        json.dumps({**base, "state": state, "ended_at": ended}) + "\n"
        for state, ended in (("firing", None), ("resolved", end))
    )


CONFIG = """
stream: {channels: [flow, pressure, current, vibration, temperature], period_seconds: 1.0, max_gap_seconds: 5}
model: {architecture: dense, window_size: 16, hidden: [32], code_size: 6, epochs: 10, patience: 4, seed: 1}
calibration: {method: quantile, quantile: 0.999, factor: 1.5, holdout_fraction: 0.25}
alarm: {k: 3, n: 5, resolve_m: 10}
topics:
  - {template: "plant/{site}/{asset}", format: json_multi, stream: "{site}/{asset}"}
models: {dir: MODELS}
"""


def test_replay_spans_are_the_episodes_the_gate_replays(tmp_path):
    cfg_path = tmp_path / "monitor.yaml"
    cfg_path.write_text(CONFIG.replace("MODELS", str(tmp_path / "models")))
    cfg = load_config(cfg_path)
    rec = tmp_path / "rec"
    rec.mkdir()
    (rec / "alerts.ndjson").write_text(_alert("a", 1000.0, 1100.0) + _alert("fa", 5000.0, 5100.0))
    write_label(labels_path(rec / "alerts.ndjson"), "fa", "false_alarm")
    spans = replay_spans(cfg, [str(rec)], None, False)
    assert spans == [(1000.0 - 3 * 16, 1100.0 + 16)]  # the false alarm is not replayed
    assert replay_spans(cfg, [str(rec)], None, True) == []


@pytest.mark.slow
def test_retrain_on_a_thinned_window_still_replays_an_old_episode(tmp_path, capsys):
    """Ten 'hours' of 400 s each: with --max-read-hours the older files are thinned, the
    file with the past fault is read anyway and the gate replays it."""
    cfg_path = tmp_path / "monitor.yaml"
    cfg_path.write_text(CONFIG.replace("MODELS", str(tmp_path / "models")))
    rec = tmp_path / "rec"
    rec.mkdir()
    per, n_files = 400, 12
    t, v, _ = pump(per * n_files, seed=7, steps_per_hour=0, faults=[Fault(450, 700)], start_time=NOW)
    for f in range(n_files):
        path = rec / f"rec-{f:03d}.jsonl.gz"
        with RecordingWriter(path) as w:
            for i in range(f * per, (f + 1) * per):
                body = json.dumps({"ts": float(t[i]), **dict(zip(CHANNELS, v[i].tolist(), strict=True))})
                w.write(RawMessage(float(t[i]), "plant/site1/pump1", body.encode(), 1, False))
        # spread the files' last writes an hour apart, so the window spans 11 h
        at = NOW + 3600.0 * f
        os.utime(path, (at, at))
    (rec / "alerts.ndjson").write_text(_alert("fault-1", float(t[450]), float(t[700])))
    code = retrain.main(["--config", str(cfg_path), "--data", str(rec), "--no-plots", "--max-read-hours", "4"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    verdict = json.loads(lines[-1])
    window = verdict["window"]
    assert window["read_every"] == 5 and window["files_thinned"] > 0 and window["files_for_episodes"] >= 1
    assert window["files_read"] + window["files_thinned"] == n_files
    episodes = next(c for c in verdict["checks"] if c["check"] == "past_episodes")["episodes"]
    assert episodes == {"fault-1": {"label": "unlabelled", "candidate": True, "current": None}}, verdict
    assert code == 0, [c for c in verdict["checks"] if not c["passed"]]
