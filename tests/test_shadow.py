"""Shadow scoring, pure: the candidate scores the serving model's windows exactly as it
would score them serving, and the verdict's checks."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from monitor.core import shadow as shadow_module
from monitor.core.config import AlarmConfig, StreamConfig
from monitor.core.model.bundle import load_bundle
from monitor.core.pipeline import Pipeline
from monitor.core.scoring_model import ScoringModel
from monitor.core.shadow import HIST_EDGES, Shadow, ShadowSettings, bin_of, drift_tracker_of
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


def test_the_fast_paths_report_exactly_what_per_stream_tables_and_an_alarm_run_on_every_batch_report(model):
    # the fast shadow (one affine map for all streams, its alarm skipped while idle and the
    # batch cold, scores divided and binned in bulk) against the general one on the same feed
    cand = dataclasses.replace(
        model, version="cand", mean=model.mean - 0.2 * model.std, std=model.std * 0.9, threshold=model.threshold * 0.9
    )
    cfg = StreamConfig(channels=list(CHANNELS), period_seconds=1.0)
    fast, slow = Pipeline(model, cfg, ALARM), Pipeline(model, cfg, ALARM)
    fast.shadow = Shadow(cand, model, ALARM, ShadowSettings(seconds=100.0, min_windows=10))
    slow.shadow = ref = Shadow(cand, model, ALARM, ShadowSettings(seconds=100.0, min_windows=10))
    ref._uniform_ok = False  # the per-stream tables
    fast.shadow._fold_ok = False  # the in-place map (the fold: tests/test_shadow_fold.py)
    ref.alarm.idle = lambda: False  # type: ignore[method-assign]  # the alarm on every batch
    ref._idle = False
    t, v, _ = pump(700, seed=5, steps_per_hour=0, faults=[Fault(300, 420, "cavitation"), Fault(520, 560, "bearing")])
    scores: dict[str, list] = {"fast": [], "slow": []}
    for name, sh in (("fast", fast.shadow), ("slow", ref)):  # the candidate scores, as binned
        _record(sh.hist, scores[name])
    flushes = 0
    for i in range(700):
        for s in range(3):
            for pipe in (fast, slow):
                pipe.push_row(f"p{s}", float(t[i]), v[i])
        if fast.pending >= 50:
            flushes += 1
            for pipe in (fast, slow):
                pipe.flush()
                assert pipe.shadow is not None, pipe.shadow_error
                if flushes % 5 == 0:  # read now and then (the daemon's report reads the histograms)
                    assert pipe.shadow.hist.n == pipe.shadow.windows
    sh = fast.shadow
    assert sh is not None and sh._uniform is not None and ref._uniform is None
    assert sh.hist.n == ref.hist.n == sh.windows and len(scores["fast"]) > 5
    for a, b in zip(scores["fast"], scores["slow"], strict=True):
        np.testing.assert_array_equal(a, b)
    assert sh.episodes == ref.episodes >= 2
    assert (sh.windows, sh.first_time, sh.last_time, sh.last_max) == (
        ref.windows,
        ref.first_time,
        ref.last_time,
        ref.last_max,
    )
    np.testing.assert_array_equal(sh.hist.counts, ref.hist.counts)
    np.testing.assert_array_equal(sh.live_hist.counts, ref.live_hist.counts)
    assert sh.summary() == ref.summary()
    for stream, st in ref.alarm.states.items():
        mine = sh.alarm.states.get(stream)
        assert mine is not None and mine.last_resolved_at == st.last_resolved_at
        assert (mine.episode and mine.episode.alert_id) == (st.episode and st.episode.alert_id)


def _record(hist, kept: list) -> None:
    """Keep a copy of every batch `hist.add` is given."""
    add = hist.add

    def recording(scores):
        kept.append(np.array(scores))
        add(scores)

    hist.add = recording


def test_a_saved_shadow_goes_on_where_it_stopped_and_only_for_the_same_pair(model):
    cfg = StreamConfig(channels=list(CHANNELS), period_seconds=1.0)
    cand = dataclasses.replace(model, version="cand", threshold=model.threshold * 0.7)
    settings = ShadowSettings(seconds=100.0, min_windows=10)
    whole = Pipeline(model, cfg, ALARM)
    whole.shadow = Shadow(cand, model, ALARM, settings)
    _feed(whole, 600, 2, fault=True)  # in one go
    first = Pipeline(model, cfg, ALARM)  # the same feed, with a restart at row 350 (in the fault)
    first.shadow = Shadow(cand, model, ALARM, settings)
    t, v, _ = pump(600, seed=5, steps_per_hour=0, faults=[Fault(300, 420, "cavitation")])
    for i in range(350):
        for s in range(2):
            first.push_row(f"p{s}", float(t[i]), v[i])
    first.flush()
    assert first.shadow is not None and first.alarm.firing_streams()
    state = json.loads(json.dumps(first.shadow.to_state()))  # through JSON, as on disk
    assert any(st["episode"] for st in state["alarm"]["streams"].values())  # the candidate's episode is open
    second = Pipeline(model, cfg, ALARM)
    second.alarm.states = first.alarm.states  # the serving model's alarm state is restored too (alarm.json)
    second.shadow = resumed = Shadow(cand, model, ALARM, settings)
    assert resumed.restore(state) and resumed.windows == first.shadow.windows
    for i in range(350, 600):
        for s in range(2):
            second.push_row(f"p{s}", float(t[i]), v[i])
    second.flush()
    ref = whole.shadow
    assert ref is not None and ref.episodes >= 1
    # the restart costs the windows that refill (window_size - 1 per stream), nothing else:
    # same start, same episodes (the open one is not counted twice)
    assert resumed.first_time == ref.first_time and resumed.last_time == ref.last_time
    assert resumed.episodes == ref.episodes and resumed.live_episodes == ref.live_episodes
    assert resumed.windows == ref.windows - 2 * (model.window_size - 1)
    assert resumed.due() and resumed.verdict().promote == ref.verdict().promote
    # another candidate, or the same beside another serving model: a fresh period, nothing adopted
    other = Shadow(dataclasses.replace(cand, version="other"), model, ALARM, settings)
    assert not other.restore(state) and other.windows == 0
    beside = Shadow(cand, dataclasses.replace(model, version="served-later"), ALARM, settings)
    assert not beside.restore(state) and beside.windows == 0
    # malformed: ValueError, nothing adopted
    for bad in (
        {**state, "windows": -1},
        {**state, "first_time": "yesterday"},
        {**state, "histogram": {"candidate": [1, 2], "current": state["histogram"]["current"]}},
        {**state, "alarm": {"version": 99}},
        {**state, "version": 0},
        [],
    ):
        fresh = Shadow(cand, model, ALARM, settings)
        with pytest.raises(ValueError):
            fresh.restore(bad)
        assert fresh.windows == 0 and fresh.hist.n == 0 and not fresh.alarm.states


def test_the_arithmetic_binning_is_the_binary_search_over_the_edges():
    rng = np.random.default_rng(3)
    edges = HIST_EDGES
    logs = np.concatenate(
        [
            np.log10(rng.lognormal(-1.0, 2.0, 50_000)),
            rng.uniform(-13.0, 6.0, 50_000),
            edges,
            np.nextafter(edges, -np.inf),
            np.nextafter(edges, np.inf),
            [-12.0, -4.0, 4.0, 4.5, -4.025],
        ]
    )
    np.testing.assert_array_equal(bin_of(logs), np.searchsorted(edges, logs, side="right"))


def test_a_backlog_batch_and_a_full_buffer_bin_and_span_as_small_batches(model):
    # one flush of more windows than the buffers hold, against flushes of 300 that fill
    # them (settled on overflow) and that are read now and then
    cand = dataclasses.replace(model, version="cand", threshold=model.threshold * 0.9)
    cfg = StreamConfig(channels=list(CHANNELS), period_seconds=1.0)
    big, small = Pipeline(model, cfg, ALARM), Pipeline(model, cfg, ALARM)
    for pipe in (big, small):
        pipe.shadow = Shadow(cand, model, ALARM, ShadowSettings(seconds=100.0, min_windows=10))
    t, v, _ = pump(600, seed=6, steps_per_hour=0)
    for i in range(600):
        for s in range(16):
            for pipe in (big, small):
                pipe.push_row(f"p{s}", float(t[i]), v[i])
        if small.pending >= 300:
            small.flush()
    for pipe in (big, small):
        pipe.flush()
    a, b = big.shadow, small.shadow
    assert a is not None and b is not None and a.windows == b.windows == 16 * (600 - model.window_size + 1)
    assert a.windows > shadow_module.PENDING_VALUES and b._fill > 0  # b's scores still wait
    assert (a.first_time, a.last_time) == (b.first_time, b.last_time) == (float(t[model.window_size - 1]), float(t[-1]))
    np.testing.assert_array_equal(a.hist.counts, b.hist.counts)
    np.testing.assert_array_equal(a.live_hist.counts, b.live_hist.counts)
    assert a.hist.n == a.windows and b._fill == 0


def test_the_shadow_keeps_the_candidates_drift_as_it_would_serving_and_across_a_restart(model):
    # what the promoted candidate serves with (ShadowManager.on_model): its own raw errors on
    # the live windows, against its reference deciles, as a tracker of it serving would hold
    cand = dataclasses.replace(
        model, version="cand", mean=model.mean + 0.1 * model.std, std=model.std * 1.1, threshold=model.threshold * 0.9
    )
    cfg = StreamConfig(channels=list(CHANNELS), period_seconds=1.0)
    live, alone = Pipeline(model, cfg, ALARM), Pipeline(cand, cfg, ALARM)
    live.shadow = sh = Shadow(cand, model, ALARM, ShadowSettings(seconds=1e6, min_windows=10))
    serving = drift_tracker_of(cand)
    assert serving is not None and sh.drift is not None and serving.min_windows == 8192  # 1 Hz: 2.3 h
    t, v, _ = pump(450, seed=7, steps_per_hour=0)
    for i in range(450):
        for s in range(20):
            live.push_row(f"p{s}", float(t[i]), v[i])
            alone.push_row(f"p{s}", float(t[i]), v[i])
        if alone.pending >= 256:
            live.flush()
            serving.add(alone.flush()[0].raw)
    live.flush()
    serving.add(alone.flush()[0].raw)
    assert sh.drift.filled == serving.filled == sh.windows == 20 * (450 - model.window_size + 1) > 8192  # binned
    assert sh.drift.seen == serving.seen == sh.windows
    # the same windows' errors up to float32 rounding: a decile edge may take one window
    np.testing.assert_allclose(sh.drift.shares(), serving.shares(), atol=2 / serving.filled)
    assert math.isfinite(sh.drift.value()) and sh.drift.value() == pytest.approx(serving.value(), abs=1e-3)
    resumed = Shadow(cand, model, ALARM, ShadowSettings(seconds=1e6, min_windows=10))
    assert resumed.drift is not None and math.isnan(resumed.drift.value())  # a fresh shadow: none yet
    assert resumed.restore(json.loads(json.dumps(sh.to_state())))
    assert resumed.drift.seen == sh.drift.seen and resumed.drift.value() == sh.drift.value()
    # a candidate without reference deciles has no drift to hand over; a bad summary is refused
    bare = Shadow(dataclasses.replace(cand, manifest=None), model, ALARM, ShadowSettings(seconds=1e6))
    assert bare.drift is None and bare.to_state()["drift"] is None
    fresh = Shadow(cand, model, ALARM, ShadowSettings(seconds=1e6))
    for bad in ({**sh.drift.to_state(), "current_n": -1}, {"edges": sh.drift.edges.tolist()}, []):
        with pytest.raises(ValueError):
            fresh.restore({**sh.to_state(), "drift": bad})
        assert fresh.windows == 0 and fresh.drift is not None and fresh.drift.seen == 0
