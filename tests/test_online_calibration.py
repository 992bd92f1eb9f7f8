"""Online per-stream calibration (monitor.core.calibrate): comparability, the prior,
batch independence, regime changes, the alert budget, persistence, config errors."""

from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import pytest

from monitor.core.calibrate import BUDGET_MAX, OnlineCalibrator
from monitor.core.config import AlarmConfig, ConfigError, OnlineCalibrationConfig, load_config

CFG = OnlineCalibrationConfig(chunk_windows=16, min_windows=64, history_windows=1000, rebaseline_after_seconds=200.0)


def feed(cal: OnlineCalibrator, errors: dict[str, np.ndarray], cuts: list[int]) -> dict[str, np.ndarray]:
    """Every stream's errors (one per second, time = index) in batches cut at `cuts`,
    streams interleaved in each batch; returns each stream's scores."""
    n = len(next(iter(errors.values())))
    out: dict[str, list[float]] = {k: [] for k in errors}
    edges = [0, *sorted(c for c in cuts if 0 < c < n), n]
    for a, b in itertools.pairwise(edges):
        raw, times, runs = [], [], []
        for key, e in errors.items():
            runs.append((key, len(raw), len(raw) + b - a))
            raw.extend(e[a:b])
            times.extend(range(a, b))
        scores = cal.calibrate(np.asarray(raw), runs, np.asarray(times, dtype=float))
        for key, start, stop in runs:
            out[key].extend(scores[start:stop])
    return {k: np.asarray(v) for k, v in out.items()}


def lognormal(n: int, scale: float, sigma: float, seed: int) -> np.ndarray:
    return scale * np.exp(sigma * np.random.default_rng(seed).standard_normal(n))


def test_scores_of_very_different_streams_are_comparable_after_warm_up():
    # raw errors from 1e-4 to 1e3 and spreads from narrow to wide, one prior for all
    cases = {
        f"s{i}": lognormal(4000, scale, sigma, i)
        for i, (scale, sigma) in enumerate([(1e-4, 0.2), (0.03, 0.5), (1.0, 1.0), (50.0, 0.3), (1e3, 0.8)])
    }
    cal = OnlineCalibrator(CFG, lambda k: 0.05, 1.0)
    scores = feed(cal, cases, list(range(0, 4000, 97)))
    for key, s in scores.items():
        p99 = float(np.quantile(s[500:], 0.99))
        assert 0.5 <= p99 <= 2.0, (key, p99)
        # the offline prior (0.05 for all) put them 3 orders of magnitude apart before
    assert scores["s0"][:16].max() < 0.01 and scores["s4"][:16].min() > 1000  # first chunk: prior only


def test_error_distributions_of_any_shape_put_their_normal_p99_inside_the_bar():
    """Log errors that are not normal: heavy (Student-t, 2 dof), bounded (uniform),
    skewed (exponential) and bimodal, at scales 1e-2..10. Each stream's tail is matched
    to its own p99, so the normal-time p99 score lies well inside [0.5, 2] for all of
    them, and closer together than with a normal tail (tail factor 1)."""
    rng = np.random.default_rng(7)
    n = 6000
    shapes = {
        "heavy": 0.3 * rng.standard_t(2, n),
        "bounded": rng.uniform(-1.0, 1.0, n),
        "skewed": rng.exponential(0.5, n),
        "bimodal": np.where(rng.random(n) < 0.7, 0.0, 2.0) + 0.05 * rng.standard_normal(n),
    }
    errors = {k: np.exp(v) * 10.0 ** (i - 2) for i, (k, v) in enumerate(shapes.items())}
    cfg = OnlineCalibrationConfig(regime=False)  # no re-baselining: only the tail at work
    scores = feed(OnlineCalibrator(cfg, lambda key: 1.0, 1.0), errors, list(range(0, n, 97)))
    p99 = {k: float(np.quantile(v[n // 2 :], 0.99)) for k, v in scores.items()}
    assert all(0.55 <= p <= 1.5 for p in p99.values()), p99
    # the tail is what does it: scores scale with 1 / tail, so with a normal tail (1.0)
    # the heavy stream's p99 would sit higher and the bounded one's lower
    cal = OnlineCalibrator(cfg, lambda key: 1.0, 1.0)
    feed(cal, errors, [])
    tails = {k: st.tail for k, st in cal.streams.items()}
    assert tails["heavy"] > 1.1 and tails["bounded"] < 0.95 and tails["skewed"] > 1.0, tails
    normal_tail = {k: p99[k] * tails[k] for k in p99}
    assert max(normal_tail.values()) / min(normal_tail.values()) > 1.3 * max(p99.values()) / min(p99.values())


def test_the_prior_scores_a_stream_until_it_has_history():
    cal = OnlineCalibrator(dataclasses.replace(CFG, warmup="prior"), lambda k: {"a": 2.0, "b": 4.0}[k], 1.0)
    e = lognormal(200, 1.0, 0.3, 1)
    scores = feed(cal, {"a": e, "b": e}, [10, 50])
    assert np.allclose(scores["a"][:64], e[:64] / 2.0) and np.allclose(scores["b"][:64], e[:64] / 4.0)
    assert not np.allclose(scores["a"][64:], e[64:] / 2.0)  # online from the 65th window
    st = cal.streams["a"]
    assert (
        cal.effective_threshold("a") == pytest.approx(np.exp(st.mu + cal._z(st) * st.sigma * st.tail))
        and cal._z(st) > cal.z
    )


def test_warm_up_blends_the_prior_into_the_stream_s_own_estimate_as_history_grows():
    """warmup "blend": the first chunk is scored on the prior alone; after n learnt windows
    (n < min_windows) a window scores ``(1 - w) raw / prior + w * own`` with w = n /
    min_windows, so a stream shorter than the warm-up (bench/shifts.py's 250-row series)
    moves towards its own distribution instead of staying on the prior; from min_windows
    on it is the online score alone, as with warmup "prior"."""
    e = lognormal(400, 1.0, 0.3, 2)
    blend = OnlineCalibrator(CFG, lambda k: 0.5, 1.0)
    prior = OnlineCalibrator(dataclasses.replace(CFG, warmup="prior"), lambda k: 0.5, 1.0)
    sb = feed(blend, {"a": e}, [7, 40, 100])["a"]
    sp = feed(prior, {"a": e}, [])["a"]
    assert np.array_equal(sb[:16], e[:16] / 0.5) and np.allclose(sp[:64], e[:64] / 0.5)
    assert np.array_equal(sb[64:], sp[64:])  # online from min_windows: the same scores
    # chunk 2 (windows 32..47) is scored with 32 learnt windows: w = 0.5, its own estimate
    # from them (the moments and margin as they stood at the chunk's start)
    x, wx = np.log(e[:32]), np.r_[np.full(16, blend.decay), np.ones(16)]  # chunk 0 decayed once
    mu = (wx * x).sum() / wx.sum()
    sigma = max(np.sqrt((wx * x * x).sum() / wx.sum() - mu * mu), CFG.min_sigma)
    own = np.maximum(np.log(e[32:48]) - mu, 0.0) / (blend.z * (1 + 16 / 32) * sigma)
    assert np.allclose(sb[32:48], 0.5 * e[32:48] / 0.5 + 0.5 * own, rtol=1e-4)
    # the prior (0.5) sits far below this stream's errors: blending halves its false alarms
    assert (sb[16:64] >= 1.0).sum() < 0.6 * (sp[16:64] >= 1.0).sum()


@pytest.mark.parametrize("seed", range(4))
def test_scores_and_events_do_not_depend_on_batch_boundaries(seed):
    rng = np.random.default_rng(seed)
    e = {k: lognormal(1500, 1.0, 0.4, seed * 10 + i) for i, k in enumerate("xyz")}
    e["y"][700:] *= 8.0  # a level shift: a regime change on the way
    e["z"][300:320] *= 30.0  # a short anomaly
    budget = 3.0
    one = OnlineCalibrator(CFG, lambda k: 1.5, 1.0, budget)
    whole = feed(one, e, [])
    many = OnlineCalibrator(CFG, lambda k: 1.5, 1.0, budget)
    cut = feed(many, e, sorted(rng.choice(1500, size=60, replace=False).tolist()))
    for k in e:
        assert np.array_equal(whole[k], cut[k]), k
    assert one.drain_events() == many.drain_events() and one.regime_changes == 1
    assert one.to_state("v") == many.to_state("v")


def test_a_level_shift_alerts_once_then_the_stream_re_baselines():
    e = lognormal(3000, 0.1, 0.3, 7)
    e[1000:] *= 10.0
    cal = OnlineCalibrator(CFG, lambda k: 0.3, 1.0)
    s = feed(cal, {"p": e}, list(range(0, 3000, 50)))["p"]
    (ev,) = cal.drain_events()
    assert ev.direction == "up" and 1000 - 16 < ev.started_at <= 1000 and 1190 <= ev.at <= 1240  # chunk grain
    assert ev.level_after / ev.level_before == pytest.approx(10.0, rel=0.1)
    assert (s[1000:1100] >= 1.0).mean() > 0.9  # the shift itself is seen
    assert (s[1300:] >= 1.0).mean() < 0.01  # and then it is the new normal
    assert cal.regime_changes == 1


def test_a_variance_increase_is_a_regime_change_and_a_short_anomaly_is_not():
    e = lognormal(3000, 0.1, 0.2, 8)
    e[400:410] *= 50.0  # short: scored hot, no regime change
    e[1500:] = lognormal(1500, 0.1, 1.2, 9)  # spread x6
    cal = OnlineCalibrator(CFG, lambda k: 0.3, 1.0)
    s = feed(cal, {"p": e}, [])["p"]
    assert (s[400:410] >= 1.0).all()
    (ev,) = cal.drain_events()
    assert ev.started_at > 1500 - 16 and ev.direction in ("spread", "up")
    assert (s[2000:] >= 1.0).mean() < 0.02


def test_regime_detection_off_keeps_alarming():
    e = lognormal(2000, 0.1, 0.3, 7)
    e[800:] *= 10.0
    cfg = OnlineCalibrationConfig(chunk_windows=16, min_windows=64, regime=False)
    cal = OnlineCalibrator(cfg, lambda k: 0.3, 1.0)
    s = feed(cal, {"p": e}, [])["p"]
    assert not cal.drain_events() and (s[1500:] >= 1.0).mean() > 0.9


def test_the_budget_raises_a_noisy_streams_threshold_and_exports_its_use():
    # a heavy-tailed stream: many more hot onsets than a log-normal tail promises
    rng = np.random.default_rng(3)
    week = 7 * 86400
    n = 6000  # one window every 600 s: 6000 windows are ~6 weeks
    e = 0.1 * np.exp(0.3 * rng.standard_t(2, size=n))
    times = np.arange(n) * 600.0

    def run(budget: float | None) -> tuple[np.ndarray, OnlineCalibrator]:
        cal = OnlineCalibrator(CFG, lambda k: 0.3, 600.0, budget)
        return cal.calibrate(e, [("p", 0, n)], times), cal

    free, _ = run(None)
    capped, cal = run(2.0)
    late = times > 2 * week
    assert (capped[late] >= 1).sum() < 0.6 * (free[late] >= 1).sum()
    assert 1.0 < cal.streams["p"].mult <= BUDGET_MAX
    assert cal.budget_use("p") is not None and cal.budget_use("p") > 0
    assert cal.effective_threshold("p") > np.exp(
        cal.streams["p"].mu + cal._z(cal.streams["p"]) * cal.streams["p"].sigma
    )


def test_state_round_trip_continues_exactly_and_a_bad_state_is_refused(tmp_path):
    e = {"a": lognormal(900, 1.0, 0.4, 1), "b": lognormal(900, 3.0, 0.2, 2)}
    straight = OnlineCalibrator(CFG, lambda k: 2.0, 1.0, 5.0)
    expected = feed(straight, e, [450])
    first = OnlineCalibrator(CFG, lambda k: 2.0, 1.0, 5.0)
    feed(first, {k: v[:450] for k, v in e.items()}, [])
    text = json.dumps(first.to_state("v1"))  # through JSON, as on disk
    second = OnlineCalibrator(CFG, lambda k: 2.0, 1.0, 5.0)
    assert second.restore(json.loads(text), "v1") == 2
    rest = feed(second, {k: v[450:] for k, v in e.items()}, [])
    for k in e:
        assert np.array_equal(rest[k], expected[k][450:])
    other = OnlineCalibrator(CFG, lambda k: 2.0, 1.0)
    assert other.restore(json.loads(text), "v2") == 0 and not other.streams  # another model's errors
    broken = json.loads(text)
    broken["streams"]["a"] = broken["streams"]["a"][:-1]
    for bad in (broken, {"version": 99}, [], {**json.loads(text), "streams": 3}):
        with pytest.raises(ValueError):
            OnlineCalibrator(CFG, lambda k: 2.0, 1.0).restore(bad, "v1")


def test_calibration_off_scores_raw_over_each_streams_prior():
    cal = OnlineCalibrator(OnlineCalibrationConfig(enabled=False), lambda k: {"a": 2.0, "b": 4.0}[k], 1.0)
    raw = np.array([1.0, 2.0, 3.0, 4.0])
    assert cal.calibrate(raw, [("a", 0, 2), ("b", 2, 4)], np.zeros(4)).tolist() == [0.5, 1.0, 0.75, 1.0]


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("calibration: {online: {target_rate: 0.7}}", "calibration.online.target_rate"),
        ("calibration: {online: {chunk_windows: 0}}", "calibration.online.chunk_windows"),
        ("calibration: {online: {chunk_windows: 64, min_windows: 10}}", "calibration.online.min_windows"),
        ("calibration: {online: {regime_var_ratio: 1.0}}", "calibration.online.regime_var_ratio"),
        ("calibration: {online: {rebaseline_after_seconds: -5}}", "calibration.online.rebaseline_after_seconds"),
        ("calibration: {online: {colour: red}}", "calibration.online.colour"),
        ("alarm: {budget: 0}", "alarm.budget"),
        ("alarm: {budget: 2}\ncalibration: {online: {enabled: false}}", "alarm.budget"),
        ("alarm: {end_at: never}", "alarm.end_at"),
    ],
)
def test_config_mistakes_name_the_key(tmp_path, section, key):
    path = tmp_path / "c.yaml"
    path.write_text(section + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert err.value.key == key


def test_defaults_turn_online_calibration_on_and_skab_keeps_it_off():
    assert OnlineCalibrationConfig().enabled and AlarmConfig().budget is None
    skab = load_config("configs/skab.yaml", environ={})
    assert not skab.calibration.online.enabled


def test_void_windows_score_zero_and_leave_the_stream_s_statistics_alone():
    """A window whose every channel is masked has raw error 0 (masking.py): it scores 0 and
    is learnt as the stream's mean, not as log(0) (which put mu near -690, sigma in the
    hundreds, and overflowed the re-baseline threshold), the same for any batch cuts."""
    e = lognormal(3000, 0.1, 0.3, 3)
    v = e.copy()
    v[40:50] = 0.0  # before any chunk is learnt
    v[1000:2200] = 0.0  # a long masked stretch: a regime change would re-baseline on it
    clean = OnlineCalibrator(CFG, lambda k: 0.3, 1.0)
    feed(clean, {"p": e[:1000]}, [])
    one = OnlineCalibrator(CFG, lambda k: 0.3, 1.0)
    whole = feed(one, {"p": v}, [])["p"]
    cut = feed(OnlineCalibrator(CFG, lambda k: 0.3, 1.0), {"p": v}, list(range(0, 3000, 37)))["p"]
    assert np.array_equal(whole, cut)
    assert (whole[v == 0.0] == 0.0).all() and np.isfinite(whole).all()
    st = one.streams["p"]
    assert st.mu == pytest.approx(clean.streams["p"].mu, abs=0.1) and st.sigma < 0.6
    assert not one.drain_events() and (whole[2300:] >= 1.0).mean() < 0.01
