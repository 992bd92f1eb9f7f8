"""Calibrator state on disk: atomic per-group file, restored at start, a corrupt file is a
warning and a counted fresh start (never a crash)."""

from __future__ import annotations

import json
import logging

import numpy as np
from test_calibration_stage import SquareScorer

from monitor.app.service import Service
from monitor.core.config import load_config
from monitor.core.scoring_model import ScoringModel
from monitor.core.types import FrameBlock
from monitor.io.calib_state import load_state, save_state, state_path


def model(version: str = "v1") -> ScoringModel:
    return ScoringModel(version, ["a"], 1.0, 8, 1, [], np.zeros(1), np.ones(1), 2.0, SquareScorer())


def service(tmp_path) -> Service:
    (tmp_path / "c.yaml").write_text(
        f"stream: {{channels: [a], period_seconds: 1.0}}\nmodels: {{dir: {tmp_path / 'models'}}}\n"
        "metrics: {port: 0}\ncalibration: {online: {chunk_windows: 16, min_windows: 32}}\n"
    )
    return Service(load_config(tmp_path / "c.yaml", environ={}))


def feed(svc: Service, n: int = 300) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(n, dtype=np.float64)
    items = [FrameBlock(f"s{k}", ("a",), t, rng.normal(0, 1, (n, 1))) for k in range(3)]
    svc.runner.feed(items)


def test_state_is_saved_atomically_and_restored_for_the_same_model(tmp_path):
    svc = service(tmp_path)
    svc.runner.install("default", model())
    feed(svc)
    before = svc.pipeline.calibrator.to_state("v1")
    svc.save_calibration()
    path = state_path(tmp_path / "models")
    assert path.exists() and not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert json.loads(path.read_text()) == {"default": json.loads(json.dumps(before))}
    fresh = service(tmp_path)
    fresh.runner.install("default", model())
    fresh._restore_calibration("default")
    assert fresh.pipeline.calibrator.to_state("v1") == json.loads(json.dumps(before))
    other = service(tmp_path)
    other.runner.install("default", model("v2"))
    other._restore_calibration("default")
    assert not other.pipeline.calibrator.streams  # another model: start from the prior


def test_a_corrupt_state_file_is_a_warning_a_counter_and_a_fresh_start(tmp_path, caplog):
    path = state_path(tmp_path / "models")
    path.parent.mkdir(parents=True)
    for text in ("{not json", '{"default": {"version": 1, "fields": [], "streams": {}}}', "[1, 2]"):
        path.write_text(text)
        svc = service(tmp_path)
        svc.runner.install("default", model())
        with caplog.at_level(logging.WARNING):
            svc._restore_calibration("default")
        assert "unusable, starting fresh" in caplog.text
        assert svc.registry.get_sample_value("monitor_calibration_state_errors_total", {"op": "read"}) == 1.0
        feed(svc)  # and it keeps scoring
        assert svc.pipeline.calibrator.streams
        caplog.clear()


def test_save_state_replaces_the_old_file_whole(tmp_path):
    path = tmp_path / "state" / "calibration.json"
    save_state(path, {"a": 1})
    save_state(path, {"b": 2})
    assert load_state(path) == {"b": 2} and load_state(tmp_path / "none.json") is None
