"""`monitor retrain`: gated promotion, its verdict, the textfile and the daemon's re-export."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from monitor.app import retrain
from monitor.app.retrain import Evaluation, GateSettings, gate
from monitor.core.model.bundle import current_bundle_path, list_bundles
from monitor.core.synthetic import CHANNELS, Fault, pump, write_csv
from monitor.core.types import RawMessage
from monitor.io.metrics import Metrics
from monitor.io.recording import RecordingWriter
from monitor.io.retrain_status import RetrainStatusCollector, read_textfile, write_textfile

CONFIG = """
stream: {channels: [flow, pressure, current, vibration, temperature], period_seconds: 1.0, max_gap_seconds: 5}
model: {architecture: dense, window_size: 16, hidden: [32], code_size: 6, epochs: 10, patience: 4, seed: 1}
calibration: {method: quantile, quantile: 0.999, factor: 1.5, holdout_fraction: 0.25}
alarm: {k: 3, n: 5, resolve_m: 10}
data: {stream: site1/pump1}
topics:
  - {template: "plant/{site}/{asset}", format: json_multi, stream: "{site}/{asset}"}
models: {dir: MODELS}
"""


def _ev(far_alerting: int, scored: int = 1000, **kw) -> Evaluation:
    return Evaluation("v", scored=scored, alerting=far_alerting, **kw)


# --------------------------------------------------------------------------- the gate


def test_gate_passes_a_quiet_candidate_without_a_current_model():
    ok, checks = gate(_ev(5), None, GateSettings(0.01, 0.1))
    assert ok
    assert {c["check"] for c in checks} == {
        "finite_scores",
        "enough_data",
        "false_alarm_budget",
        "not_worse_than_current",
    }
    assert "skipped" in next(c for c in checks if c["check"] == "not_worse_than_current")["detail"]


@pytest.mark.parametrize(
    "candidate, current, passed, failing",
    [
        (_ev(11), None, False, "false_alarm_budget"),  # 1.1 % > 1 % budget
        (_ev(10), None, True, None),  # exactly at the budget
        (_ev(3), _ev(1), False, "not_worse_than_current"),  # 0.3 % > 0.1 % + 0.1 x 1 %
        (_ev(2), _ev(1), True, None),  # 0.2 % <= 0.1 % + 0.1 %
        (_ev(5), _ev(400), True, None),  # the current model is worse
        (_ev(0, nonfinite=2, finite=False), None, False, "finite_scores"),
        (_ev(0, scored=5), None, False, "enough_data"),
        (_ev(0, scored=0), None, False, ("enough_data", "false_alarm_budget")),  # nothing scored: NaN rate
        (_ev(2), Evaluation("old", error="ConfigError: other channels"), True, None),  # not comparable
    ],
)
def test_gate_checks(candidate, current, passed, failing):
    ok, checks = gate(candidate, current, GateSettings(0.01, 0.1))
    assert ok is passed
    failed = [c["check"] for c in checks if not c["passed"]]
    assert failed == ([] if failing is None else [failing] if isinstance(failing, str) else list(failing))


# --------------------------------------------------------------------------- textfile and collector


def test_textfile_is_written_atomically_and_read_back(tmp_path):
    path = tmp_path / "sub" / "retrain.prom"
    write_textfile(
        path,
        {
            "monitor_retrain_gate_passed": 1.0,
            "monitor_retrain_current_false_alarm_rate": math.nan,
            "monitor_retrain_last_success_timestamp_seconds": 1700000000.5,
        },
    )
    assert [p.name for p in path.parent.iterdir()] == ["retrain.prom"]  # no temp file left
    text = path.read_text()
    assert "# TYPE monitor_retrain_gate_passed gauge" in text
    values = read_textfile(path)
    assert values["monitor_retrain_gate_passed"] == 1.0
    assert values["monitor_retrain_last_success_timestamp_seconds"] == 1700000000.5
    assert math.isnan(values["monitor_retrain_current_false_alarm_rate"])
    assert read_textfile(tmp_path / "missing.prom") == {}


def test_daemon_reexports_the_textfile(tmp_path):
    registry = CollectorRegistry()
    Metrics(registry)
    path = tmp_path / "retrain.prom"
    registry.register(RetrainStatusCollector(path))
    text = generate_latest(registry).decode()  # no file yet: nothing, and no error
    assert "monitor_retrain_gate_passed" not in text
    assert "success_timestamp_seconds" not in text  # no series reading 0 before any retrain
    write_textfile(
        path,
        {
            "monitor_retrain_gate_passed": 0.0,
            "monitor_retrain_candidate_false_alarm_rate": 0.25,
            "monitor_retrain_last_success_timestamp_seconds": 1234.0,
        },
    )
    text = generate_latest(registry).decode()
    assert "monitor_retrain_gate_passed 0.0" in text
    assert "monitor_retrain_candidate_false_alarm_rate 0.25" in text
    assert "monitor_retrain_last_success_timestamp_seconds 1234.0" in text  # on the same scrape
    assert text.count("success_timestamp_seconds") == 3  # HELP, TYPE, the sample: one series


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("retrain-data")
    t, v, _ = pump(2400, seed=3, steps_per_hour=0)
    write_csv(d / "normal.csv", t, v)
    t, v, _ = pump(1200, seed=4, steps_per_hour=0, faults=[Fault(100, 1150)], start_time=1_700_010_000.0)
    write_csv(d / "faulty.csv", t, v)
    return d


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "monitor.yaml"
    path.write_text(CONFIG.replace("MODELS", str(tmp_path / "models")))
    return path


def _verdict(capsys) -> dict:
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(lines) == 1
    return json.loads(lines[0])


@pytest.mark.slow
def test_retrain_promotes_then_a_failing_candidate_is_not_promoted(tmp_path, data, capsys):
    cfg = _config(tmp_path)
    models = tmp_path / "models"
    code = retrain.main(["--config", str(cfg), "--data", str(data / "normal.csv"), "--no-plots"])
    v = _verdict(capsys)
    assert code == 0, v
    assert v["passed"] and v["promoted"] and v["current"] is None
    assert v["holdout"] == {"source": "newest_fraction", "fraction": 0.2}
    assert v["rows"] == {"train": 1920, "holdout": 480}
    assert v["candidate"]["finite"] and v["candidate"]["scored"] > 400
    first = current_bundle_path(models)
    assert first is not None and first.name == v["candidate"]["version"]
    assert json.loads((first / "gate.json").read_text())["passed"] is True
    tf = read_textfile(models / "retrain.prom")
    assert tf["monitor_retrain_gate_passed"] == 1.0 and tf["monitor_retrain_last_exit_code"] == 0.0
    promoted_at = tf["monitor_retrain_last_success_timestamp_seconds"]
    assert promoted_at == tf["monitor_retrain_last_run_timestamp_seconds"] > 0

    # judged on data with a long fault: far over the false-alarm budget -> not promoted
    code = retrain.main(
        ["--config", str(cfg), "--data", str(data / "normal.csv"), "--holdout", str(data / "faulty.csv"), "--no-plots"]
    )
    v = _verdict(capsys)
    assert code == 3, v
    assert v["passed"] is False and v["promoted"] is False
    failed = {c["check"] for c in v["checks"] if not c["passed"]}
    assert "false_alarm_budget" in failed
    assert v["candidate"]["false_alarm_rate"] > 0.5
    assert v["current"]["version"] == first.name and v["current"]["false_alarm_rate"] > 0.5
    assert current_bundle_path(models) == first  # the old model keeps serving
    assert [b.version for b in list_bundles(models)] == [first.name]  # the candidate was deleted
    tf = read_textfile(models / "retrain.prom")
    assert tf["monitor_retrain_gate_passed"] == 0.0 and tf["monitor_retrain_last_exit_code"] == 3.0
    assert tf["monitor_retrain_last_success_timestamp_seconds"] == promoted_at  # carried over
    assert tf["monitor_retrain_last_run_timestamp_seconds"] > promoted_at
    assert tf["monitor_retrain_candidate_false_alarm_rate"] > 0.5


@pytest.mark.slow
def test_retrain_on_recordings(tmp_path, capsys):
    """Recorded raw messages (the recorder's directory) go through the codec and the pipeline."""
    rec = tmp_path / "recordings"
    rec.mkdir()
    t, v, _ = pump(1000, seed=5, steps_per_hour=0)
    w = RecordingWriter(rec / "part-0001.jsonl.gz")
    for ti, row in zip(t, v, strict=True):
        body = json.dumps({"ts": float(ti), **{c: float(x) for c, x in zip(CHANNELS, row, strict=True)}}).encode()
        w.write(RawMessage(float(ti), "plant/site1/pump1", body, 1, False))
    w.close()
    textfile = tmp_path / "node-exporter" / "monitor_retrain.prom"
    code = retrain.main(
        [
            "--config",
            str(_config(tmp_path)),
            "--data",
            str(rec),
            "--no-plots",
            "--textfile",
            str(textfile),
            "--max-false-alarm-rate",
            "0.05",
            "--no-exclusions",  # a recorder's folder without an alert log: on purpose
        ]
    )
    v = _verdict(capsys)
    assert code == 0, v
    assert v["candidate"]["scored"] > 150 and v["candidate"]["finite"]
    assert read_textfile(textfile)["monitor_retrain_gate_passed"] == 1.0
    assert current_bundle_path(tmp_path / "models").name == v["candidate"]["version"]


def test_bad_config_exits_78(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model: {window_size: 1}\n")
    textfile = tmp_path / "retrain.prom"
    code = retrain.main(["--config", str(cfg), "--data", str(tmp_path), "--textfile", str(textfile)])
    captured = capsys.readouterr()
    assert code == 78
    assert "model.window_size" in captured.err
    assert json.loads(captured.out.strip())["exit_code"] == 78
    assert read_textfile(textfile)["monitor_retrain_last_exit_code"] == 78.0
    assert "monitor_retrain_last_success_timestamp_seconds" not in read_textfile(textfile)  # never promoted: absent


def test_missing_data_is_an_error_not_a_crash(tmp_path, capsys):
    code = retrain.main(["--config", str(_config(tmp_path)), "--data", str(tmp_path / "nothing.csv")])
    v = _verdict(capsys)
    assert code == 1 and "does not exist" in v["error"]
    assert read_textfile(tmp_path / "models" / "retrain.prom")["monitor_retrain_gate_passed"] == 0.0


def test_register_adds_the_subcommand():
    parser = argparse.ArgumentParser(prog="monitor")
    sub = parser.add_subparsers(dest="command", required=True)
    retrain.register(sub)
    args = parser.parse_args(
        [
            "retrain",
            "--config",
            "c.yaml",
            "--data",
            "a",
            "b",
            "--margin",
            "0.2",
            "--max-false-alarm-rate",
            "0.005",
            "--textfile",
            "t.prom",
        ]
    )
    assert args.func is retrain.run_retrain
    assert args.data == ["a", "b"] and args.margin == 0.2 and args.max_false_alarm_rate == 0.005
    assert args.holdout is None and args.holdout_fraction == 0.2
