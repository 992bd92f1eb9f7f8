"""The retrain gate's detection-power checks, the alert log's one name, and operator labels.

Real torch on small data: one bundle is trained per module (a few seconds); the end-to-end
`monitor retrain` scenarios are marked slow.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from monitor.app import cli, retrain
from monitor.app.exclude import regime_spans_from_alerts
from monitor.app.exclusions import exclude_for_retrain
from monitor.app.gates import (
    CanarySettings,
    Episode,
    canary_check,
    episode_check,
    plan_canaries,
    run_canaries,
    run_episodes,
    threshold_check,
)
from monitor.app.training import StreamData, load_training_data, train_bundle
from monitor.core.config import load_config
from monitor.core.model.bundle import current_bundle_path, list_bundles, load_bundle
from monitor.core.scoring_model import ScoringModel
from monitor.core.synthetic import CHANNELS, Fault, pump, write_csv
from monitor.core.types import RawMessage
from monitor.io.alertlog import ALERTS_FILE, LABELS_FILE, find_alert_log, read_labels, write_label
from monitor.io.recording import RecordingWriter, recording_files
from monitor.io.sinks import JSONLinesSink

CONFIG = """
stream: {channels: [flow, pressure, current, vibration, temperature], period_seconds: 1.0, max_gap_seconds: 5}
model: {architecture: dense, window_size: 16, hidden: [32], code_size: 6, epochs: 10, patience: 4, seed: 1}
calibration: {method: quantile, quantile: 0.999, factor: 1.5, holdout_fraction: 0.25}
alarm: {k: 3, n: 5, resolve_m: 10}
data: {stream: site1/pump1}
topics:
  - {template: "plant/{site}/{asset}", format: json_multi, stream: "{site}/{asset}"}
models: {dir: MODELS}
record: {dir: RECORD}
"""
STREAM = "site1/pump1"


def _config(tmp: Path) -> Path:
    path = tmp / "monitor.yaml"
    path.write_text(CONFIG.replace("MODELS", str(tmp / "models")).replace("RECORD", str(tmp / "recordings")))
    return path


def _record(folder: Path, n: int, seed: int, faults=None, start: float = 1_700_000_000.0):
    """A recorder's folder of json_multi messages; returns the row times."""
    folder.mkdir(parents=True, exist_ok=True)
    t, v, _ = pump(n, seed=seed, steps_per_hour=0, faults=faults, start_time=start)
    with RecordingWriter(folder / f"part-{int(start)}.jsonl.gz") as w:
        for ti, row in zip(t, v, strict=True):
            body = json.dumps({"ts": float(ti), **{c: float(x) for c, x in zip(CHANNELS, row, strict=True)}})
            w.write(RawMessage(float(ti), "plant/site1/pump1", body.encode(), 1, False))
    return t


def _alert(alert_id: str, start: float, end: float) -> str:
    base = {"alert_id": alert_id, "stream": STREAM, "started_at": start, "threshold": 1.0, "group": "default"}
    return (
        json.dumps({**base, "state": "firing", "ended_at": None})
        + "\n"
        + json.dumps({**base, "state": "resolved", "ended_at": end})
        + "\n"
    )


def _verdict(capsys) -> dict:
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(lines) == 1
    return json.loads(lines[0])


def _check(v: dict, name: str) -> dict:
    return next(c for c in v["checks"] if c["check"] == name)


# --------------------------------------------------------------------------- a good and a blind model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(config, a good model, the same model made blind, held-out normal data)."""
    tmp = tmp_path_factory.mktemp("gates")
    cfg = load_config(_config(tmp))
    t, v, _ = pump(2000, seed=3, steps_per_hour=0)
    train = StreamData(STREAM, list(CHANNELS), t[:1500], v[:1500])
    hold = StreamData(STREAM, list(CHANNELS), t[1500:], v[1500:])
    out = train_bundle([train], cfg, tmp / "models", make_current=False, write_plots=False)
    good = ScoringModel.from_bundle(load_bundle(out.bundle_path))
    # scores are error / threshold: a threshold 1000x higher is the model that detects nothing
    blind = dataclasses.replace(good, version="blind", threshold=good.threshold * 1000)
    return cfg, good, blind, hold


def test_canaries_tell_a_good_model_from_a_blind_one(models):
    cfg, good, blind, hold = models
    cs = CanarySettings()
    plan = plan_canaries([hold], good, cs)
    assert plan is not None and len(plan.canaries) == 12 and len(plan.segments) == 3
    good_c = run_canaries(cfg, good, plan, None)
    blind_c = run_canaries(cfg, blind, plan, None)
    assert good_c["rate"] >= 0.8, good_c
    assert blind_c["detected"] == 0 and blind_c["clean_alarms"] == 0
    check = canary_check(blind_c, good_c, cs)
    assert not check["passed"]
    assert "detected 0/12" in check["detail"] and "spike#1/" in check["detail"]
    assert canary_check(good_c, good_c, cs)["passed"]


def test_a_model_that_alarms_all_the_time_detects_no_canary(models):
    cfg, good, _, hold = models
    noisy = dataclasses.replace(good, version="noisy", threshold=good.threshold / 1000)
    plan = plan_canaries([hold], good, CanarySettings())
    res = run_canaries(cfg, noisy, plan, None)
    assert res["detected"] == 0 and res["clean_alarms"] == 12


def test_past_episodes_are_replayed(models):
    cfg, good, blind, _ = models
    t, v, _ = pump(400, seed=9, steps_per_hour=0, faults=[Fault(150, 300)], start_time=1_700_050_000.0)
    data = [StreamData(STREAM, list(CHANNELS), t, v)]
    fault = Episode("a-fault", STREAM, t[150], t[300], "confirmed", data)
    quiet = Episode(
        "a-quiet", STREAM, t[20], t[60], "unlabelled", [StreamData(STREAM, list(CHANNELS), t[:140], v[:140])]
    )
    got = run_episodes(cfg, good, [fault, quiet], None, 32.0)
    assert got == {
        "a-fault": {"label": "confirmed", "detected": True},
        "a-quiet": {"label": "unlabelled", "detected": False},
    }
    check = episode_check(got, None, [])
    assert not check["passed"] and "missed a-quiet (unlabelled)" in check["detail"]
    assert not episode_check(run_episodes(cfg, blind, [fault], None, 32.0), got, [])["passed"]
    assert episode_check({}, None, ["x"])["passed"]  # nothing to replay


@pytest.mark.parametrize(
    "cand, cur, allow, passed",
    [
        (5.13, 0.0133, False, False),  # the reported 386x jump
        (5.13, 0.0133, True, True),  # overridden on purpose
        (0.02, 0.0133, False, True),
        (0.0133 / 6, 0.0133, False, False),  # a drop counts too
        (5.13, None, False, True),  # nothing to compare with
    ],
)
def test_threshold_jump(cand, cur, allow, passed):
    check = threshold_check(cand, cur, 5.0, allow)
    assert check["passed"] is passed
    if cur is not None:
        assert check["ratio"] == pytest.approx(cand / cur, rel=1e-5)


# --------------------------------------------------------------------------- alert log and labels


def test_one_alert_log_name_and_the_old_one_with_a_warning(tmp_path, caplog):
    _record(tmp_path, 10, 1)
    assert find_alert_log(tmp_path) is None
    (tmp_path / "alerts.jsonl").write_text(_alert("a1", 1.0, 2.0))
    with caplog.at_level(logging.WARNING):
        assert find_alert_log(tmp_path) == tmp_path / "alerts.jsonl"
    assert "old name" in caplog.text and "alerts.ndjson" in caplog.text
    (tmp_path / "alerts.ndjson").write_text(_alert("a1", 1.0, 2.0))
    assert find_alert_log(tmp_path) == tmp_path / "alerts.ndjson"
    assert [p.name for p in recording_files(tmp_path)] == ["part-1700000000.jsonl.gz"]  # logs are not recordings


def test_label_command_stores_labels_atomically_beside_the_log(tmp_path, capsys):
    cfg = _config(tmp_path)
    rec = tmp_path / "recordings"
    rec.mkdir()
    (rec / "alerts.ndjson").write_text(_alert("a1", 10.0, 20.0) + _alert("a2", 30.0, 40.0))
    assert cli.main(["label", "a1", "--confirmed", "--note", "bearing replaced", "--config", str(cfg)]) == 0
    assert cli.main(["label", "a2", "--false-alarm", "--alerts", str(rec / "alerts.ndjson")]) == 0
    labels = read_labels(rec / LABELS_FILE)
    assert labels["a1"]["label"] == "confirmed" and labels["a1"]["note"] == "bearing replaced"
    assert labels["a1"]["started_at"] == 10.0 and labels["a1"]["stream"] == STREAM
    assert labels["a2"]["label"] == "false_alarm"
    assert sorted(p.name for p in rec.iterdir()) == ["alert-labels.json", "alerts.ndjson"]  # no temp file left
    capsys.readouterr()
    assert cli.main(["label", "a1", "--false-alarm", "--config", str(cfg)]) == 0  # relabelled, and says so
    assert read_labels(rec / LABELS_FILE)["a1"]["label"] == "false_alarm"
    assert "as false_alarm (was confirmed)" in capsys.readouterr().out
    assert cli.main(["label", "--list", "--config", str(cfg)]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert rows[0] == ["alert_id", "kind", "stream", "started_at", "ended_at", "label"]
    assert [r[0] for r in rows] == ["alert_id", "a1", "a2"] and rows[1][5] == rows[2][5] == "false_alarm"
    assert rows[1][1] == "anomaly"
    assert cli.main(["label", "a1", "--config", str(cfg)]) == 2  # no verdict given
    capsys.readouterr()

    assert cli.main(["label", "nope", "--confirmed", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "no alert 'nope'" in err and "2 alerts" in err and "a2" in err
    (rec / "alerts.ndjson").unlink()
    assert cli.main(["label", "a1", "--confirmed", "--config", str(cfg)]) == 1
    assert "no alert log" in capsys.readouterr().err


def test_labels_file_rejects_garbage(tmp_path):
    (tmp_path / LABELS_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_labels(tmp_path / LABELS_FILE)
    with pytest.raises(ValueError, match="label must be one of"):
        write_label(tmp_path / "x.json", "a", "maybe")


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_retrain_refuses_the_blind_model_of_the_reported_failure(tmp_path, capsys):
    """A model trained on normal data serves; the new recording has a long fault and no alert
    log. The candidate calibrates on the fault: it must not be promoted."""
    cfg = _config(tmp_path)
    _record(tmp_path / "week1", 1500, 5)
    assert retrain.main(["--config", str(cfg), "--data", str(tmp_path / "week1"), "--no-plots", "--no-exclusions"]) == 0
    v = _verdict(capsys)
    assert _check(v, "canary_detection")["candidate"]["rate"] >= 0.8
    serving = current_bundle_path(tmp_path / "models")

    _record(tmp_path / "week2", 3000, 6, faults=[Fault(1400, 2390)], start=1_700_100_000.0)
    code = retrain.main(["--config", str(cfg), "--data", str(tmp_path / "week2"), "--no-plots"])
    v = _verdict(capsys)
    assert code == 3 and v["promoted"] is False
    failed = {c["check"]: c["detail"] for c in v["checks"] if not c["passed"]}
    assert set(failed) == {"alert_log", "canary_detection", "threshold_jump"}, failed
    assert "alerts.ndjson" in failed["alert_log"] and "--no-exclusions" in failed["alert_log"]
    assert "candidate missed" in failed["canary_detection"]
    assert "beyond the allowed factor 5" in failed["threshold_jump"]
    assert _check(v, "false_alarm_budget")["passed"]  # what used to let it through
    assert current_bundle_path(tmp_path / "models") == serving
    assert [b.version for b in list_bundles(tmp_path / "models")] == [serving.name]
    prom = (tmp_path / "models" / "retrain.prom").read_text()
    assert 'monitor_retrain_check_passed{check="canary_detection"} 0.0' in prom
    assert 'monitor_retrain_check_passed{check="false_alarm_budget"} 1.0' in prom
    assert "monitor_retrain_current_canary_detection_rate 1.0" in prom

    # without a serving model the absolute floor still refuses it
    code = retrain.main(
        [
            "--config",
            str(cfg),
            "--data",
            str(tmp_path / "week2"),
            "--no-plots",
            "--no-exclusions",
            "--out",
            str(tmp_path / "fresh"),
        ]
    )
    v = _verdict(capsys)
    assert code == 3 and not _check(v, "canary_detection")["passed"]
    assert "floor 0.5" in _check(v, "canary_detection")["detail"]


@pytest.mark.slow
def test_retrain_with_labels_excludes_the_confirmed_fault_and_must_detect_it(tmp_path, capsys):
    cfg = _config(tmp_path)
    rec = tmp_path / "recordings"
    t = _record(rec, 2000, 7, faults=[Fault(500, 800)])
    (rec / "alerts.ndjson").write_text(_alert("fault-1", t[500], t[800]) + _alert("noise-1", t[1000], t[1100]))
    assert cli.main(["label", "fault-1", "--confirmed", "--config", str(cfg)]) == 0
    assert cli.main(["label", "noise-1", "--false-alarm", "--config", str(cfg)]) == 0
    capsys.readouterr()

    code = retrain.main(["--config", str(cfg), "--data", str(rec), "--no-plots"])
    v = _verdict(capsys)
    assert code == 0, [c for c in v["checks"] if not c["passed"]]
    labels = v["labels"]
    assert (labels["confirmed"], labels["false_alarm"], labels["unlabelled"]) == (1, 1, 0)
    assert labels["removed_confirmed"] == 5 * (301 + 16)  # 5 channels: the span and the window before it
    assert labels["kept_as_normal"] == 5 * (101 + 16)  # what an unlabelled alert would have cost
    assert v["rows"]["train"] + v["rows"]["holdout"] == 5 * (2000 - 317)
    episodes = _check(v, "past_episodes")["episodes"]
    assert episodes == {"fault-1": {"label": "confirmed", "candidate": True, "current": None}}
    assert _check(v, "alert_log")["passed"]


def test_the_daemons_alert_log_exists_before_the_first_alert_and_an_empty_one_is_accepted(tmp_path):
    rec = tmp_path / "recordings"
    JSONLinesSink(rec / ALERTS_FILE)  # what the recording daemon starts with
    assert (rec / ALERTS_FILE).read_text() == ""
    cfg = load_config(_config(tmp_path))
    t = _record(rec, 40, 1)
    data = load_training_data([rec], cfg)
    ex = exclude_for_retrain(data, cfg, [rec], None, no_exclusions=False)
    assert ex.check["passed"] and ex.info["spans"] == 0
    (rec / ALERTS_FILE).unlink()
    ex = exclude_for_retrain(data, cfg, [rec], None, no_exclusions=False)
    assert not ex.check["passed"] and "no alert log found" in ex.check["detail"]
    ex = exclude_for_retrain(data, cfg, [rec], None, no_exclusions=True)
    assert ex.check["passed"] and "--no-exclusions" in ex.check["detail"]
    csv = tmp_path / "normal.csv"
    write_csv(csv, t, np.zeros((len(t), 5)))
    assert exclude_for_retrain(data, cfg, [csv], None, no_exclusions=False).check["passed"]  # CSV: none expected


def test_canary_segments_never_span_a_gap(models):
    _, good, _, hold = models
    keep = (hold.timestamps < hold.timestamps[330]) | (hold.timestamps >= hold.timestamps[360])  # a left-out span
    gappy = StreamData(STREAM, list(CHANNELS), hold.timestamps[keep], hold.values[keep])
    plan = plan_canaries([gappy], good, CanarySettings(), max_gap_seconds=5.0)
    assert plan is not None and len(plan.segments) == 3
    for seg in plan.segments:
        assert len(seg.timestamps) == 128 and float(np.max(np.diff(seg.timestamps))) == 1.0
    short = StreamData(STREAM, list(CHANNELS), hold.timestamps[:100], hold.values[:100])
    assert plan_canaries([short], good, CanarySettings()) is None
    assert "no contiguous stretch" in canary_check(None, None, CanarySettings())["detail"]


# --------------------------------------------------------------------------- regimes a stream re-baselined onto


def _regime(alert_id: str, start: float, at: float, before: float, after: float) -> str:
    return json.dumps(
        {
            "alert_id": alert_id,
            "stream": STREAM,
            "state": "event",
            "kind": "regime_change",
            "started_at": start,
            "ended_at": at,
            "threshold": 1.0,
            "detail": {"direction": "up" if after > before else "down", "level_before": before, "level_after": after},
        }
    )


def test_a_regime_runs_until_the_stream_returns_and_an_unreturned_one_to_the_end(tmp_path):
    log = tmp_path / "alerts.ndjson"
    lines = [
        _regime("up", 100.0, 300.0, 0.01, 1.0),  # a long fault: errors 100x up ...
        _regime("back", 900.0, 1100.0, 1.0, 0.012),  # ... and back near the level before it
        _regime("new", 2000.0, 2200.0, 0.012, 0.5),  # a change that never returns
    ]
    log.write_text("\n".join(lines) + "\n")
    assert sorted(regime_spans_from_alerts([log])) == [
        ("new", 2000.0, float("inf"), STREAM),
        ("up", 100.0, 1100.0, STREAM),  # to the return's re-baseline: its stretch starts at a chunk edge
    ]
    # two changes in a row that do not return: each regime until the next
    log.write_text(_regime("a", 100.0, 300.0, 0.01, 1.0) + "\n" + _regime("b", 900.0, 1100.0, 1.0, 30.0) + "\n")
    assert sorted(regime_spans_from_alerts([log])) == [("a", 100.0, 900.0, STREAM), ("b", 900.0, float("inf"), STREAM)]


def test_the_regime_change_that_ends_a_regime_is_refused_naming_the_one_that_opened_it(tmp_path, capsys):
    rec = tmp_path / "recordings"
    rec.mkdir()
    log = rec / ALERTS_FILE
    log.write_text(_regime("up", 300.0, 400.0, 0.01, 1.0) + "\n" + _regime("back", 500.0, 600.0, 1.0, 0.012) + "\n")
    assert cli.main(["label", "--list", "--alerts", str(log)]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [(r[0], r[1]) for r in rows[1:]] == [("up", "regime_change")]  # the closing event opens nothing
    assert cli.main(["label", "back", "--false-alarm", "--alerts", str(log)]) == 1
    err = capsys.readouterr().err
    assert "ended a regime" in err and "up" in err
    assert not (rec / LABELS_FILE).exists()


def test_retrain_leaves_out_an_unlabelled_regime_and_trains_on_one_labelled_a_new_normal(tmp_path):
    rec = tmp_path / "recordings"
    t = _record(rec, 600, 2)
    (rec / ALERTS_FILE).write_text(_regime("shift", float(t[300]), float(t[400]), 0.01, 1.0) + "\n")
    cfg = load_config(_config(tmp_path))
    data = load_training_data([rec], cfg)
    ex = exclude_for_retrain(data, cfg, [rec], None, no_exclusions=False)
    pad = cfg.model.window_size  # 1 s period
    assert ex.info["regimes"] == 1 and ex.info["removed_regimes"] == 5 * (300 + pad)
    assert ex.episodes == []  # the anomaly at a regime's onset is the past episode, not the regime

    assert cli.main(["label", "shift", "--false-alarm", "--config", str(_config(tmp_path))]) == 0
    data = load_training_data([rec], cfg)
    ex = exclude_for_retrain(data, cfg, [rec], None, no_exclusions=False)
    assert ex.info["regimes"] == 0 and ex.info["regimes_kept_as_normal"] == 1 and ex.info["removed"] == 0


@pytest.mark.slow
def test_retrain_after_a_replayed_long_fault_does_not_learn_the_fault(tmp_path, capsys):
    """The README walk: a serving model, a recording with a fault longer than the re-baseline
    time, replayed offline into its alert log, then retrain. The calibrator re-baselines on
    the fault (one regime_change) and the anomaly episode ends there; the rest of the fault
    must still be left out, or the candidate's threshold jumps (it was 24.7x)."""
    cfg = _config(tmp_path)
    _record(tmp_path / "week1", 1500, 5)
    assert retrain.main(["--config", str(cfg), "--data", str(tmp_path / "week1"), "--no-plots", "--no-exclusions"]) == 0
    serving = _verdict(capsys)["candidate"]["threshold"]
    rec = tmp_path / "week2"
    _record(rec, 3000, 6, faults=[Fault(1400, 2390)], start=1_700_100_000.0)
    assert (
        cli.main(["replay", str(rec), "--config", str(cfg), "--offline", "--alerts-out", str(rec / ALERTS_FILE)]) == 0
    )
    kinds = [json.loads(line).get("kind") for line in (rec / ALERTS_FILE).read_text().splitlines()]
    assert kinds.count("regime_change") >= 1  # the premise: the fault outlasted the re-baseline time
    capsys.readouterr()
    code = retrain.main(["--config", str(cfg), "--data", str(rec), "--no-plots"])
    v = _verdict(capsys)
    assert v["excluded"]["regimes"] >= 1
    ratio = _check(v, "threshold_jump")["ratio"]
    assert 0.5 < ratio < 2.0, (ratio, serving)
    assert code == 0, [c for c in v["checks"] if not c["passed"]]
