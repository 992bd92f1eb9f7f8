"""The input re-baseline at a regime change (core/input_baseline.py): the stream's scaler
follows a level shift, its errors come back to their old level, the alerts do not depend on
where batches are cut, and the override survives a restart through the calibrator state."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from monitor.core.config import AlarmConfig, OnlineCalibrationConfig, StreamConfig
from monitor.core.input_baseline import StreamInputs
from monitor.core.pipeline import Pipeline
from monitor.core.scoring_model import ScoringModel
from monitor.core.types import FrameBlock


class SquareScorer:
    """Deterministic numpy errors: the mean square of the standardized window (a level
    shift of the input is a level shift of the error, a re-centred input is not)."""

    def errors(self, x):
        x = np.asarray(x, dtype=np.float64)
        per_channel = (x**2).mean(axis=1) + 1e-3
        return per_channel.mean(axis=1), per_channel, x[:, -1, :]


CHANNELS = ["a", "b"]
ONLINE = OnlineCalibrationConfig(chunk_windows=16, min_windows=64, rebaseline_after_seconds=150.0)
ALARM = AlarmConfig(k=2, n=3, resolve_m=6)


def model() -> ScoringModel:
    return ScoringModel(
        "v1", CHANNELS, 1.0, 8, 1, [], np.array([10.0, -5.0]), np.array([2.0, 0.5]), 2.0, SquareScorer()
    )


def series(seed: int, n: int = 1400, shift_at: int = 500, burst_at: int | None = None) -> np.ndarray:
    """Two channels around the model's scaler; channel a steps up by 4 sd at `shift_at` for
    good; optionally a burst of +3 sd on channel a for 12 rows at `burst_at`."""
    rng = np.random.default_rng(seed)
    v = np.column_stack([10.0 + 2.0 * rng.standard_normal(n), -5.0 + 0.5 * rng.standard_normal(n)])
    v[shift_at:, 0] += 8.0
    if burst_at is not None:
        v[burst_at : burst_at + 12, 0] += 6.0
    return v


def items(v: np.ndarray, streams: tuple[str, ...] = ("pump",)) -> list[FrameBlock]:
    t = np.arange(len(v), dtype=np.float64)
    out = []
    for i in range(len(v)):
        for k, s in enumerate(streams):  # streams interleaved, each a shifted copy
            out.append(FrameBlock(s, tuple(CHANNELS), t[i : i + 1], v[i : i + 1] + k * 0.01))
    return out


def pipeline(online: OnlineCalibrationConfig = ONLINE) -> Pipeline:
    return Pipeline(model(), StreamConfig(channels=CHANNELS, period_seconds=1.0), ALARM, online=online)


def run(batch_items, cut: int, pipe: Pipeline | None = None):
    pipe = pipe or pipeline()
    alerts, raw, times = [], [], []
    for at in range(0, len(batch_items), cut):
        pipe.push_batch(batch_items[at : at + cut])
        scores, got = pipe.flush()
        alerts += got
        raw.append(np.asarray(scores.raw, dtype=np.float64))
        times.append(np.asarray(scores.times, dtype=np.float64))
    return pipe, alerts, np.concatenate(raw), np.concatenate(times)


def test_a_level_shift_re_baselines_the_scaler_and_the_errors_come_back():
    pipe, alerts, raw, times = run(items(series(0)), 1400)
    regime = [a for a in alerts if a.kind == "regime_change"]
    assert len(regime) == 1 and regime[0].detail["direction"] == "up"
    mean, std = regime[0].detail["scaler"]["mean"], regime[0].detail["scaler"]["std"]
    assert abs(mean[0] - 18.0) < 0.5 and abs(mean[1] - -5.0) < 0.2  # channel a moved, b did not
    assert std == [2.0, 0.5]  # no spread change: the training std stays
    before, after = raw[times < 490], raw[times > regime[0].ended_at + 8]
    assert np.median(after) < 1.3 * np.median(before)  # errors back at their old level
    off_pipe, _, off_raw, off_times = run(
        items(series(0)), 1400, pipeline(dataclasses.replace(ONLINE, rebaseline_scaler=False))
    )
    assert np.median(off_raw[off_times > 900]) > 5 * np.median(before)  # without: an error offset for good
    assert not off_pipe.calibrator.overrides and set(pipe.calibrator.overrides) == {"pump"}
    firing = [a for a in alerts if a.kind == "anomaly" and a.state == "firing"]
    assert len(firing) == 1 and not pipe.alarm.firing("pump")  # the shift alerts once, then quiet


def test_after_the_re_baseline_a_burst_on_the_new_level_alerts():
    _, alerts, _, _ = run(items(series(1, burst_at=1100)), 1400)
    firing = [a.started_at for a in alerts if a.kind == "anomaly" and a.state == "firing"]
    assert any(1100 <= t < 1120 for t in firing), firing


@pytest.mark.parametrize("seed", [0, 3])
def test_alerts_and_errors_do_not_depend_on_batch_boundaries(seed):
    feed = items(series(seed, burst_at=1100), streams=("pump", "fan"))
    _, whole, raw, _ = run(feed, len(feed))
    assert sum(a.kind == "regime_change" and "scaler" in a.detail for a in whole) == 2
    for cut in (1, 7, 64, 333, 1001):
        _, parts, raw_parts, _ = run(feed, cut)
        for stream in ("pump", "fan"):  # each stream's sequence (streams interleave by batch)
            got = [a.to_dict() for a in parts if a.stream == stream]
            assert got == [a.to_dict() for a in whole if a.stream == stream], (cut, stream)
        assert np.array_equal(np.sort(raw_parts), np.sort(raw)), cut


def test_the_override_survives_a_restart_through_the_calibrator_state():
    feed = items(series(2, burst_at=1100))
    _, whole, _, _ = run(feed, 100)
    first, alerts, _, _ = run(feed[:900], 100)  # the regime change is behind (rows ~660)
    state = json.loads(json.dumps(first.calibrator.to_state("v1")))
    assert state["version"] == 3 and "pump" in state["inputs"]
    second = pipeline()
    assert second.calibrator.restore(state, "v1") == 1 and set(second.calibrator.overrides) == {"pump"}
    second.alarm.states = first.alarm.states
    second.streams = first.streams  # the same windows in flight (the alarm/frames persist elsewhere)
    _, rest, _, _ = run(feed[900:], 100, second)
    assert [a.to_dict() for a in alerts + rest] == [a.to_dict() for a in whole]


def test_a_malformed_input_state_is_refused():
    pipe, _, _, _ = run(items(series(0)), 1400)
    state = pipe.calibrator.to_state("v1")
    state["inputs"]["pump"]["s"] = [0.0, 1.0]
    with pytest.raises(ValueError, match="ratios"):
        pipeline().calibrator.restore(state, "v1")
    state["inputs"]["pump"]["s"] = [1.0]
    with pytest.raises(ValueError, match="2 finite numbers"):
        pipeline().calibrator.restore(state, "v1")


def test_inputs_that_did_not_move_leave_the_scaler_and_re_baseline_the_errors():
    inputs = StreamInputs(1)
    rng = np.random.default_rng(0)
    for _ in range(10):  # a learnt baseline, then an equally distributed disturbed stretch
        u = np.rint(rng.standard_normal((16, 1)) * 1024)
        inputs.p1 += u.sum(axis=0)
        inputs.p2 += (u * u).sum(axis=0)
        inputs.learnt(0.99, 16.0)
    for _ in range(10):
        u = np.rint(rng.standard_normal((16, 1)) * 1024)
        inputs.p1 += u.sum(axis=0)
        inputs.p2 += (u * u).sum(axis=0)
        inputs.hold(16.0, 0.0, 0.0, 2.0)
    assert not inputs.rebase() and not inputs.active and inputs.d0 == 160.0
    inputs.accept()  # the errors re-baseline instead: the stretch is the new baseline
    assert inputs.d0 == 0.0 and inputs.b0 == 160.0


class HalfScorer:
    """A model that half-follows a level shift: the error is the window's own variance plus
    a little of its squared mean, so a shift of 4 sd raises the log error by ~1 sigma, too
    little for the calibrator's regime test (1.5 sigma): without the input test it is learnt."""

    def errors(self, x):
        x = np.asarray(x, dtype=np.float64)
        mean = x.mean(axis=1)
        per_channel = ((x - mean[:, None, :]) ** 2).mean(axis=1) + 0.05 * mean**2 + 1e-3
        return per_channel.mean(axis=1), per_channel, x[:, -1, :]


def half_pipeline(rebaseline: bool = True) -> Pipeline:
    m = model()
    m.scorer = HalfScorer()
    online = dataclasses.replace(ONLINE, rebaseline_scaler=rebaseline)
    return Pipeline(m, StreamConfig(channels=CHANNELS, period_seconds=1.0), ALARM, online=online)


def test_a_shift_the_model_half_follows_re_baselines_the_scaler_from_the_inputs():
    feed = items(series(4))
    _, alerts, raw, times = run(feed, 1400, half_pipeline())
    regime = [a for a in alerts if a.kind == "regime_change"]
    assert len(regime) == 1 and "scaler" in regime[0].detail, [a.detail for a in regime]
    assert abs(regime[0].detail["scaler"]["mean"][0] - 18.0) < 0.6
    assert np.median(raw[times > regime[0].ended_at + 8]) < 1.2 * np.median(raw[times < 490])
    _, off_alerts, off_raw, off_times = run(feed, 1400, half_pipeline(rebaseline=False))
    assert not [a for a in off_alerts if a.kind == "regime_change"]  # learnt as a new error level
    assert np.median(off_raw[off_times > 900]) > 1.5 * np.median(off_raw[off_times < 490])
    for cut in (1, 64, 333):
        _, parts, _, _ = run(feed, cut, half_pipeline())
        assert [a.to_dict() for a in parts] == [a.to_dict() for a in alerts], cut


class DiffScorer:
    """Errors of a model that knows the feed is white noise: the mean square of a window's
    first differences over 2 (about 1 for standardized white noise, whatever its level; a
    slow oscillation, at any scale, scores far below)."""

    def errors(self, x):
        x = np.asarray(x, dtype=np.float64)
        per_channel = (np.diff(x, axis=1) ** 2).mean(axis=1) / 2 + 1e-3
        return per_channel.mean(axis=1), per_channel, x[:, -1, :]


def fault(seed: int, n: int = 1600) -> np.ndarray:
    """Both channels turn into a slow oscillation around a new level from row 500 to 1100
    (a fault, not a new level: no scaler brings its errors back), then white noise again."""
    rng = np.random.default_rng(seed)
    v = np.column_stack([10.0 + 2.0 * rng.standard_normal(n), -5.0 + 0.5 * rng.standard_normal(n)])
    wave = np.sin(2 * np.pi * np.arange(600) / 50.0)
    v[500:1100, 0] = 18.0 + 6.0 * wave
    v[500:1100, 1] = -3.0 + 1.5 * wave
    return v


def test_a_scaler_that_does_not_bring_the_errors_back_is_undone_and_the_return_is_not_mapped():
    m = model()
    m.scorer = DiffScorer()
    feed = items(fault(5))

    def pipe() -> Pipeline:
        return Pipeline(m, StreamConfig(channels=CHANNELS, period_seconds=1.0), ALARM, online=ONLINE)

    p, alerts, _, _ = run(feed, len(feed), pipe())
    regime = [a for a in alerts if a.kind == "regime_change"]
    # the errors re-baseline into the fault (the scaler on trial is undone), and out of it
    assert [a.detail["direction"] for a in regime] == ["down", "up"], [a.detail for a in regime]
    assert all("scaler" not in a.detail for a in regime)
    assert not p.calibrator.overrides  # back on the push-time scaler
    for cut in (1, 64, 333):
        _, parts, _, _ = run(feed, cut, pipe())
        assert [a.to_dict() for a in parts] == [a.to_dict() for a in alerts], cut


def test_a_chunk_too_large_to_sum_exactly_adds_nothing_to_the_baseline():
    inputs = StreamInputs(2)
    inputs.p1, inputs.p2 = [1024.0 * 16, 1e20], [1024.0**2 * 16, 1e40]  # channel b: a 1e13-sd spike
    inputs.learnt(1.0, 16.0)
    assert inputs.b1 == [16.0, 0.0] and inputs.b2 == [16.0, 0.0]
    inputs.p1, inputs.p2 = [float("nan"), 0.0], [float("nan"), 0.0]
    inputs.learnt(1.0, 16.0)
    assert inputs.b1 == [16.0, 0.0] and not inputs.active
