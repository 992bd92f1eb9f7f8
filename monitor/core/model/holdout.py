"""Where to cut each stream's frames into training and calibration, on short data too.

The newest ``calibration.holdout_fraction`` of each stream's frames is held out to fit
the threshold on (calibrate.py needs `MIN_CALIBRATION_WINDOWS` errors). A short series
does not give that many held-out windows, so the plan falls back in steps, and says so:

1. ``None`` (no fallback): the configured fraction gives enough held-out windows.
2. ``"holdout_enlarged"``: the smallest larger fraction, up to `MAX_HOLDOUT_FRACTION`,
   that gives `MIN_CALIBRATION_WINDOWS` held-out windows while leaving
   `MIN_TRAIN_WINDOWS` to train on. The threshold is fitted on the held-out and the
   training windows' errors together (``fit_on: all``): some 20 held-out windows cover
   a fraction of a seasonal cycle, and on bench/shifts.py's 250-row series a threshold
   fitted on them alone sat below most normal test errors (p99 10.1 threshold units,
   97 % of normal rows alerting; fitted on both: 2.8 and 29 %).
3. ``"quantile_all"``: no hold-out (every window trains), and the threshold is the
   quantile of the training windows' errors (calibration.method is taken as
   ``quantile``: POT needs a tail to fit). Training windows' errors are lower than
   unseen ones', so expect more false alarms than the quantile promises.
4. Below `MIN_TOTAL_WINDOWS` windows in all: `ShortData`, whose message says how many
   rows the window size needs and which keys to change.

With ``window_size`` 24 and stride 1 (one gap-free stream), step 1 needs 215 rows at the
default fraction 0.2 (20 held-out windows are 43 frames), step 2 98 rows (43 held out,
55 to train on), step 3 `MIN_TOTAL_WINDOWS` + 23 = 63 rows (tests/test_small_data.py).

The plan is a function of the frames' staleness alone, so the same data always gets the
same plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_CALIBRATION_WINDOWS = 20  # = calibrate.MIN_ERRORS
MIN_TRAIN_WINDOWS = 32  # an enlarged hold-out must leave this many to train on
MIN_TOTAL_WINDOWS = 40  # fewer: training refuses, with advice
_MIN_FIT_WINDOWS = 8  # = train.MIN_WINDOWS (not imported: that module loads torch)
MAX_HOLDOUT_FRACTION = 0.5


class ShortData(ValueError):
    """Too little data to train and calibrate; the message names what to change."""


@dataclass(frozen=True)
class HoldoutPlan:
    cuts: list[int]  # per stream: frames [0, cut) train, [cut, n) calibrate
    fraction: float  # hold-out fraction the cuts were made with
    n_train_windows: int
    n_calibration_windows: int
    fit_on: str  # "holdout" | "all": whose errors the threshold is fitted on
    fallback: str | None  # None | "holdout_enlarged" | "quantile_all"
    message: str | None  # the warning for the log, the manifest and the report


def count_windows(stale: np.ndarray, window_size: int, stride: int) -> int:
    """Windows `window_runs` cuts from frames with this staleness (runs of fresh frames)."""
    stale = np.asarray(stale, dtype=bool)
    edges = np.flatnonzero(np.diff(np.concatenate([[True], stale, [True]]).astype(np.int8)))
    lengths = edges[1::2] - edges[::2]  # fresh runs: from a stale->fresh to a fresh->stale edge
    return int(sum((n - window_size) // stride + 1 for n in lengths if n >= window_size))


def _cuts(stales: Sequence[np.ndarray], fraction: float) -> list[int]:
    return [round(len(s) * (1 - fraction)) for s in stales]


def _counts(stales: Sequence[np.ndarray], cuts: list[int], w: int, stride: int) -> tuple[int, int]:
    train = sum(count_windows(s[:c], w, stride) for s, c in zip(stales, cuts, strict=True))
    calib = sum(count_windows(s[c:], w, stride) for s, c in zip(stales, cuts, strict=True))
    return train, calib


def plan_holdout(
    stales: Sequence[np.ndarray], window_size: int, stride: int, fraction: float, source: str = "holdout"
) -> HoldoutPlan:
    """The cuts for streams with these per-frame stale flags; see the module doc."""
    cuts = _cuts(stales, fraction)
    n_train, n_calib = _counts(stales, cuts, window_size, stride)
    total = sum(count_windows(s, window_size, stride) for s in stales)
    if total < MIN_TOTAL_WINDOWS:
        raise ShortData(_advice(stales, window_size, stride, total))
    if n_calib >= MIN_CALIBRATION_WINDOWS and n_train >= _MIN_FIT_WINDOWS:
        return HoldoutPlan(cuts, fraction, n_train, n_calib, source, None, None)
    f = fraction
    while f < MAX_HOLDOUT_FRACTION:
        f = min(MAX_HOLDOUT_FRACTION, round(f + 0.01, 6))
        c = _cuts(stales, f)
        t, k = _counts(stales, c, window_size, stride)
        if t < MIN_TRAIN_WINDOWS:
            break
        if k >= MIN_CALIBRATION_WINDOWS:
            msg = (
                f"short data: calibration.holdout_fraction {fraction:g} held out only {n_calib} windows "
                f"(calibration needs {MIN_CALIBRATION_WINDOWS}); held out {f:g} instead ({k} windows, "
                f"{t} left to train on)"
            )
            return HoldoutPlan(c, f, t, k, "all", "holdout_enlarged", msg)
    msg = (
        f"short data: {total} windows in all, too few for a hold-out of {MIN_CALIBRATION_WINDOWS} windows "
        f"that leaves {MIN_TRAIN_WINDOWS} to train on; nothing held out, the threshold is the "
        "calibration.quantile of the training windows' errors, so expect more false alarms than it "
        "promises; give more data or a smaller model.window_size"
    )
    return HoldoutPlan([len(s) for s in stales], 0.0, total, 0, "all", "quantile_all", msg)


def _advice(stales: Sequence[np.ndarray], window_size: int, stride: int, total: int) -> str:
    frames = sum(len(s) for s in stales)
    fresh = int(sum((~np.asarray(s, dtype=bool)).sum() for s in stales))
    need_rows = window_size - 1 + (MIN_TOTAL_WINDOWS - 1) * stride + 1
    parts = [
        f"too little data to train: {frames} frames ({fresh} fresh) give {total} windows of "
        f"model.window_size={window_size} (model.stride={stride}); training needs at least "
        f"{MIN_TOTAL_WINDOWS} windows, about {need_rows} gap-free rows at this window size."
    ]
    smaller = [w for w in (window_size // 2, window_size // 3, 8) if 2 <= w < window_size]
    for w in dict.fromkeys(smaller):
        n = sum(count_windows(s, w, stride) for s in stales)
        if n >= MIN_TOTAL_WINDOWS:
            parts.append(f"model.window_size: {w} would give {n} windows.")
            break
    parts.append("Give more data (a longer recording), lower model.window_size")
    if stride > 1:
        parts[-1] += " or model.stride"
    if fresh < frames:
        parts[-1] += ", or raise stream.max_gap_seconds so that short gaps do not cut the data into runs"
    parts[-1] += "."
    return " ".join(parts)
