"""A sensor clock that steps back re-syncs its stream instead of leaving it blind (issue 13, item 7).

Before this, the fault matrix's row "clock steps back 1 h" dropped 500 of 500 later
readings as ``out_of_order``: the stream was blind until data time caught up.
"""

from __future__ import annotations

import numpy as np
import pytest

from monitor.core.config import AlarmConfig, ConfigError, StreamConfig
from monitor.core.pipeline import Pipeline
from monitor.core.scoring_model import ScoringModel
from monitor.core.stream.clock_step import ClockStepDetector, step_seconds
from monitor.core.types import Reading


class _Scorer:
    def errors(self, x):
        x = np.asarray(x, dtype=np.float32)
        per_channel = (x**2).mean(axis=1)
        return per_channel.mean(axis=1), per_channel, x[:, -1, :]


def _model(channels=("a", "b")) -> ScoringModel:
    n = len(channels)
    return ScoringModel(
        version="t1",
        channels=list(channels),
        period_seconds=1.0,
        window_size=5,
        stride=1,
        filters=[],
        mean=np.zeros(n),
        std=np.ones(n),
        threshold=100.0,
        scorer=_Scorer(),
    )


def _pipeline(**stream) -> Pipeline:
    cfg = StreamConfig(channels=["a", "b"], period_seconds=1.0, **stream)
    return Pipeline(_model(), cfg, AlarmConfig())


def _feed(p: Pipeline, times, stream="s") -> int:
    """Push both channels at each time; the number of windows scored."""
    windows = 0
    for t in times:
        for c in ("a", "b"):
            p.push_reading(Reading(stream, c, float(t), 0.1))
        scores, _ = p.flush()
        windows += len(scores)
    return windows


def test_a_clock_stepped_back_an_hour_is_resynced_and_no_reading_is_lost():
    p = _pipeline()
    before = _feed(p, range(10_000, 10_300))
    after = _feed(p, range(10_300 - 3600, 10_300 - 3600 + 250))  # 500 readings, an hour in the past
    assert p.counters["clock_steps"] == 1
    assert p.counters["out_of_order"] == 0 and p.counters["late"] == 0
    assert p.counters["accepted"] == 2 * (300 + 250)  # the held readings too, counted once
    assert before > 250 and after >= 250 - 5  # scored again after the step (one window to fill)


def test_the_same_feed_without_detection_goes_blind():
    p = _pipeline(clock_step_seconds=0)
    _feed(p, range(10_000, 10_300))
    after = _feed(p, range(10_300 - 3600, 10_300 - 3600 + 250))
    assert after == 0 and p.counters["out_of_order"] + p.counters["late"] == 500
    assert p.counters["clock_steps"] == 0


def test_ordinary_reordering_is_not_a_clock_step():
    p = _pipeline()
    _feed(p, range(10_000, 10_100))
    # a reading 3 s old (younger than the 60 s step), then a few stray ones an hour old
    # with fresh readings between them: all counted as dropped, no re-sync
    p.push_reading(Reading("s", "a", 10_096.0, 0.1))
    for k in range(4):
        p.push_reading(Reading("s", "a", 6_000.0 + k, 0.1))
    _feed(p, [10_100])
    for k in range(4):
        p.push_reading(Reading("s", "b", 6_100.0 + k, 0.1))
    _feed(p, [10_101])
    assert p.counters["clock_steps"] == 0
    assert p.counters["out_of_order"] + p.counters["late"] == 9


def test_wide_rows_resync_like_readings():
    rows = Pipeline(_model(), StreamConfig(channels=["a", "b"], period_seconds=1.0), AlarmConfig())
    each = _pipeline()
    times = [*range(10_000, 10_200), *range(10_200 - 3600, 10_200 - 3600 + 100)]
    got_rows = 0
    for t in times:
        rows.push_row("s", float(t), np.array([0.1, 0.1]))
        got_rows += len(rows.flush()[0])
    got_each = _feed(each, times)
    assert rows.counters["clock_steps"] == each.counters["clock_steps"] == 1
    assert rows.counters["out_of_order"] == 0 and got_rows == got_each


def test_push_batch_resyncs_at_the_same_reading_as_push_reading():
    one, many = _pipeline(), _pipeline()
    times = [*range(10_000, 10_200), *range(10_200 - 3600, 10_200 - 3600 + 100)]
    msg = [Reading("s", c, float(t), float(t % 7)) for t in times for c in ("a", "b")]
    for r in msg:
        one.push_reading(r)
    many.push_batch(msg)
    s1, _ = one.flush()
    s2, _ = many.flush()
    assert one.counters == many.counters and one.counters["clock_steps"] == 1
    assert np.array_equal(np.asarray(s1.times), np.asarray(s2.times))


def test_detector_defaults_and_config_validation():
    assert step_seconds(None, 1.0) == 60.0 and step_seconds(None, 30.0) == 300.0 and step_seconds(0, 1.0) == 0.0
    d = ClockStepDetector(60.0, readings=2)
    assert d.rejected(1000.0, 990.0, "x", "late") == (False, [("x", "late")])  # young: dropped now
    assert d.rejected(1000.0, 100.0, "y", "out_of_order") == (False, [])  # held
    assert d.rejected(1000.0, 101.0, "z", "out_of_order") == (True, [("y", "out_of_order"), ("z", "out_of_order")])
    with pytest.raises(ConfigError, match="clock_step_seconds"):
        StreamConfig(clock_step_seconds=-1)
    with pytest.raises(ConfigError, match="clock_step_readings"):
        StreamConfig(clock_step_readings=0)
