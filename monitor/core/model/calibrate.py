"""Calibration: raw reconstruction errors of held-out normal windows -> a threshold.

Scores are kept apart from decisions: the model yields raw errors, this module fits one
threshold, and a score in threshold units is ``error / threshold`` (1.0 = at threshold).

Methods:
  quantile  ``np.quantile(errors, q) * factor``.
  pot       peaks over threshold (Siffer et al., KDD 2017): a Generalized Pareto
            Distribution fitted by maximum likelihood (Grimshaw's method, numpy only) to the
            exceedances over an initial quantile u, extrapolated to the level z with
            P(error > z) = target_false_alarm_rate; then ``* factor``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from monitor.core.config import CalibrationConfig
from monitor.core.drift import error_quantiles
from monitor.core.types import FloatArray

MIN_ERRORS = 20
MIN_EXCEEDANCES = 10  # the POT initial level is lowered if needed to keep this many
_XI_ZERO = 1e-6


def fit_threshold(errors: np.ndarray, cfg: CalibrationConfig) -> dict[str, Any]:
    """Fit a threshold on raw errors of normal windows; returns a JSON-ready dict."""
    values = np.asarray(errors, dtype=np.float64).ravel()
    finite = values[np.isfinite(values)]
    n_dropped = int(values.size - finite.size)
    if finite.size < MIN_ERRORS:
        raise ValueError(
            f"calibration needs at least {MIN_ERRORS} finite errors of normal windows, got {finite.size}"
            f" ({n_dropped} non-finite dropped); record more normal data or lower "
            "calibration.holdout_fraction's complement (a larger holdout)"
        )
    result: dict[str, Any] = {
        "method": cfg.method,
        "factor": float(cfg.factor),
        "n_windows": int(finite.size),
        "n_dropped_nonfinite": n_dropped,
        "error_mean": float(finite.mean()),
        "error_max": float(finite.max()),
    }
    if cfg.method == "quantile":
        raw = float(np.quantile(finite, cfg.quantile))
        result["quantile"] = float(cfg.quantile)
    elif cfg.method == "pot":
        raw = _fit_pot(finite, cfg, result)
    else:
        raise ValueError(f"calibration.method: unknown {cfg.method!r}; use 'quantile' or 'pot'")
    floor = max(1e-12, 1e-9 * float(np.abs(finite).max()))
    result["raw_threshold"] = raw
    result["threshold"] = max(raw * float(cfg.factor), floor)
    # the deciles of the calibration errors: live drift is measured against them (core/drift.py)
    result["error_quantiles"] = error_quantiles(finite)
    return result


def to_threshold_units(errors: np.ndarray, calibration: dict[str, Any]) -> FloatArray:
    """Scores in threshold units (1.0 = at threshold)."""
    return np.asarray(errors, dtype=np.float64) / float(calibration["threshold"])


# --------------------------------------------------------------------------- POT


def _fit_pot(errors: FloatArray, cfg: CalibrationConfig, out: dict[str, Any]) -> float:
    n = errors.size
    q = float(cfg.target_false_alarm_rate)
    initial_q = min(float(cfg.pot_initial_quantile), 1.0 - MIN_EXCEEDANCES / n)
    u = float(np.quantile(errors, initial_q))
    excess = errors[errors > u] - u
    n_t = int(excess.size)
    out.update(
        {
            "target_false_alarm_rate": q,
            "initial_quantile": float(cfg.pot_initial_quantile),
            "initial_quantile_used": initial_q,
            "u": u,
            "n_exceedances": n_t,
            "xi": None,
            "sigma": None,
            "fit": None,
            "fallback": None,
        }
    )
    empirical = float(np.quantile(errors, 1.0 - q))
    if n_t < 2:
        out["fallback"] = f"only {n_t} value(s) above the initial level (ties); used the empirical quantile"
        return empirical
    if q >= n_t / n:
        out["fallback"] = (
            f"target rate {q:g} is not below the exceedance share {n_t / n:g}; used the empirical "
            f"{1 - q:g} quantile (no extrapolation needed)"
        )
        return empirical
    xi, sigma, fit = fit_gpd(excess)
    out.update({"xi": xi, "sigma": sigma, "fit": fit})
    ratio = q * n / n_t
    if abs(xi) < _XI_ZERO:
        return u - sigma * math.log(ratio)
    return u + (sigma / xi) * (float(ratio ** (-xi)) - 1.0)  # ratio > 0: a real power (typed Any)


def fit_gpd(excess: np.ndarray) -> tuple[float, float, str]:
    """(xi, sigma, how) of a GPD fitted to positive exceedances.

    Grimshaw's reduction: the MLE solves u(t) v(t) = 1 with t = xi / sigma,
    u(t) = mean(1 / (1 + t y)), v(t) = 1 + mean(log(1 + t y)); then xi = v(t) - 1. Roots
    are bracketed on a grid and refined by bisection; the exponential (xi = 0) is always a
    candidate, and so is the probability-weighted-moments fit (for bounded tails, xi <= -1,
    where the MLE has no root); the candidate of highest likelihood wins.
    """
    y = np.asarray(excess, dtype=np.float64)
    y = y[y > 0]
    mean = float(y.mean())
    candidates: list[tuple[float, float, str]] = [(0.0, mean, "exponential")]
    for t in _grimshaw_roots(y):
        xi = float(np.mean(np.log1p(t * y)))
        if abs(xi) < _XI_ZERO:
            continue
        sigma = xi / t
        if sigma > 0 and math.isfinite(sigma):
            candidates.append((xi, sigma, "gpd-mle"))
    pwm = _gpd_pwm(y)
    if pwm is not None:
        candidates.append(pwm)
    return max(candidates, key=lambda c: _gpd_loglik(y, c[0], c[1]))


def _gpd_pwm(y: np.ndarray) -> tuple[float, float, str] | None:
    """Probability-weighted moments (Hosking & Wallis 1987); a candidate where the MLE has no root."""
    ys = np.sort(y)
    n = ys.size
    a0 = float(ys.mean())
    a1 = float(np.mean((1.0 - (np.arange(1, n + 1) - 0.35) / n) * ys))
    if a0 - 2.0 * a1 <= 0:
        return None
    xi = 2.0 - a0 / (a0 - 2.0 * a1)
    sigma = 2.0 * a0 * a1 / (a0 - 2.0 * a1)
    if xi < 0:  # keep every observation inside the fitted support
        sigma = max(sigma, -xi * float(ys[-1]) * (1.0 + 1e-9))
    if not (math.isfinite(xi) and math.isfinite(sigma) and sigma > 0):
        return None
    return xi, sigma, "gpd-pwm"


def _gpd_loglik(y: np.ndarray, xi: float, sigma: float) -> float:
    if sigma <= 0:
        return -math.inf
    if abs(xi) < _XI_ZERO:
        return -y.size * math.log(sigma) - float(y.sum()) / sigma
    z = 1.0 + xi * y / sigma
    if np.any(z <= 0):
        return -math.inf
    return -y.size * math.log(sigma) - (1.0 + 1.0 / xi) * float(np.log(z).sum())


def _grimshaw_w(y: np.ndarray, t: np.ndarray) -> np.ndarray:
    out = np.empty(t.size)
    step = max(1, 2_000_000 // y.size)  # bound the (len(t), len(y)) temporary
    for i in range(0, t.size, step):
        s = 1.0 + np.outer(t[i : i + step], y)
        out[i : i + step] = np.mean(1.0 / s, axis=1) * (1.0 + np.mean(np.log(s), axis=1)) - 1.0
    return out


def _grimshaw_roots(y: np.ndarray, points: int = 300, iterations: int = 60) -> list[float]:
    """Sign changes of w(t) on grids dense near the ends of both admissible intervals."""
    y_min, y_max, y_mean = float(y.min()), float(y.max()), float(y.mean())
    half = points // 2
    # xi < 0: t in (-1/y_max, 0); s is the relative distance from -1/y_max.
    s = np.concatenate([np.geomspace(1e-10, 0.5, half), 1.0 - np.geomspace(0.5, 1e-10, half)[1:]])
    grids = [-(1.0 - s) / y_max]
    # xi > 0: t in (0, 2 (mean - min) / min^2] (Grimshaw 1993), in units of 1 / mean.
    if y_mean > y_min:
        upper = min(2.0 * (y_mean - y_min) * y_mean / y_min**2, 1e8)
        if upper > 1e-8:
            grids.append(np.geomspace(1e-8, upper, points) / y_mean)
    roots: list[float] = []
    for grid in grids:
        w = _grimshaw_w(y, grid)
        for i in np.flatnonzero(np.sign(w[:-1]) * np.sign(w[1:]) < 0):
            a, b, wa = float(grid[i]), float(grid[i + 1]), float(w[i])
            for _ in range(iterations):
                m = 0.5 * (a + b)
                wm = float(_grimshaw_w(y, np.array([m]))[0])
                if (wm < 0) == (wa < 0):
                    a, wa = m, wm
                else:
                    b = m
            roots.append(0.5 * (a + b))
    return roots
