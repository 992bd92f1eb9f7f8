"""Drift (PSI against the reference deciles) and the reference deciles in the manifest."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from monitor.core.config import CalibrationConfig
from monitor.core.drift import (
    CHUNK,
    HORIZON,
    MIN_WINDOWS,
    QUANTILES,
    DriftTracker,
    error_quantiles,
    psi,
    reference_edges,
    reference_quantiles,
    tracker_for,
)
from monitor.core.model.calibrate import fit_threshold


def test_psi_is_zero_for_the_same_shares_and_grows_with_the_shift():
    e = [0.1] * 10
    assert psi(e, e) == 0.0
    shifted = [0.0] * 5 + [0.2] * 5
    assert psi(e, shifted) > psi(e, [0.05] * 5 + [0.15] * 5) > 0.0


def test_tracker_stays_low_on_calibration_like_errors_and_flags_a_shift():
    rng = np.random.default_rng(0)
    calib = rng.gamma(2.0, 1.0, 5000)
    tracker = DriftTracker(error_quantiles(calib), chunk=100, chunks=10, min_windows=200)
    tracker.update(rng.gamma(2.0, 1.0, 150))
    assert math.isnan(tracker.value())  # too few windows
    for _ in range(10):
        tracker.update(rng.gamma(2.0, 1.0, 100))
    assert tracker.value() < 0.05
    for _ in range(11):  # the newest 1000 windows are all from a process with twice the errors
        tracker.update(2.0 * rng.gamma(2.0, 1.0, 100))
    assert tracker.value() > 0.25
    assert sum(tracker._counts) == tracker.filled == 1000 + 50  # ten complete chunks and a half one


@pytest.mark.parametrize("sizes", [[300, 900, 50], [1500], [999, 1, 1], [7] * 300, [2500, 3]])
def test_tracker_counts_equal_a_recount_of_the_newest_chunks(sizes):
    rng = np.random.default_rng(1)
    edges = [0.1 * i for i in range(1, 10)]
    tracker = DriftTracker(edges, chunk=100, chunks=10, min_windows=1)
    seen = []
    for k in sizes:
        batch = rng.random(k)
        tracker.update(batch)
        seen.extend(batch.tolist())
    n = len(seen)
    held = min(n, 1000 + n % 100)  # ten complete chunks of 100 and the one being filled
    assert tracker.filled == held and tracker.seen == n
    newest = np.asarray(seen[n - held :])
    expected = np.bincount(np.searchsorted(edges, newest, side="right"), minlength=10)
    assert tracker._counts.tolist() == expected.tolist()


def test_fit_threshold_stores_the_calibration_deciles():
    errors = np.arange(1, 101, dtype=float)
    out = fit_threshold(errors, CalibrationConfig(method="quantile", quantile=0.99, factor=1.0))
    assert out["error_quantiles"] == pytest.approx(list(np.quantile(errors, [0.1 * i for i in range(1, 10)])))


def test_queued_batches_give_the_same_value_as_binning_each_batch_and_stay_bounded():
    rng = np.random.default_rng(2)
    edges = error_quantiles(rng.gamma(2.0, 1.0, 2000))
    direct = DriftTracker(edges, chunk=200, chunks=3, min_windows=100)
    queued = DriftTracker(edges, chunk=200, chunks=3, min_windows=100)
    for k in (100, 30, 7, 900, 50, 60):
        batch = rng.gamma(2.5, 1.0, k)
        direct.update(batch)
        queued.add(batch)
        assert queued._pending_n < 200  # a chunk's worth queued is binned at once
    assert queued.value() == direct.value() and queued.filled == direct.filled == 600 + 147  # 1 147 seen


def test_weighted_deciles_count_each_error_its_weight_times():
    rng = np.random.default_rng(3)
    a, b = rng.random(300), 1.0 + rng.random(100)
    weighted = error_quantiles(np.concatenate([a, b]), np.concatenate([np.ones(300), np.full(100, 3.0)]))
    repeated = np.concatenate([a, b, b, b])
    assert weighted == pytest.approx(list(np.quantile(repeated, QUANTILES, method="inverted_cdf")))


def test_reference_weights_each_part_back_to_its_share_of_the_span():
    # 1 000 training windows sampled down to 100 (each stands for 10), 300 hold-out windows all used
    train, calib = np.full(100, 1.0), np.full(300, 2.0)
    assert reference_quantiles(train, calib, 10.0, 1.0)[6] == 1.0  # 1 000 of 1 300 are training-like
    assert reference_quantiles(train, calib)[6] == 2.0  # unweighted the hold-out would dominate


def test_reference_edges_prefer_the_training_span_and_fall_back_for_older_bundles():
    assert reference_edges({"drift_quantiles": [1.0, 2.0], "error_quantiles": [3.0]}) == [1.0, 2.0]
    assert reference_edges({"error_quantiles": [3.0]}) == [3.0]  # a bundle from before the span deciles
    assert reference_edges({"threshold": 1.0}) is None  # from before any deciles: drift not computed


def _cyclic_errors(n: int, seed: int, gain: float = 1.0) -> np.ndarray:
    """Raw errors of a process with a 600-window load cycle (like `synthetic.pump`'s): the
    error level follows the load, so a few hundred consecutive windows see part of a cycle."""
    rng = np.random.default_rng(seed)
    phase = 2 * np.pi * np.arange(n) / 600.0
    return gain * (1.0 + 0.8 * np.sin(phase)) * rng.gamma(50.0, 1 / 50.0, n)


def test_drift_is_nan_until_enough_windows_because_a_partial_cycle_reads_as_drift():
    # the false positive of decision 0021's addendum: 215 windows (under one load cycle)
    # of perfectly normal errors give a PSI far above the rule's 0.25; enough windows do not
    edges = error_quantiles(_cyclic_errors(30_000, seed=1))
    partial = DriftTracker(edges, min_windows=1)
    partial.update(_cyclic_errors(215, seed=2))
    assert partial.value() > 0.25  # what the old 200-window minimum exported
    tracker = DriftTracker(edges)  # the daemon's defaults
    assert tracker.min_windows == MIN_WINDOWS and tracker.horizon == HORIZON >= MIN_WINDOWS
    tracker.update(_cyclic_errors(MIN_WINDOWS - 1, seed=2))
    assert math.isnan(tracker.value())  # too few windows are not reported
    tracker.update(_cyclic_errors(1, seed=3))
    assert tracker.value() < 0.1  # normal: well under the rule's level
    drifted = DriftTracker(edges)
    drifted.update(_cyclic_errors(MIN_WINDOWS, seed=2, gain=1.3))  # errors 30 % higher
    assert drifted.value() > 0.25


def _wandering_errors(n: int, seed: int, gain: float = 1.0) -> np.ndarray:
    """Errors of a process whose regime moves among five levels, one step every 300
    windows on average (a reflected walk, like `pump(step_bound=...)`): the error level
    follows the regime, so half an hour of windows sees a few of them, not their mixture."""
    rng = np.random.default_rng(seed)
    move, sign = rng.random(n) < 1 / 300, rng.choice([-1, 1], n)
    level, levels = 2, np.empty(n)
    for i in range(n):
        if move[i]:
            level = level + sign[i] if 0 <= level + sign[i] <= 4 else level - sign[i]
        levels[i] = level
    return gain * (1.0 + 0.08 * levels) * rng.gamma(50.0, 1 / 50.0, n)


def test_a_wandering_regime_stays_under_the_level_over_hours_but_not_over_the_newest_2048():
    train = _wandering_errors(100_000, seed=1)
    edges = reference_quantiles(train, [])  # the whole span, as training stores it
    live = _wandering_errors(60_000, seed=2)
    old = DriftTracker(edges, chunk=CHUNK, chunks=1, min_windows=CHUNK)  # about the old 2 048-window ring
    new = DriftTracker(edges)
    old_max = new_max = 0.0
    for batch in np.split(live, len(live) // 250):
        old.update(batch)
        new.update(batch)
        old_max = max(old_max, np.nan_to_num(old.value()))
        new_max = max(new_max, np.nan_to_num(new.value()))
    assert old_max > 0.25  # half an hour of windows: a normal regime reads as drift
    assert new_max < 0.25  # hours of windows see the mixture the training span saw
    drifted = DriftTracker(edges)
    drifted.update(_wandering_errors(HORIZON, seed=3, gain=1.15))  # errors 15 % higher
    assert drifted.value() > 0.25


def test_training_stores_the_span_deciles_beside_the_hold_out_deciles(tmp_path):
    from monitor.app.training import StreamData, train_bundle  # noqa: PLC0415  # torch
    from monitor.core.config import load_config  # noqa: PLC0415
    from monitor.core.synthetic import CHANNELS, pump  # noqa: PLC0415

    (tmp_path / "m.yaml").write_text(
        "stream: {period_seconds: 1.0, max_gap_seconds: 5}\n"
        "model: {architecture: dense, window_size: 8, hidden: [16], code_size: 4, epochs: 2, seed: 1}\n"
    )
    cfg = load_config(tmp_path / "m.yaml", environ={})
    t, v, _ = pump(1200, seed=4)
    out = train_bundle([StreamData("s1", list(CHANNELS), t, v)], cfg, tmp_path / "models", write_plots=False)
    th = json.loads((out.bundle_path / "manifest.json").read_text())["threshold"]
    assert len(th["drift_quantiles"]) == 9 and th["drift_quantiles"] == sorted(th["drift_quantiles"])
    ref = th["drift_reference"]
    assert ref["source"] == "training span" and ref["train_windows"] > ref["calibration_windows"] > 0
    assert reference_edges(th) == th["drift_quantiles"] != th["error_quantiles"]


def test_the_daemon_tracker_spans_the_same_time_at_any_window_rate():
    edges = [0.1 * i for i in range(1, 10)]
    at_1hz = tracker_for(edges, 1.0)
    assert (at_1hz.chunk, at_1hz.horizon, at_1hz.min_windows) == (CHUNK, HORIZON, MIN_WINDOWS)
    at_10hz = tracker_for(edges, 0.1)  # ten windows a second: ten times as many for the same hours
    assert at_10hz.horizon == 10 * HORIZON and at_10hz.min_windows == 10 * MIN_WINDOWS
    every_10s = tracker_for(edges, 5.0, stride=2)  # one window each 10 s
    assert every_10s.chunk == round(CHUNK / 10) and every_10s.min_windows == 4 * every_10s.chunk
    assert tracker_for(edges, 86_400.0).chunk == 1  # at least one window a chunk


def test_pump_with_a_step_bound_wanders_within_it_and_without_keeps_its_walk():
    from monitor.core.synthetic import pump  # noqa: PLC0415

    n = 8 * 3600
    v = pump(n, seed=11, steps_per_hour=4.0, step_bound=0.16)[1]
    flow_mean = 120.0 * 0.7  # the load's mean without steps (the sine terms average out)
    hourly = v[: n // 3600 * 3600, 0].reshape(-1, 3600).mean(axis=1)  # 12 load cycles an hour
    assert np.all(np.abs(hourly - flow_mean) <= 120.0 * 0.16 + 2.0)  # never past the bound
    assert np.ptp(hourly) > 120.0 * 0.08  # and it does wander
    free = pump(600, seed=3)[1]
    assert np.array_equal(free, pump(600, seed=3, step_bound=None)[1])  # the default walk is unchanged


def test_a_restored_tracker_goes_on_exactly_as_one_that_never_stopped():
    rng = np.random.default_rng(5)
    edges = error_quantiles(rng.gamma(2.0, 1.0, 4000))
    errors = rng.gamma(2.2, 1.0, 2600)
    whole = DriftTracker(edges, chunk=100, chunks=8, min_windows=400)
    first = DriftTracker(edges, chunk=100, chunks=8, min_windows=400)
    for part in np.array_split(errors[:1337], 7):
        whole.add(part)
        first.add(part)
    state = json.loads(json.dumps(first.to_state()))  # as the file holds it
    second = DriftTracker(edges, chunk=100, chunks=8, min_windows=400)
    assert second.restore(state)
    for part in np.array_split(errors[1337:], 5):
        whole.add(part)
        second.add(part)
    assert second.seen == whole.seen == 2600
    assert second.value() == whole.value() and not math.isnan(second.value())
    assert second.shares() == whole.shares()


def test_a_state_kept_against_another_reference_is_not_adopted_and_bad_counts_are_refused():
    edges = error_quantiles(np.linspace(0.0, 1.0, 1000))
    kept = DriftTracker(edges, chunk=10, chunks=4)
    kept.update(np.linspace(0.0, 1.0, 35))
    state = kept.to_state()
    other = DriftTracker(error_quantiles(np.linspace(0.0, 2.0, 1000)), chunk=10, chunks=4)
    assert not other.restore(state) and other.seen == 0
    assert not DriftTracker(edges, chunk=20, chunks=4).restore(state)  # another chunk geometry
    fresh = DriftTracker(edges, chunk=10, chunks=4)
    with pytest.raises(ValueError, match="do not add up"):
        fresh.restore({**state, "current": [0] * 10})  # current_n 5, counts 0
    with pytest.raises(ValueError, match="fewer windows seen"):
        fresh.restore({**state, "seen": 3})
    assert fresh.seen == 0 and math.isnan(fresh.value())  # a refused state changes nothing
