"""Short series train, with a hold-out plan that says what it did, or fail with advice."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from monitor.app.training import StreamData, train_bundle
from monitor.core.config import load_config
from monitor.core.model.holdout import (
    MIN_CALIBRATION_WINDOWS,
    MIN_TOTAL_WINDOWS,
    ShortData,
    count_windows,
    plan_holdout,
)

ROOT = Path(__file__).resolve().parents[1]


def _fresh(n: int) -> list[np.ndarray]:
    return [np.zeros(n, dtype=bool)]


@pytest.mark.parametrize(
    "rows,fallback,fraction,n_calib",
    [
        # window 24, stride 1, holdout_fraction 0.2 (the numbers in holdout.py's doc)
        (215, None, 0.2, 20),  # 43 held-out frames: 20 windows
        (210, "holdout_enlarged", 0.21, 21),  # 42 held out: 19 windows
        (186, "holdout_enlarged", 0.23, 20),  # the issue's two series
        (169, "holdout_enlarged", 0.26, 21),
        (98, "holdout_enlarged", 0.44, 20),  # 55 frames left: 32 training windows
        (97, "quantile_all", 0.0, 0),  # an enlarged hold-out would leave 31: hold out nothing
        (63, "quantile_all", 0.0, 0),  # 40 windows in all
    ],
)
def test_plan_holdout_falls_back_in_steps(rows, fallback, fraction, n_calib):
    plan = plan_holdout(_fresh(rows), 24, 1, 0.2)
    assert (plan.fallback, plan.fraction, plan.n_calibration_windows) == (fallback, fraction, n_calib)
    # a hold-out enlarged to a few windows is fitted together with the training windows
    assert plan.fit_on == ("holdout" if fallback is None else "all")
    assert (plan.message is None) == (fallback is None)
    if fallback == "quantile_all":
        assert plan.n_train_windows == rows - 23
    if fallback == "holdout_enlarged":
        assert plan.n_calibration_windows >= MIN_CALIBRATION_WINDOWS and plan.n_train_windows >= 32


def test_below_the_minimum_the_error_names_the_keys_and_what_would_do():
    with pytest.raises(ShortData) as info:
        plan_holdout(_fresh(62), 24, 1, 0.2)
    msg = str(info.value)
    assert "62 frames (62 fresh) give 39 windows of model.window_size=24" in msg
    assert f"at least {MIN_TOTAL_WINDOWS} windows, about 63 gap-free rows" in msg
    assert "model.window_size: 12 would give 51 windows." in msg
    assert "held out for calibration" not in msg  # never an internal constraint alone


def test_gappy_short_data_also_suggests_max_gap():
    stale = np.zeros(100, dtype=bool)
    stale[20::21] = True  # runs of 20 fresh frames: no 24-frame window at all
    with pytest.raises(ShortData, match=r"raise stream\.max_gap_seconds"):
        plan_holdout([stale], 24, 1, 0.2)


def test_count_windows_counts_runs_between_stale_frames():
    #  frames  0..9 fresh | 10 stale | 11..14 fresh | 15 stale
    #  W=4     7 windows              1 window
    stale = np.zeros(16, dtype=bool)
    stale[[10, 15]] = True
    assert count_windows(stale, 4, 1) == 8
    assert count_windows(stale, 4, 3) == 3 + 1


def _series(rows: int, seed: int = 0) -> StreamData:
    rng = np.random.default_rng(seed)
    t = 1_700_000_000.0 + 3600.0 * np.arange(rows)
    v = np.sin(np.arange(rows) * 2 * np.pi / 24) + rng.normal(0, 0.05, rows)
    return StreamData("series", ["value"], t, v[:, None])


@pytest.mark.parametrize("rows", [169, 186])
def test_the_issues_short_series_train_and_record_the_fallback(tmp_path, caplog, rows):
    torch.set_num_threads(1)
    cfg = load_config(ROOT / "configs" / "univariate.yaml", environ={})
    cfg.model.epochs = 5
    with caplog.at_level(logging.WARNING, logger="monitor.app.training"):
        out = train_bundle([_series(rows)], cfg, tmp_path / "models", write_plots=False)
    cal = out.manifest.calibration
    assert cal["fallback"] == "holdout_enlarged" and cal["holdout_fraction"] == 0.2 and cal["fit_on"] == "all"
    assert cal["holdout_fraction_used"] > 0.2 and cal["n_calibration_windows"] >= MIN_CALIBRATION_WINDOWS
    assert out.manifest.validation["calibration_windows"] == cal["n_calibration_windows"]
    span = out.manifest.data_span  # the training data's first and last frame
    assert span is not None and (span.start, span.end) == (1_700_000_000.0, 1_700_000_000.0 + 3600.0 * (rows - 1))
    assert "short data: calibration.holdout_fraction 0.2 held out only" in caplog.text
    report = json.loads((out.bundle_path / "report.json").read_text())
    assert report["calibration"]["warning"] == cal["warning"]


def test_very_short_series_fit_the_quantile_on_all_windows_even_when_pot_is_configured(tmp_path):
    torch.set_num_threads(1)
    cfg = load_config(ROOT / "configs" / "univariate.yaml", environ={})
    cfg.model.epochs = 3
    cfg.calibration.method = "pot"
    out = train_bundle([_series(80)], cfg, tmp_path / "models", write_plots=False)
    cal = out.manifest.calibration
    assert (cal["fallback"], cal["fit_on"], cal["method_used"]) == ("quantile_all", "all", "quantile")
    assert out.manifest.threshold_method == "quantile" and out.manifest.threshold_info["n_windows"] == 57


def test_long_enough_series_need_no_fallback(tmp_path):
    torch.set_num_threads(1)
    cfg = load_config(ROOT / "configs" / "univariate.yaml", environ={})
    cfg.model.epochs = 2
    out = train_bundle([_series(400)], cfg, tmp_path / "models", write_plots=False)
    assert out.manifest.calibration["fallback"] is None
    assert out.manifest.calibration["holdout_fraction_used"] == 0.2


def test_too_short_series_fail_with_advice_through_train_bundle(tmp_path):
    cfg = load_config(ROOT / "configs" / "univariate.yaml", environ={})
    with pytest.raises(ShortData, match=r"model\.window_size: 12 would give \d+ windows"):
        train_bundle([_series(60)], cfg, tmp_path / "models", write_plots=False)
