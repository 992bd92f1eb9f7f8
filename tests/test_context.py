"""model.context: time-of-day / day-of-week input channels from frame timestamps."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from monitor.app.backtest import run_backtest
from monitor.app.training import StreamData, train_bundle
from monitor.core.config import (
    AlarmConfig,
    CalibrationConfig,
    Config,
    ConfigError,
    ModelConfig,
    OnlineCalibrationConfig,
    StreamConfig,
)
from monitor.core.model.bundle import BundleError, load_bundle, save_bundle
from monitor.core.model.nets import architecture_spec, build_from_spec
from monitor.core.model.scorer import Scorer
from monitor.core.pipeline import Pipeline
from monitor.core.scoring_model import ScoringModel
from monitor.core.stream.context import AUTO_RATIO, DAY_SECONDS, auto_context, context_row, context_rows, rhythm_ratio
from monitor.core.types import Reading

MONDAY = 4 * DAY_SECONDS  # 1970-01-05 00:00 UTC


@pytest.mark.parametrize(
    "t,names,expected",
    [
        # time of day: midnight (0, 1), 06:00 (1, 0), noon (0, -1), 18:00 (-1, 0), any day
        (0.0, ["time_of_day"], [0.0, 1.0]),
        (MONDAY + 6 * 3600, ["time_of_day"], [1.0, 0.0]),
        (1_700_000_000 - 1_700_000_000 % DAY_SECONDS + 12 * 3600, ["time_of_day"], [0.0, -1.0]),
        (18 * 3600.0, ["time_of_day"], [-1.0, 0.0]),
        # day of week: Monday 00:00 phase 0; Thursday 1970-01-01 00:00 is 3/7 of the week in
        (MONDAY, ["day_of_week"], [0.0, 1.0]),
        (0.0, ["day_of_week"], [math.sin(2 * math.pi * 3 / 7), math.cos(2 * math.pi * 3 / 7)]),
        (MONDAY + 7 * DAY_SECONDS + 3.5 * DAY_SECONDS, ["day_of_week"], [0.0, -1.0]),  # Thursday noon
        # both, in the configured order
        (MONDAY + 6 * 3600, ["day_of_week", "time_of_day"], [math.sin(math.pi / 14), math.cos(math.pi / 14), 1.0, 0.0]),
    ],
)
def test_context_encodings(t, names, expected):
    assert context_row(t, names) == pytest.approx(expected, abs=1e-12)


def test_context_rows_equal_context_row_bit_for_bit():
    times = 1_700_000_000.0 + 37.5 * np.arange(5000)
    rows = context_rows(times, ["time_of_day", "day_of_week"])
    assert rows.shape == (5000, 4)
    assert all(rows[i].tolist() == context_row(float(t), ["time_of_day", "day_of_week"]) for i, t in enumerate(times))


def test_context_key_is_validated_by_name():
    with pytest.raises(ConfigError, match=r"^model\.context\[1\]: must be one of 'time_of_day', 'day_of_week'"):
        ModelConfig(context=["time_of_day", "hour"])
    with pytest.raises(ConfigError, match=r"^model\.context: each feature at most once"):
        ModelConfig(context=["time_of_day", "time_of_day"])


def test_auto_context_turns_a_feature_on_only_when_training_spans_two_of_its_periods():
    assert auto_context(2 * DAY_SECONDS - 1)[0] == []
    names, line = auto_context(2 * DAY_SECONDS)
    assert names == ["time_of_day"]
    assert line == (
        "model.context auto: training data span 2.00 days: "
        "time_of_day on (spans 2 periods), day_of_week off (needs 14 days)"
    )
    assert auto_context(14 * DAY_SECONDS)[0] == ["time_of_day", "day_of_week"]
    names, line = auto_context(3 * DAY_SECONDS, {"time_of_day": 0.9})  # spans it, but no rhythm
    assert names == [] and "time_of_day off (rhythm ratio 0.90)" in line


def test_the_rhythm_ratio_tells_a_daily_pattern_from_noise_a_random_walk_and_other_periods():
    rng = np.random.default_rng(1)
    t = PERIOD * np.arange(int(4 * DAY_SECONDS / PERIOD))
    day = 2 * np.pi * t / DAY_SECONDS
    cases = {
        "daily": (np.sin(day) + 0.2 * rng.standard_normal(len(t)), True),
        "day_night": ((np.sin(day) > 0) + 0.1 * rng.standard_normal(len(t)), True),
        "noise": (rng.standard_normal(len(t)), False),
        "random_walk": (np.cumsum(rng.standard_normal(len(t))), False),
        "half_day": (np.sin(2 * day) + 0.2 * rng.standard_normal(len(t)), False),
        "square_8h20": (np.sign(np.sin(2 * np.pi * t / 30_000)) + 0.1 * rng.standard_normal(len(t)), False),
    }
    for name, (v, rhythm) in cases.items():
        ratio = rhythm_ratio([(t, v)], "time_of_day", PERIOD)
        assert (ratio <= AUTO_RATIO) == rhythm, (name, ratio)
    assert ModelConfig(context="auto").context == "auto"
    with pytest.raises(ConfigError, match=r'^model\.context: expected "auto" or a list of time_of_day, day_of_week'):
        ModelConfig(context="always")


@pytest.mark.parametrize("days,expected", [(0.5, []), (3.0, ["time_of_day"])])
def test_auto_context_is_resolved_at_training_logged_and_recorded_in_the_bundle(tmp_path, caplog, days, expected):
    torch.set_num_threads(1)
    n = int(days * DAY_SECONDS / PERIOD) + 1
    t = 19_675 * DAY_SECONDS + PERIOD * np.arange(n)
    v = np.sin(2 * np.pi * t / DAY_SECONDS) + np.random.default_rng(0).normal(0, 0.05, n)
    cfg = Config(
        stream=StreamConfig(period_seconds="auto"),
        model=ModelConfig(window_size=8, hidden=[8], code_size=2, epochs=2, context="auto"),
    )
    with caplog.at_level("INFO", logger="monitor.app.training"):
        out = train_bundle([StreamData("s", ["v"], t, v[:, None])], cfg, tmp_path, write_plots=False)
    assert out.manifest.context == expected
    assert ScoringModel.from_bundle(load_bundle(out.bundle_path)).context == expected
    state = "on" if expected else "off"
    assert any(
        f"model.context auto: training data span {days:.2f} days: time_of_day {state}" in r.message
        for r in caplog.records
    )


def test_context_channels_are_inputs_but_never_scored():
    cfg = ModelConfig(window_size=6, hidden=[8], code_size=3, context=["time_of_day"], score_reduction="channel_max")
    spec = architecture_spec(cfg, 2)
    assert (spec["n_channels"], spec["n_context"]) == (4, 2)
    module = build_from_spec(spec)
    assert tuple(module.channel_error_scale.shape) == (2,)
    x = np.random.default_rng(0).normal(size=(3, 6, 4)).astype(np.float32)
    _, per_channel, last = Scorer(module).errors(x)
    assert per_channel.shape == (3, 2) and last.shape == (3, 2)
    y = x.copy()
    y[:, :, 2:] += 5.0  # a change in the context channels only ...
    _, pc_y, _ = Scorer(module).errors(y)
    recon_x = module(torch.from_numpy(x))[0].detach().numpy()
    recon_y = module(torch.from_numpy(y))[0].detach().numpy()
    expected = ((recon_y[:, :, :2] - y[:, :, :2]) ** 2).mean(axis=1)
    np.testing.assert_allclose(pc_y, expected, rtol=1e-5)  # ... scores the data channels only
    assert not np.allclose(recon_x[:, :, :2], recon_y[:, :, :2])  # (it does feed the model)
    assert "n_context" not in architecture_spec(ModelConfig(), 2)  # older specs unchanged


class _Scorer:
    def errors(self, x):
        x = np.asarray(x, dtype=np.float32)
        assert x.shape[2] == 3  # one channel + time_of_day's pair
        per_channel = (x[:, :, :1] ** 2).mean(axis=1) + 0.1 * x[:, -1, 1:2] + 0.01 * x[:, 0, 2:3]
        return per_channel[:, 0], per_channel, x[:, -1, :1]


def test_batched_path_with_context_agrees_with_per_reading_path():
    model = ScoringModel("t", ["v"], 60.0, 8, 1, [], np.zeros(1), np.ones(1), 0.5, _Scorer(), context=["time_of_day"])
    cfg = StreamConfig(channels=["v"], period_seconds=60.0)
    one, many = Pipeline(model, cfg, AlarmConfig()), Pipeline(model, cfg, AlarmConfig())
    rng = np.random.default_rng(1)
    msgs = [
        [Reading("s", "v", 1_700_000_000.0 + 60.0 * (40 * m + i), float(rng.normal())) for i in range(40)]
        for m in range(20)
    ]
    for msg in msgs:
        for r in msg:
            one.push_reading(r)
        many.push_batch(msg)
    a, b = one.flush()[0], many.flush()[0]
    assert len(a.times) == len(b.times) == 800 - 7
    assert list(a.score) == list(b.score) and list(a.times) == list(b.times)


def _manifest_for(spec: dict, **extra) -> dict:
    return {
        "channels": ["v"],
        "window_size": spec["window_size"],
        "stride": 1,
        "period_seconds": 60.0,
        "scaler": {"mean": [0.0], "std": [1.0]},
        "architecture": spec,
        "threshold": {"threshold": 1.0},
        **extra,
    }


def test_bundles_record_context_and_bundles_without_it_still_load(tmp_path):
    cfg = ModelConfig(window_size=6, hidden=[8], code_size=3, context=["time_of_day", "day_of_week"])
    spec = architecture_spec(cfg, 1)
    state = build_from_spec(spec).state_dict()
    path = save_bundle(tmp_path, _manifest_for(spec, context=list(cfg.context)), state, make_current=False)
    model = ScoringModel.from_bundle(load_bundle(path))
    assert (model.context, model.input_channels, model.alignment) == (["time_of_day", "day_of_week"], 5, "bucket")
    old_spec = architecture_spec(ModelConfig(window_size=6, hidden=[8], code_size=3), 1)
    old = save_bundle(tmp_path, _manifest_for(old_spec), build_from_spec(old_spec).state_dict(), make_current=False)
    old_model = ScoringModel.from_bundle(load_bundle(old))
    assert (old_model.context, old_model.input_channels) == ([], 1)
    with pytest.raises(BundleError, match=r"architecture\.n_context is 4 but context lists 0 feature"):
        save_bundle(tmp_path, _manifest_for(spec), state, make_current=False)  # context missing: never written
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps(manifest | {"context": []}))  # edited by hand
    with pytest.raises(BundleError, match=r"architecture\.n_context is 4 but context lists 0 feature"):
        load_bundle(path)


# --------------------------------------------------------------------------- demonstration

PERIOD = 600.0  # 10 minutes: 144 frames a day; window 24 = 4 hours
TRAIN_DAYS, ANOMALY_DAY, DAYS = 14, 16, 18


def _daily(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A plant that runs 08:00-18:00 UTC every day (smooth 0 -> 1 -> 0, noise 0.03). On
    day 16 it starts at 02:00: every 4-hour window of that day looks like some normal
    window, and no value leaves the normal range; only the time of day is wrong.
    Labels: 02:00-08:00 of day 16."""
    rng = np.random.default_rng(seed)
    n = int(DAYS * DAY_SECONDS / PERIOD)
    t = 19_675 * DAY_SECONDS + PERIOD * np.arange(n)  # starts at a UTC midnight
    hour = (t % DAY_SECONDS) / 3600.0
    day = (t - t[0]) // DAY_SECONDS

    def running(h, start):
        return 1 / (1 + np.exp(-3 * (h - start))) - 1 / (1 + np.exp(-3 * (h - 18.0)))

    v = np.where(day == ANOMALY_DAY, running(hour, 2.0), running(hour, 8.0)) + rng.normal(0, 0.03, n)
    labels = ((day == ANOMALY_DAY) & (hour >= 2.0) & (hour < 8.0)).astype(float)
    return t, v, labels


def _backtest_daily(tmp_path: Path, context: list[str]):
    torch.set_num_threads(1)
    t, v, labels = _daily()
    train = int(TRAIN_DAYS * DAY_SECONDS / PERIOD)
    cfg = Config(
        stream=StreamConfig(period_seconds="auto"),
        model=ModelConfig(window_size=24, hidden=[32, 16], code_size=4, epochs=40, context=context),
        # offline threshold units: the figures below (decision 0006) are the model's, not
        # online calibration's (which scores in its stream's own, log-scale tail units)
        calibration=CalibrationConfig(quantile=0.995, factor=1.2, online=OnlineCalibrationConfig(enabled=False)),
        alarm=AlarmConfig(k=2, n=3, resolve_m=6),
    )
    out = train_bundle([StreamData("s", ["v"], t[:train], v[:train, None])], cfg, tmp_path, write_plots=False)
    assert out.manifest.context == context
    model = ScoringModel.from_bundle(load_bundle(out.bundle_path))
    res = run_backtest(cfg, t, v[:, None], ["v"], model, labels=labels, train_rows=train)
    return t, labels, res, train


@pytest.mark.slow
def test_time_of_day_context_sees_a_day_that_starts_six_hours_early(tmp_path):
    t, labels, with_ctx, train = _backtest_daily(tmp_path / "ctx", ["time_of_day"])
    _, _, without, _ = _backtest_daily(tmp_path / "plain", [])
    anomaly = labels > 0
    day = (t - t[0]) // DAY_SECONDS
    other_test_days = (np.arange(len(t)) >= train) & (day != ANOMALY_DAY)
    # without context every window of the early start looks normal: missed
    assert np.nanmax(without.score[anomaly]) < 1.0 and not without.alert[anomaly].any()
    # with it: alerted within the first hour of the early start ...
    first = np.flatnonzero(with_ctx.alert[anomaly])
    assert first.size and first[0] * PERIOD <= 3600.0
    assert np.nanmax(with_ctx.score[anomaly]) > 5.0
    # ... and no alert on the normal test days (its alerts stay on the anomalous day)
    assert not with_ctx.alert[other_test_days].any() and not without.alert[other_test_days].any()
