"""Shadow scoring, pure: the candidate scores the serving model's windows exactly as it
would score them serving, and the verdict's checks."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from monitor.core.config import AlarmConfig, StreamConfig
from monitor.core.model.bundle import load_bundle
from monitor.core.pipeline import Pipeline, ScoringModel
from monitor.core.shadow import Shadow, ShadowSettings
from monitor.core.synthetic import CHANNELS, Fault, pump
from tests.daemon_support import train_small_model

ALARM = AlarmConfig(k=3, n=5, resolve_m=10)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> ScoringModel:
    return ScoringModel.from_bundle(load_bundle(train_small_model(tmp_path_factory.mktemp("m") / "models")))


def _feed(pipe: Pipeline, rows: int, streams: int, fault: bool) -> list:
    t, v, _ = pump(rows, seed=5, steps_per_hour=0, faults=[Fault(300, 420, "cavitation")] if fault else [])
    alerts = []
    for i in range(rows):
        for s in range(streams):
            pipe.push_row(f"p{s}", float(t[i]), v[i])
        if pipe.pending >= 64:
            alerts += pipe.flush()[1]
    alerts += pipe.flush()[1]
    return alerts


def test_shadow_scores_like_the_candidate_serving(model):
    # another scaler (so the windows are re-standardized) and another threshold
    cand = dataclasses.replace(
        model, version="cand", mean=model.mean + 0.3 * model.std, std=model.std * 1.2, threshold=model.threshold * 0.8
    )
    live = Pipeline(model, StreamConfig(channels=list(CHANNELS), period_seconds=1.0), ALARM)
    live.shadow = Shadow(cand, model, ALARM, ShadowSettings(seconds=100.0, min_windows=10))
    _feed(live, 600, 3, fault=True)
    serving = Pipeline(cand, StreamConfig(channels=list(CHANNELS), period_seconds=1.0), ALARM)
    alerts = _feed(serving, 600, 3, fault=True)
    sh = live.shadow
    assert sh is not None and live.shadow_error is None
    firing = sum(1 for a in alerts if a.state == "firing" and a.kind == "anomaly")
    assert firing >= 1 and sh.episodes == firing
    assert sh.windows == 3 * (600 - model.window_size + 1)
    # the same scores as the candidate serving (float32 rounding of the re-standardization aside)
    serving_hist = type(sh.hist)()
    ref = Pipeline(cand, StreamConfig(channels=list(CHANNELS), period_seconds=1.0), ALARM)
    t, v, _ = pump(600, seed=5, steps_per_hour=0, faults=[Fault(300, 420, "cavitation")])
    for i in range(600):
        for s in range(3):
            ref.push_row(f"p{s}", float(t[i]), v[i])
    serving_hist.add(ref.flush()[0].score)
    assert np.abs(serving_hist.counts - sh.hist.counts).sum() <= 0.01 * sh.windows


def test_verdict_rejects_a_noisy_candidate_and_passes_the_same_model(model):
    cfg = StreamConfig(channels=list(CHANNELS), period_seconds=1.0)
    settings = ShadowSettings(seconds=200.0, min_windows=100, alert_margin=0, max_alert_episodes=3)
    same = Pipeline(model, cfg, ALARM)
    same.shadow = Shadow(dataclasses.replace(model, version="same"), model, ALARM, settings)
    noisy = Pipeline(model, cfg, ALARM)
    noisy.shadow = Shadow(
        dataclasses.replace(model, version="noisy", threshold=model.threshold / 20), model, ALARM, settings
    )
    for pipe in (same, noisy):
        _feed(pipe, 400, 2, fault=False)
        assert pipe.shadow is not None and pipe.shadow.due()
    good = same.shadow.verdict()
    assert good.promote, good.checks
    ratio = next(c for c in good.checks if c["check"] == "score_quantile")["ratio"]
    assert ratio == pytest.approx(1.0)
    bad = noisy.shadow.verdict()
    failed = {c["check"] for c in bad.checks if not c["passed"]}
    assert not bad.promote and {"alert_episodes", "score_quantile"} <= failed


def test_a_shadow_of_another_geometry_is_refused_and_a_failing_one_never_costs_the_live_scores(model):
    other = dataclasses.replace(model, version="wide", window_size=model.window_size * 2)
    with pytest.raises(ValueError, match="geometry"):
        Shadow(other, model, ALARM, ShadowSettings(seconds=1.0))
    pipe = Pipeline(model, StreamConfig(channels=list(CHANNELS), period_seconds=1.0), ALARM)
    broken = Shadow(dataclasses.replace(model, version="broken"), model, ALARM, ShadowSettings(seconds=1.0))
    broken.model = dataclasses.replace(broken.model, scorer=None)  # its forward pass raises
    pipe.shadow = broken
    t, v, _ = pump(40, seed=1, steps_per_hour=0)
    for i in range(40):
        pipe.push_row("p", float(t[i]), v[i])
    scores, _ = pipe.flush()
    assert len(scores) == 40 - model.window_size + 1 and all(math.isfinite(s) for s in scores.score)
    assert pipe.shadow is None and "AttributeError" in (pipe.shadow_error or "")
