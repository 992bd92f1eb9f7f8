"""Long-context input channels computed from a frame's timestamp (``model.context``).

Each feature is a sin/cos pair of a phase in [0, 1): ``time_of_day`` is the UTC time of
day over one day, ``day_of_week`` the time since Monday 00:00 UTC over one week (1970-01-01
was a Thursday, so Monday 00:00 UTC is ``t = 4 days`` mod one week). A sin/cos pair turns
any fixed offset (a local time zone, a shift start) into a rotation the model can learn,
so no offset is configured. Timestamps are data: live, replay, backtest and training get
the same numbers from the same frame times, computed one frame at a time with `math` (no
vectorized path that could round differently).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

DAY_SECONDS = 86_400.0
WEEK_SECONDS = 7 * DAY_SECONDS
_MONDAY = 4 * DAY_SECONDS  # 1970-01-05 00:00 UTC
_TAU = 2.0 * math.pi


def context_width(names: Sequence[str]) -> int:
    """Input channels the features `names` add (two each)."""
    return 2 * len(names)


def context_row(t: float, names: Sequence[str]) -> list[float]:
    """[sin, cos] per feature of the frame time `t` (epoch seconds), in the order of `names`."""
    out: list[float] = []
    for name in names:
        if name == "time_of_day":
            phase = (t % DAY_SECONDS) / DAY_SECONDS
        elif name == "day_of_week":
            phase = ((t - _MONDAY) % WEEK_SECONDS) / WEEK_SECONDS
        else:
            raise ValueError(f"model.context: unknown feature {name!r}; use time_of_day or day_of_week")
        angle = _TAU * phase
        out.append(math.sin(angle))
        out.append(math.cos(angle))
    return out


def context_rows(times: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """`context_row` for every time of `times`: (n, context_width(names)) float64."""
    rows = [context_row(float(t), names) for t in np.asarray(times, dtype=np.float64).ravel()]
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), context_width(names))


AUTO_PERIODS = 2.0  # "auto": a feature needs training data that span this many of its periods ...
AUTO_RATIO = 0.5  # ... and a rhythm: values one period apart this much closer than at other lags
_RHYTHMS = {  # feature: (its period, the lags (seconds) a rhythm of that period must beat)
    "time_of_day": (DAY_SECONDS, tuple(f * DAY_SECONDS for f in (0.25, 1 / 3, 0.5, 2 / 3, 0.75))),
    "day_of_week": (WEEK_SECONDS, tuple(k * DAY_SECONDS for k in range(1, 7))),
}
Series = tuple[np.ndarray, np.ndarray]  # one channel of one stream: times (sorted), values


def _msd(series: Sequence[Series], lag: float, tol: float) -> float:
    """Mean squared difference of values `lag` seconds apart (within `tol`), each series
    standardized by its own spread, pooled over the series; NaN: no pair that far apart."""
    total, count = 0.0, 0
    for t, v in series:
        j = np.searchsorted(t, t + lag - tol)
        ok = j < len(t)
        i = np.flatnonzero(ok)
        j = j[ok]
        ok = np.abs(t[j] - t[i] - lag) <= tol
        if ok.any():
            d = v[j[ok]] - v[i[ok]]
            total += float(d @ d)
            count += int(ok.sum())
    return total / count if count else math.nan


def rhythm_ratio(series: Sequence[Series], feature: str, period_seconds: float) -> float:
    """How much closer values one rhythm period apart are than values at the other lags of
    `_RHYTHMS` (mean squared differences, the smallest of those): well below 1 for a daily
    (weekly) pattern; about 1 for noise or a rhythm of another period, above 1 for a random
    walk. NaN when the data hold no pair a period apart."""
    period, lags = _RHYTHMS[feature]
    tol = period_seconds / 2.0
    std = [(t, (v - v.mean()) / s) for t, v in series if len(v) > 1 and (s := float(v.std())) > 0]
    at = _msd(std, period, tol)
    other = min((m for lag in lags if not math.isnan(m := _msd(std, lag, tol))), default=math.nan)
    return at / other if other > 0 else math.nan


def auto_context(span_seconds: float, ratios: dict[str, float] | None = None) -> tuple[list[str], str]:
    """``model.context: auto``: the features whose period the training data span at least
    `AUTO_PERIODS` times (with less, an encoding of the time is memorised with the few
    values seen at each phase rather than learnt as a rhythm) and, with `ratios`
    (`rhythm_ratio` per feature), that show the rhythm (ratio <= `AUTO_RATIO`: on a series
    without it the encoding only makes the model stricter, bench/README.md); the log line."""
    names, parts = [], []
    for name, (period, _) in _RHYTHMS.items():
        spans = span_seconds >= AUTO_PERIODS * period
        ratio = None if ratios is None else ratios.get(name, math.nan)
        on = spans and (ratio is None or ratio <= AUTO_RATIO)  # NaN: no rhythm seen
        if on:
            names.append(name)
        if not spans:
            why = f"needs {AUTO_PERIODS * period / DAY_SECONDS:g} days"
        else:
            why = f"spans {AUTO_PERIODS:g} periods" if ratio is None else f"rhythm ratio {ratio:.2f}"
        parts.append(f"{name} {'on' if on else 'off'} ({why})")
    head = f"model.context auto: training data span {span_seconds / DAY_SECONDS:.2f} days: "
    return names, head + ", ".join(parts)
