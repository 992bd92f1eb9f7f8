"""Drift (PSI against the calibration deciles) and the calibration deciles in the manifest."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monitor.core.config import CalibrationConfig
from monitor.core.drift import DEFAULT_WINDOW, DriftTracker, error_quantiles, psi
from monitor.core.model.calibrate import fit_threshold


def test_psi_is_zero_for_the_same_shares_and_grows_with_the_shift():
    e = [0.1] * 10
    assert psi(e, e) == 0.0
    shifted = [0.0] * 5 + [0.2] * 5
    assert psi(e, shifted) > psi(e, [0.05] * 5 + [0.15] * 5) > 0.0


def test_tracker_stays_low_on_calibration_like_errors_and_flags_a_shift():
    rng = np.random.default_rng(0)
    calib = rng.gamma(2.0, 1.0, 5000)
    tracker = DriftTracker(error_quantiles(calib), window=1000, min_windows=200)
    tracker.update(rng.gamma(2.0, 1.0, 150))
    assert math.isnan(tracker.value())  # too few windows
    for _ in range(10):
        tracker.update(rng.gamma(2.0, 1.0, 100))
    assert tracker.value() < 0.05
    for _ in range(10):  # the newest 1000 windows are all from a process with twice the errors
        tracker.update(2.0 * rng.gamma(2.0, 1.0, 100))
    assert tracker.value() > 0.25
    assert sum(tracker._counts) == tracker.filled == 1000


@pytest.mark.parametrize("sizes", [[300, 900, 50], [1500], [999, 1, 1]])
def test_tracker_counts_equal_a_recount_of_the_newest_window(sizes):
    rng = np.random.default_rng(1)
    edges = [0.1 * i for i in range(1, 10)]
    tracker = DriftTracker(edges, window=1000, min_windows=1)
    seen = []
    for k in sizes:
        batch = rng.random(k)
        tracker.update(batch)
        seen.extend(batch.tolist())
    newest = np.asarray(seen[-1000:])
    expected = np.bincount(np.searchsorted(edges, newest, side="right"), minlength=10)
    assert tracker._counts.tolist() == expected.tolist()


def test_fit_threshold_stores_the_calibration_deciles():
    errors = np.arange(1, 101, dtype=float)
    out = fit_threshold(errors, CalibrationConfig(method="quantile", quantile=0.99, factor=1.0))
    assert out["error_quantiles"] == pytest.approx(list(np.quantile(errors, [0.1 * i for i in range(1, 10)])))


def test_queued_batches_give_the_same_value_as_binning_each_batch():
    rng = np.random.default_rng(2)
    edges = error_quantiles(rng.gamma(2.0, 1.0, 2000))
    direct, queued = DriftTracker(edges, window=500), DriftTracker(edges, window=500)
    for k in (100, 300, 7, 900, 50):
        batch = rng.gamma(2.5, 1.0, k)
        direct.update(batch)
        queued.add(batch)
    assert queued._pending_n <= 500 + 900  # bounded while nobody asks for the value
    assert queued.value() == direct.value() and queued.filled == direct.filled == 500


def _cyclic_errors(n: int, seed: int, gain: float = 1.0) -> np.ndarray:
    """Raw errors of a process with a 600-window load cycle (like `synthetic.pump`'s): the
    error level follows the load, so a few hundred consecutive windows see part of a cycle."""
    rng = np.random.default_rng(seed)
    phase = 2 * np.pi * np.arange(n) / 600.0
    return gain * (1.0 + 0.8 * np.sin(phase)) * rng.gamma(50.0, 1 / 50.0, n)


def test_drift_is_nan_until_the_ring_is_full_because_a_partial_cycle_reads_as_drift():
    # the false positive of decision 0021's addendum: 215 windows (under one load cycle)
    # of perfectly normal errors give a PSI far above the rule's 0.25; the full ring does not
    edges = error_quantiles(_cyclic_errors(30_000, seed=1))
    partial = DriftTracker(edges, min_windows=1)
    partial.update(_cyclic_errors(215, seed=2))
    assert partial.value() > 0.25  # what the old 200-window minimum exported
    tracker = DriftTracker(edges)  # the daemon's defaults
    assert tracker.min_windows == tracker.window == DEFAULT_WINDOW
    tracker.update(_cyclic_errors(DEFAULT_WINDOW - 1, seed=2))
    assert math.isnan(tracker.value())  # a partly filled ring is not reported
    tracker.update(_cyclic_errors(1, seed=3))
    assert tracker.value() < 0.1  # normal: well under the rule's level
    drifted = DriftTracker(edges)
    drifted.update(_cyclic_errors(DEFAULT_WINDOW, seed=2, gain=1.3))  # errors 30 % higher
    assert drifted.value() > 0.25
