"""The calibration stage in the pipeline: regime-change events as alerts, counted, in the
same order whatever the batches; the alarm's resolve tail (`alarm.end_at`)."""

from __future__ import annotations

import dataclasses

import numpy as np

from monitor.core.alarm import AlarmMachine
from monitor.core.config import AlarmConfig, OnlineCalibrationConfig, StreamConfig
from monitor.core.pipeline import Pipeline
from monitor.core.scoring_model import ScoringModel
from monitor.core.types import FrameBlock, ScoreBatch


class SquareScorer:
    """Deterministic numpy errors (the pipeline's WindowScorer protocol, no torch): the
    mean square of the window, so a level shift of the input is a level shift of the error."""

    def errors(self, x):
        x = np.asarray(x, dtype=np.float64)
        per_channel = (x**2).mean(axis=1) + 1e-3
        return per_channel.mean(axis=1), per_channel, x[:, -1, :]


def model() -> ScoringModel:
    return ScoringModel("v1", ["a"], 1.0, 8, 1, [], np.zeros(1), np.ones(1), 2.0, SquareScorer())


def blocks(n: int, shift_at: int, seed: int = 0) -> list[FrameBlock]:
    rng = np.random.default_rng(seed)
    v = rng.normal(0.0, 1.0, n)
    v[shift_at:] += 4.0  # a level shift that stays
    t = np.arange(n, dtype=np.float64)
    return [FrameBlock("pump", ("a",), t[i : i + 1], v[i : i + 1, None]) for i in range(n)]


ONLINE = OnlineCalibrationConfig(chunk_windows=16, min_windows=64, rebaseline_after_seconds=150.0)
ALARM = AlarmConfig(k=2, n=3, resolve_m=6)


def run(items, cut: int):
    pipe = Pipeline(model(), StreamConfig(channels=["a"], period_seconds=1.0), ALARM, online=ONLINE)
    alerts = []
    for at in range(0, len(items), cut):
        pipe.push_batch(items[at : at + cut])
        alerts += pipe.flush()[1]
    return pipe, alerts


def test_a_level_shift_fires_once_emits_one_regime_change_then_resolves():
    items = blocks(1200, 500)
    pipe, alerts = run(items, 1200)
    kinds = [(a.kind, a.state) for a in alerts]
    # the shift moved the input: the stream's scaler re-baselines on trial (the errors are
    # back at once, the alarm resolves), and the next chunk (16 windows) confirms it
    assert kinds[:3] == [("anomaly", "firing"), ("anomaly", "resolved"), ("regime_change", "event")]
    assert kinds.count(("regime_change", "event")) == 1 and not pipe.alarm.firing("pump")
    fired, resolved, regime = alerts[:3]
    assert 500 <= fired.started_at < 520 and abs(regime.started_at - fired.started_at) < 16  # chunk grain
    assert regime.ended_at - regime.started_at >= 150 and regime.detail["direction"] == "up"
    assert regime.ended_at - 20 < resolved.ended_at < regime.ended_at  # quiet from the re-baseline on
    assert abs(regime.detail["scaler"]["mean"][0] - 4.0) < 0.3  # the new level
    assert pipe.counters["regime_changes"] == 1
    assert regime.to_dict()["kind"] == "regime_change" and fired.to_dict()["kind"] == "anomaly"


def test_a_level_shift_without_the_scaler_re_baseline_re_baselines_the_errors():
    online = dataclasses.replace(ONLINE, rebaseline_scaler=False)
    pipe = Pipeline(model(), StreamConfig(channels=["a"], period_seconds=1.0), ALARM, online=online)
    pipe.push_batch(blocks(1200, 500))
    alerts = pipe.flush()[1]
    kinds = [(a.kind, a.state) for a in alerts]
    assert kinds[:3] == [("anomaly", "firing"), ("regime_change", "event"), ("anomaly", "resolved")]
    _, regime, resolved = alerts[:3]
    assert regime.ended_at < resolved.ended_at < regime.ended_at + 20  # quiet soon after the re-baseline
    assert "scaler" not in regime.detail and regime.detail["level_after"] > 5 * regime.detail["level_before"]


def test_regime_change_alerts_come_in_the_same_order_whatever_the_batches():
    items = blocks(1200, 500, seed=2)
    _, whole = run(items, 1200)
    for cut in (1, 7, 64, 333):
        _, parts = run(items, cut)
        assert [a.to_dict() for a in parts] == [a.to_dict() for a in whole], cut


def alarm_run(cfg: AlarmConfig, scores: list[float]):
    machine = AlarmMachine(cfg, 1.0, "v", ["a"])
    n = len(scores)
    batch = ScoreBatch(
        ["s"] * n,
        np.arange(n, dtype=np.float64),
        np.asarray(scores),
        np.asarray(scores),
        np.zeros((n, 1)),
        np.zeros((n, 1)),
        np.zeros((n, 1)),
    )
    return machine.update_batch(batch)


def test_a_short_hot_stretch_alerts_its_own_windows_not_the_resolve_tail():
    #  t:      0 1 2 3 4 5 6 7 8 9 10 11 12 13
    #  score:  . . 2 2 . . . . . . .  .  .  .
    #  fires at t=3 (2 of 3 hot); 6 quiet windows (4..9) resolve it at t=9
    scores = [0.0, 0.0, 2.0, 2.0] + [0.0] * 10
    last_hot = alarm_run(AlarmConfig(k=2, n=3, resolve_m=6), scores)
    before = alarm_run(AlarmConfig(k=2, n=3, resolve_m=6, end_at="resolve"), scores)
    assert [(a.state, a.started_at, a.ended_at) for a in last_hot] == [("firing", 3.0, None), ("resolved", 3.0, 4.0)]
    assert [(a.state, a.ended_at) for a in before] == [("firing", None), ("resolved", 9.0)]
    # a quiet run broken by a hot window starts again: the end is the last quiet run's start
    scores = [0.0, 2.0, 2.0, 0.0, 0.0, 1.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    (_, resolved) = alarm_run(AlarmConfig(k=2, n=3, resolve_m=6), scores)
    assert resolved.ended_at == 6.0
