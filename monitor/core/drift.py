"""Drift of a model's live raw errors against the errors it was calibrated on.

At training, `error_quantiles` stores the deciles of the raw errors of the held-out
calibration windows in the manifest (``threshold.error_quantiles``: 9 edges, so 10 bins
that each held 10 % of the calibration errors). Live, `DriftTracker` keeps the bin of each
of the newest `window` errors (a ring of small ints, O(1) memory per group) and reports
the population stability index

    PSI = sum_i (a_i - e_i) * ln(a_i / e_i),   e_i = 0.1, a_i = live share in bin i

with both shares floored at `EPS` (an empty bin would be infinite). The usual reading:
< 0.1 stable, 0.1 to 0.25 some shift, > 0.25 the input no longer looks like what the
model was calibrated on (the `MonitorModelDrift` rule fires on that). Bundles from before
this field carry no quantiles: their drift is not computed (NaN).

The value is NaN until the ring is full (`MIN_WINDOWS` = `DEFAULT_WINDOW`): consecutive
windows overlap and follow the process's slow cycles, so a few hundred of them (at 1 Hz,
less than one 5-minute load cycle of `synthetic.pump`) cover part of a cycle and read
0.3 to 1.9 on perfectly normal data; the full 2 048 stay under 0.09 there (decision 0021,
addendum; ``bench/drift_psi.py``).

Pure: numpy only, no clocks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from monitor.core.types import FloatArray, Floats

QUANTILES = tuple(round(0.1 * i, 1) for i in range(1, 10))
EPS = 1e-4
DEFAULT_WINDOW = 2048  # newest windows the statistic is taken over, per group
MIN_WINDOWS = DEFAULT_WINDOW  # a partly filled ring: NaN (see below)


def error_quantiles(errors: Floats) -> list[float]:
    """The decile edges of `errors` (finite ones), for the manifest."""
    values = np.asarray(errors, dtype=np.float64).ravel()
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return []
    return [float(q) for q in np.quantile(finite, QUANTILES)]


def psi(expected: Sequence[float] | FloatArray, actual: Sequence[float] | FloatArray) -> float:
    """Population stability index of two share vectors of the same bins."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), EPS)
    a = np.maximum(np.asarray(actual, dtype=np.float64), EPS)
    return float(np.sum((a - e) * np.log(a / e)))


class DriftTracker:
    """PSI of the newest `window` raw errors against the calibration deciles `edges`."""

    def __init__(self, edges: Sequence[float], window: int = DEFAULT_WINDOW, min_windows: int = MIN_WINDOWS):
        if len(edges) < 1:
            raise ValueError("drift needs at least one quantile edge")
        if window < 1 or min_windows < 1:
            raise ValueError(f"window and min_windows must be >= 1, got {window}, {min_windows}")
        self.edges = np.asarray(edges, dtype=np.float64)
        self.bins = len(self.edges) + 1
        self.expected = np.full(self.bins, 1.0 / self.bins)
        self.window = window
        self.min_windows = min(min_windows, window)
        self._ring: NDArray[np.intp] = np.zeros(window, dtype=np.intp)
        self._counts = np.zeros(self.bins, dtype=np.int64)
        self._at = 0  # next slot of the ring
        self.seen = 0  # windows observed in all
        self._pending: list[Floats] = []  # batches `add`ed since the last `value`
        self._pending_n = 0

    def add(self, raw: Floats) -> None:
        """Queue a batch's raw errors: O(1) on the scoring path; binned at the next `value`.
        At most about `window` of the newest queued errors are kept."""
        self._pending.append(raw)
        self._pending_n += len(raw)
        while self._pending_n - len(self._pending[0]) >= self.window:
            self._pending_n -= len(self._pending.pop(0))

    def _absorb(self) -> None:
        if self._pending:
            pending, self._pending, self._pending_n = self._pending, [], 0
            self.update(np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in pending]))

    def update(self, raw: Floats) -> None:
        """Add a batch's raw errors (non-finite ones are skipped)."""
        values = np.asarray(raw, dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size > self.window:
            values = values[-self.window :]
        k = values.size
        if not k:
            return
        new = np.searchsorted(self.edges, values, side="right").astype(np.intp)
        at = self._at
        idx = np.arange(at, at + k) if at + k <= self.window else (at + np.arange(k)) % self.window
        bins = self.bins
        if self.seen >= self.window:  # the slots being overwritten leave the counts
            self._counts -= np.bincount(self._ring[idx], minlength=bins)
        else:
            full = max(0, self.seen + k - self.window)  # only the last `full` overwrite old slots
            if full:
                self._counts -= np.bincount(self._ring[idx[k - full :]], minlength=bins)
        self._ring[idx] = new
        self._counts += np.bincount(new, minlength=bins)
        self._at = int((self._at + k) % self.window)
        self.seen += k

    @property
    def filled(self) -> int:
        self._absorb()
        return min(self.seen, self.window)

    def shares(self) -> list[float]:
        n = self.filled
        return [float(c) / n for c in self._counts] if n else [math.nan] * self.bins

    def value(self) -> float:
        """PSI now (queued batches binned first); NaN with fewer than `min_windows` errors seen."""
        n = self.filled
        if n < self.min_windows:
            return math.nan
        return psi(self.expected, self._counts / n)
