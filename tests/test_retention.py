"""Recording retention (oldest first, never the open file), the retrain data window, deploy files."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import yaml

from monitor.app.retrain import window_files
from monitor.core.config import load_config
from monitor.core.types import RawMessage
from monitor.io.record import Recorder
from monitor.io.recording import RecordingWriter, iter_recordings
from monitor.io.retention import enforce, plan_deletions

ROOT = Path(__file__).resolve().parents[1]
NOW = 1_800_000_000.0


def _file(folder: Path, name: str, age_hours: float, n: int = 5) -> Path:
    path = folder / name
    with RecordingWriter(path) as w:
        for i in range(n):
            w.write(RawMessage(NOW + i, "t", b"1.0", 0, False))
    os.utime(path, (NOW - age_hours * 3600, NOW - age_hours * 3600))
    return path


def test_plan_deletes_oldest_first_and_never_the_kept_file():
    files = [(Path(f"f{i}"), NOW - (10 - i) * 3600, 100) for i in range(10)]  # f0 oldest
    assert plan_deletions(files, NOW, 0, 0, set()) == []
    assert plan_deletions(files, NOW, 7.5 * 3600, 0, set()) == [Path("f0"), Path("f1"), Path("f2")]  # 10, 9, 8 h old
    assert plan_deletions(files, NOW, 0, 650, set()) == [Path(f"f{i}") for i in range(4)]
    # the open file is never deleted, even when it alone is over the budget
    assert plan_deletions(files[:1], NOW, 1, 10, {Path("f0")}) == []
    assert plan_deletions(files, NOW, 0, 650, {Path("f1")}) == [Path("f0"), Path("f2"), Path("f3"), Path("f4")]


def test_enforce_keeps_the_alert_log_and_labels(tmp_path):
    old = _file(tmp_path, "rec-1.jsonl.gz", 48)
    new = _file(tmp_path, "rec-2.jsonl.gz", 1)
    (tmp_path / "alerts.ndjson").write_text("")
    (tmp_path / "alert-labels.json").write_text("{}")
    os.utime(tmp_path / "alerts.ndjson", (NOW - 99 * 3600,) * 2)
    res = enforce(tmp_path, max_age_seconds=24 * 3600, max_bytes=0, keep=set(), now=NOW)
    assert (res.deleted_files, res.deleted_bytes) == (1, res.deleted_bytes) and res.deleted_bytes > 0
    assert not old.exists() and new.exists()
    assert (tmp_path / "alerts.ndjson").exists() and (tmp_path / "alert-labels.json").exists()


def test_recorder_deletes_oldest_files_never_the_open_one_and_keeps_recording(tmp_path):
    deleted: list[tuple[int, int]] = []
    rec = Recorder(
        tmp_path,
        rotate_bytes=1,  # a new file at every drain
        flush_every=10,
        flush_seconds=0.01,
        max_bytes=2000,
        on_deleted=lambda n, b: deleted.append((n, b)),
    ).start()
    seen_files: list[Path] = []
    try:
        for batch in range(12):
            for i in range(10):
                rec.tap(RawMessage(NOW + batch * 10 + i, "plant/a", f"{batch}.{i}".encode(), 0, False))
            deadline = time.monotonic() + 10
            while rec.stats["recorded"] < (batch + 1) * 10 and time.monotonic() < deadline:
                time.sleep(0.005)
            assert rec.stats["recorded"] == (batch + 1) * 10
            current = rec.files[-1]
            assert current.exists()  # the open file survives every retention pass
            seen_files.append(current)
    finally:
        rec.close()
    remaining = sorted(p for p in tmp_path.iterdir())
    assert rec.stats["deleted_files"] > 0 and sum(n for n, _ in deleted) == rec.stats["deleted_files"]
    assert sum(p.stat().st_size for p in remaining) <= 2000 + max(p.stat().st_size for p in remaining)
    gone = [p for p in rec.files if not p.exists()]
    assert gone == rec.files[: len(gone)]  # the oldest went first
    payloads = [m.payload for m in iter_recordings(tmp_path)]
    assert payloads[-1] == b"11.9"  # still recording to the end


def test_retrain_window_skips_old_recordings_unread(tmp_path):
    rec = tmp_path / "recordings"
    rec.mkdir()
    paths = [_file(rec, f"rec-{i}.jsonl.gz", age) for i, age in enumerate([800, 200, 30, 1])]
    csv = tmp_path / "extra.csv"
    csv.write_text("timestamp,a\n1,2\n")
    os.utime(csv, (NOW - 9999 * 3600,) * 2)
    files, skipped = window_files([str(rec), str(csv)], 720)
    assert skipped == 1 and files == [str(p) for p in paths[1:]] + [str(csv)]  # CSV always read
    assert window_files([str(rec)], 0) == ([str(rec)], 0)


def test_deploy_files_pass_the_data_window_and_set_retention():
    unit = (ROOT / "deploy/systemd/monitor-retrain.service").read_text()
    assert re.search(r"--max-age-hours 720\b", unit)
    cron = yaml.safe_load((ROOT / "deploy/k8s/cronjob.yaml").read_text())
    args = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--max-age-hours") + 1] == "720"
    compose = yaml.safe_load((ROOT / "deploy/docker-compose.yml").read_text())
    cmd = compose["services"]["retrain"]["command"]
    assert cmd[cmd.index("--max-age-hours") + 1] == "720"
    cfg = load_config(ROOT / "deploy/config/monitor.yaml", environ={})
    # a month, read thinned to what bench/README.md measured within MemoryMax=6G
    assert cfg.retrain.max_age_hours == 720 and 0 < cfg.retrain.max_read_hours <= 168
    assert cfg.record.max_age_hours == 2160 and cfg.record.max_bytes == 20 * 1024**3
    cm = yaml.safe_load((ROOT / "deploy/k8s/configmap.yaml").read_text())
    record = yaml.safe_load(cm["data"]["monitor.yaml"])["record"]
    assert record["max_age_hours"] == 2160 and record["max_bytes"] == 20 * 1024**3
