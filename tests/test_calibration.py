"""Threshold calibration: quantile and peaks-over-threshold."""

import json

import numpy as np
import pytest

from monitor.core.config import CalibrationConfig
from monitor.core.model.calibrate import MIN_ERRORS, fit_gpd, fit_threshold, to_threshold_units

ONE_TO_100 = np.arange(1, 101, dtype=np.float64)


@pytest.mark.parametrize(
    "errors,quantile,factor,expected",
    [
        (ONE_TO_100, 0.5, 1.0, 50.5),
        (ONE_TO_100, 0.99, 1.0, 99.01),
        (ONE_TO_100, 0.5, 2.0, 101.0),
        (np.full(30, 3.0), 0.995, 1.0, 3.0),
        (np.linspace(0, 1, 21), 0.9, 1.5, 1.35),
    ],
)
def test_quantile_threshold_on_known_arrays(errors, quantile, factor, expected):
    result = fit_threshold(errors, CalibrationConfig(method="quantile", quantile=quantile, factor=factor))
    assert result["threshold"] == pytest.approx(expected)
    assert result["method"] == "quantile"
    assert result["n_windows"] == errors.size
    assert result["factor"] == factor


# (name, sampler): samplers of error-like distributions with different tails.
TAILS = [
    ("exponential", lambda rng, n: rng.exponential(1.0, n)),  # xi = 0
    ("lomax_a3", lambda rng, n: rng.pareto(3.0, n)),  # heavy tail, xi = 1/3
    ("gamma_k4", lambda rng, n: rng.gamma(4.0, 1.0, n)),  # like an MSE over a few channels
    ("half_normal", lambda rng, n: np.abs(rng.normal(size=n))),  # light tail
]


@pytest.mark.parametrize("name,draw", TAILS, ids=[t[0] for t in TAILS])
@pytest.mark.parametrize("target", [1e-3, 1e-4])
def test_pot_threshold_hits_target_false_alarm_rate_on_fresh_sample(name, draw, target):
    cfg = CalibrationConfig(method="pot", target_false_alarm_rate=target, pot_initial_quantile=0.95)
    result = fit_threshold(draw(np.random.default_rng(0), 20_000), cfg)
    fresh = draw(np.random.default_rng(12345), 2_000_000)
    rate = float(np.mean(fresh > result["threshold"]))
    # extrapolating from 1,000 exceedances: within a factor of ~1.6 of the target
    assert target / 1.6 <= rate <= target * 1.6, (name, rate, result)
    assert result["fallback"] is None
    assert result["fit"] in ("gpd-mle", "gpd-pwm", "exponential")


def test_pot_recovers_pareto_shape():
    excess = np.random.default_rng(1).pareto(4.0, 5_000)  # Lomax = GPD(xi=1/4, sigma=1/4)
    xi, sigma, _ = fit_gpd(excess)
    assert xi == pytest.approx(0.25, abs=0.06)
    assert sigma == pytest.approx(0.25, rel=0.1)


def test_pot_records_fit_details_and_is_json_ready():
    result = fit_threshold(
        np.random.default_rng(2).exponential(size=5_000), CalibrationConfig(method="pot", factor=1.2)
    )
    for key in (
        "method",
        "threshold",
        "n_windows",
        "factor",
        "xi",
        "sigma",
        "u",
        "n_exceedances",
        "target_false_alarm_rate",
        "raw_threshold",
    ):
        assert key in result
    assert result["n_exceedances"] == 250
    assert result["threshold"] == pytest.approx(result["raw_threshold"] * 1.2)
    json.dumps(result, allow_nan=False)


def test_pot_falls_back_to_empirical_quantile_when_target_exceeds_exceedance_share():
    errors = np.random.default_rng(3).exponential(size=1_000)
    cfg = CalibrationConfig(method="pot", target_false_alarm_rate=0.1, pot_initial_quantile=0.95)
    result = fit_threshold(errors, cfg)
    assert result["fallback"] and "empirical" in result["fallback"]
    assert result["threshold"] == pytest.approx(np.quantile(errors, 0.9))


def test_nonfinite_errors_are_dropped_and_counted():
    errors = np.concatenate([ONE_TO_100, [np.nan, np.inf, -np.inf]])
    result = fit_threshold(errors, CalibrationConfig(method="quantile", quantile=0.5))
    assert result["n_dropped_nonfinite"] == 3
    assert result["n_windows"] == 100
    assert result["threshold"] == pytest.approx(50.5)


@pytest.mark.parametrize("method", ["quantile", "pot"])
def test_too_few_finite_errors_is_an_error_with_advice(method):
    errors = np.concatenate([np.ones(MIN_ERRORS - 1), [np.nan] * 50])
    with pytest.raises(ValueError, match=rf"at least {MIN_ERRORS}.*got {MIN_ERRORS - 1}.*record more"):
        fit_threshold(errors, CalibrationConfig(method=method))


@pytest.mark.parametrize("method", ["quantile", "pot"])
def test_threshold_is_positive_even_for_all_zero_errors(method):
    result = fit_threshold(np.zeros(100), CalibrationConfig(method=method))
    assert result["threshold"] > 0


def test_scores_are_in_threshold_units():
    result = fit_threshold(ONE_TO_100, CalibrationConfig(method="quantile", quantile=0.5))
    np.testing.assert_allclose(to_threshold_units(np.array([50.5, 101.0]), result), [1.0, 2.0])
