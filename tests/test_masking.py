"""Masked scoring, pure: the masks follow data time (batch boundaries change nothing),
masked channels leave the score, and groups take their own `sensors:` section."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.core.config import AlarmConfig, SensorsConfig, StreamConfig
from monitor.core.masking import exclude_masked, keep_one_judge
from monitor.core.pipeline import Pipeline
from monitor.core.scoring_model import ScoringModel
from monitor.core.synthetic import CHANNELS, pump
from monitor.core.types import FrameBlock

CURRENT = CHANNELS.index("current")


class SquareScorer:
    """Per-channel error = mean square of the standardized window; reconstruction = 0."""

    def errors(self, x):
        per = (x.astype(np.float32) ** 2).mean(axis=1)
        return per.mean(axis=1), per, np.zeros_like(per)

    def reconstruct(self, x):
        return np.zeros_like(x)


def _model(scorer) -> ScoringModel:
    # threshold 3: clean standardized windows (mean square about 1) stay cold
    return ScoringModel("v", list(CHANNELS), 1.0, 8, 1, [], np.zeros(5), np.ones(5), 3.0, scorer)


def _run(chunk: int):
    t, v, _ = pump(400, seed=3, steps_per_hour=0)
    v = (v - v.mean(axis=0)) / v.std(axis=0)  # standardized already: the model's scaler is (0, 1)
    v[150:230, CURRENT] += 40.0  # out of the configured range
    sensors = SensorsConfig(stale_seconds=0, ranges={"current": [-10.0, 10.0]})
    pipe = Pipeline(_model(SquareScorer()), StreamConfig(period_seconds=1.0), AlarmConfig(k=3, n=5), sensors=sensors)
    scores, alerts = [], []
    for i in range(0, len(t), chunk):
        pipe.push_batch([FrameBlock("s", tuple(CHANNELS), t[i : i + chunk], v[i : i + chunk])])
        got_scores, got_alerts = pipe.flush()
        scores += [(s.timestamp, float(s.score)) for s in got_scores]
        alerts += [a.to_dict() for a in got_alerts]
    return t, scores, alerts


def test_masks_follow_data_time_whatever_the_batches():
    t, one, alerts_one = _run(1)
    _, big, alerts_big = _run(97)
    assert one == big
    # within one flush sensor alerts come before the model's; each kind's sequence is the same
    for kind in ("sensor", "anomaly"):
        assert [a for a in alerts_one if a["kind"] == kind] == [a for a in alerts_big if a["kind"] == kind]
    kinds = [(a["kind"], a["state"]) for a in alerts_one]
    assert kinds == [("sensor", "firing"), ("sensor", "resolved")]  # the 40-sigma channel raised no anomaly
    # masked while in fault and one window span after: the score there ignores the channel
    by_time = dict(one)
    assert max(by_time[x] for x in t[150:240]) < 1.0


def test_a_single_channel_out_of_range_is_still_scored_and_alerted_as_an_anomaly():
    """Nothing else to judge a one-channel feed by: out of range gives the sensor alert AND
    the anomaly (masked, it scored 0 for the whole excursion: a univariate level shift
    went unseen)."""
    t, v, _ = pump(400, seed=3, steps_per_hour=0)
    x = (v[:, :1] - v[:, 0].mean()) / v[:, 0].std()
    x[150:230, 0] += 40.0
    model = ScoringModel("v", ["flow"], 1.0, 8, 1, [], np.zeros(1), np.ones(1), 3.0, SquareScorer())
    sensors = SensorsConfig(stale_seconds=0, ranges={"flow": [-10.0, 10.0]})
    pipe = Pipeline(model, StreamConfig(period_seconds=1.0), AlarmConfig(k=3, n=5), sensors=sensors)
    pipe.push_batch([FrameBlock("s", ("flow",), t, x)])
    scores, alerts = pipe.flush()
    by_time = {s.timestamp: float(s.score) for s in scores}
    assert min(by_time[ts] for ts in t[160:230]) > 100.0  # scored as is, far over the threshold
    kinds = [(a.kind, a.state) for a in alerts]
    assert ("sensor", "firing") in kinds and ("anomaly", "firing") in kinds
    anomaly = next(a for a in alerts if a.kind == "anomaly")
    assert not anomaly.masked  # nothing was masked for it


def test_keep_one_judge_clears_only_rows_that_mask_every_channel():
    masked = np.array([[True, True], [True, False], [False, False]])
    out = keep_one_judge(masked)
    assert out is not None and out.tolist() == [[False, False], [True, False], [False, False]]
    assert masked[0].all()  # the caller's array is left alone
    assert keep_one_judge(np.ones((3, 2), dtype=bool)) is None


def test_exclude_masked_takes_mean_or_max_of_the_other_channels():
    per = np.array([[1.0, 2.0, 30.0], [1.0, 2.0, 3.0]], dtype=np.float32)
    raw = per.mean(axis=1)
    masked = np.array([[False, False, True], [False, False, False]])
    r, p = exclude_masked(raw, per, masked, "mean")
    assert r.tolist() == [1.5, 2.0] and p[0].tolist() == [1.0, 2.0, 0.0]
    r, _ = exclude_masked(per.max(axis=1), per, masked, "channel_max")
    assert r.tolist() == [2.0, 3.0]
    r, _ = exclude_masked(raw, per, np.ones((2, 3), dtype=bool), "mean")
    assert r.tolist() == [0.0, 0.0]  # nothing left to judge by


def test_groups_take_their_own_sensors_section_over_the_top_level_one(tmp_path):
    from monitor.core.config import ConfigError  # noqa: PLC0415
    from monitor.core.fleet import Fleet  # noqa: PLC0415
    from tests.daemon_support import config_from  # noqa: PLC0415

    raw = {
        "sensors": {"stale_seconds": 30, "ranges": {"current": [0, 20]}},
        "groups": [
            {"name": "motors", "streams": ["m*"], "sensors": {"ranges": {"current": [0, 60]}}},
            {"name": "rest"},
        ],
    }
    cfg = config_from(raw)
    motors, rest = cfg.group("motors"), cfg.group("rest")
    assert motors.sensors.ranges == {"current": [0.0, 60.0]} and motors.sensors.stale_seconds == 30
    assert rest.sensors.ranges == {"current": [0.0, 20.0]}
    assert cfg.for_group("motors").sensors.ranges == {"current": [0.0, 60.0]}  # what training learns with
    geometry = ScoringModel("v", list(CHANNELS), 1.0, 16, 1, [], np.zeros(5), np.ones(5), 1.0, None)
    fleet = Fleet.from_config(cfg)
    fleet.install("motors", geometry)
    pipe = fleet.pipeline("motors")
    assert pipe is not None and pipe.sensors is not None
    assert pipe.sensors.th.high[CURRENT] == 60.0
    raw["groups"][0]["sensors"] = {"ranges": {"current": [5, 1]}}
    with pytest.raises(ConfigError, match=r"groups\[0\]\.sensors\.ranges\.current"):
        config_from(raw)
