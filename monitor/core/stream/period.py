"""The grid step of a feed from its timestamps (``stream.period_seconds: auto``).

Steps are the positive differences of each channel's sorted timestamps. The estimate:

1. ``p0``: the median step. Robust to gaps (long steps) and bursts (short ones) while
   they are under half of all steps; with jitter it is off by up to a few per cent.
2. The *regular* steps are those within ``[p0 / 2, 3 p0 / 2)``. Their mean is the
   estimate ``p``: inside a gap-free run the jitter of the timestamps telescopes out of
   the mean of consecutive steps ((last - first) / count), so ``p`` is off by about
   ``jitter / run length`` instead of the median's few per cent. Exactly: with every
   timestamp within ``+-jitter`` steps of its grid point, ``R`` runs of regular steps and
   ``N`` regular steps, ``|p / step - 1| <= 2 jitter R / N`` (each run contributes its two
   end points' jitter, nothing else).
3. ``p`` is snapped to the nearest round step (1-2-2.5-5 series and the calendar steps
   15 s, 30 s, 1 min, ... 1 day) when within `SNAP_TOLERANCE` of it, else rounded to
   `SIGNIFICANT_DIGITS` significant digits; so a round step comes out exactly whenever
   the bound of point 2 is within the tolerance (a 60 s feed with +-30 % jitter, 2000
   readings and a few gaps gets exactly 60), and the period of a bundle does not depend on
   noise in the timestamps. Few readings in many short runs can miss: 49 readings in 15
   runs at +-29 % jitter may come out 2 % off, and then are rounded, not snapped.

A feed is refused as *irregular* when fewer than `MIN_REGULAR_SHARE` of its steps
shorter than ``3 p0 / 2`` are regular, or when the median distance of the regular steps
from ``p0`` exceeds `MAX_SPREAD` of ``p0``. Uniform jitter up to about +-40 % of the
step passes (its median distance is 0.29 of the jitter's full width, 0.23 p0 at +-40 %);
exponentially distributed steps (Poisson sampling: no grid at all) do not.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

SNAP_TOLERANCE = 0.02  # relative distance to a round step that snaps to it
SIGNIFICANT_DIGITS = 3
MIN_REGULAR_SHARE = 0.5
MAX_SPREAD = 0.25
# calendar steps: seconds, minutes, hours, a day
_CALENDAR = (15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 240.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0)
_CALENDAR_HOURS = (7200.0, 10800.0, 14400.0, 21600.0, 43200.0, 86400.0)


class IrregularTimestamps(ValueError):
    """The timestamps have no grid step to speak of; the message says what was measured."""


def round_step(p: float) -> float:
    """Snap `p` (> 0) to a round step when close enough, else round it to a few digits."""
    exponent = math.floor(math.log10(p))
    candidates = [m * 10.0**e for e in (exponent - 1, exponent, exponent + 1) for m in (1.0, 2.0, 2.5, 5.0)]
    candidates += _CALENDAR + _CALENDAR_HOURS
    best = min(candidates, key=lambda c: abs(p - c) / c)
    if abs(p - best) / best <= SNAP_TOLERANCE:
        return float(best)
    return float(f"{p:.{SIGNIFICANT_DIGITS}g}")


def infer_period_seconds(timestamp_runs: Iterable[np.ndarray]) -> float:
    """The grid step of channels' timestamps (each array one channel, any order); see the module doc.

    Raises `IrregularTimestamps` when there are no increasing timestamps or they are too
    irregular for a grid step.
    """
    diffs = [np.diff(np.sort(np.asarray(t, dtype=np.float64))) for t in timestamp_runs]
    steps = np.concatenate(diffs) if diffs else np.zeros(0)
    steps = steps[np.isfinite(steps) & (steps > 0)]
    if steps.size == 0:
        raise IrregularTimestamps("found no increasing timestamps")
    p0 = float(np.median(steps))
    short = steps[steps < 1.5 * p0]
    regular = short[short >= 0.5 * p0]
    share = regular.size / short.size
    spread = float(np.median(np.abs(regular - p0))) / p0
    if share < MIN_REGULAR_SHARE or spread > MAX_SPREAD:
        raise IrregularTimestamps(
            f"timestamps are too irregular for a grid step: median step {p0:.6g} s, {share:.0%} of the "
            f"steps under 1.5x it lie within 0.5x..1.5x of it (need {MIN_REGULAR_SHARE:.0%}), their median "
            f"distance from it is {spread:.0%} of it (at most {MAX_SPREAD:.0%})"
        )
    return round_step(float(regular.mean()))
