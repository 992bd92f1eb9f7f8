"""Drift of a model's live raw errors against the errors it was trained and calibrated on.

**Reference.** At training, `train_bundle` stores the deciles of the raw errors of windows
spread over the whole training span (every training window the model was fitted on, as
sampled evenly over the older part, and the held-out calibration windows of the newest
part, each weighted back to its share of the span; `reference_quantiles`) in the
manifest as ``threshold.drift_quantiles``: 9 edges, so 10 bins that each held 10 % of the
span's errors. Bundles from before that field fall back to ``threshold.error_quantiles``
(the deciles of the hold-out alone, what `fit_threshold` stores); bundles with neither
report NaN.

**Recent errors.** `DriftTracker` bins each live raw error and keeps per-chunk bin counts
(`CHUNK` windows a chunk): the newest `CHUNKS` complete chunks and the chunk being filled,
so the summary spans between `HORIZON` and `HORIZON + CHUNK` windows (16 384 to 18 432;
4.6 to 5.1 h at 1 Hz; `tracker_for` scales the chunk to the model's window rate so that
the span is the same time at any rate) in O(`CHUNKS` x bins) memory, at an update cost of one
`searchsorted` and one `bincount` of the batch (no per-window ring). It reports the
population stability index

    PSI = sum_i (a_i - e_i) * ln(a_i / e_i),   e_i = 0.1, a_i = live share in bin i

with both shares floored at `EPS` (an empty bin would be infinite). The usual reading:
< 0.1 stable, 0.1 to 0.25 some shift, > 0.25 the input no longer looks like what the
model was trained on (the `MonitorModelDrift` rule fires on that).

Why hours and not the newest 2 048 windows: a process whose regime wanders (load steps
every quarter hour) has a live error distribution that follows where the regime is; 34
minutes of windows see one or two regimes and read up to 0.43 on normal data, hours of
them see the mixture the training span saw and stay under 0.10 (decision 0021, second
addendum; ``bench/drift_psi.py``). The price is delay: a change shows once it fills enough
of the summary (a 5 % gain about 2 h, three times the noise about 1 h after its onset).

The value is NaN until `MIN_WINDOWS` (8 192 at 1 Hz: 2.3 h at any rate) errors were seen since the
model was installed: fewer consecutive windows cover part of the process's slow variation
and read as drift on normal data (215 windows, less than one 5-minute load cycle of
`synthetic.pump`, read 0.3-1.9; 2 048 windows of a wandering regime, up to 0.43).

Pure: numpy only, no clocks.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from monitor.core.types import FloatArray, Floats

QUANTILES = tuple(round(0.1 * i, 1) for i in range(1, 10))
EPS = 1e-4
CHUNK = 2048  # windows per chunk of bin counts
CHUNKS = 8  # complete chunks kept besides the one being filled
HORIZON = CHUNK * CHUNKS  # newest windows the statistic spans at least, once that many were seen
MIN_WINDOWS = 4 * CHUNK  # fewer seen: NaN (see above)


def tracker_for(edges: Sequence[float], period_seconds: float, stride: int = 1) -> DriftTracker:
    """The daemon's tracker for a model scoring one window every `period_seconds` x
    `stride`: chunks of `CHUNK` windows at one window a second, the same time (34 min a
    chunk, 4.6 h the horizon, 2.3 h before a value) at any rate; at least one window a chunk."""
    seconds = float(period_seconds) * max(1, int(stride))
    if not (math.isfinite(seconds) and seconds > 0):
        return DriftTracker(edges)
    chunk = max(1, round(CHUNK / seconds))
    return DriftTracker(edges, chunk=chunk, min_windows=chunk * (MIN_WINDOWS // CHUNK))


def error_quantiles(errors: Floats, weights: Floats | None = None) -> list[float]:
    """The decile edges of `errors` (finite ones), for the manifest. With `weights` (one
    per error, > 0), of the weighted distribution: each error counts `weight` times."""
    values = np.asarray(errors, dtype=np.float64).ravel()
    keep = np.isfinite(values)
    finite = values[keep]
    if finite.size == 0:
        return []
    if weights is None:
        return [float(q) for q in np.quantile(finite, QUANTILES)]
    w = np.asarray(weights, dtype=np.float64).ravel()[keep]
    order = np.argsort(finite, kind="stable")
    sorted_values, cum = finite[order], np.cumsum(w[order])
    # the inverse of the weighted empirical CDF at each level (the plain case: the lower quantile)
    at = np.searchsorted(cum, np.asarray(QUANTILES) * cum[-1], side="left")
    return [float(sorted_values[min(i, finite.size - 1)]) for i in at]


def reference_quantiles(
    train_errors: Floats, calib_errors: Floats, train_share: float = 1.0, calib_share: float = 1.0
) -> list[float]:
    """The drift reference: deciles of the errors of windows spread over the whole training
    span. `*_share` is how many windows of the span each given one stands for (available /
    used, where `model.max_*_windows` sampled them), so a sampled part keeps its weight."""
    tr = np.asarray(train_errors, dtype=np.float64).ravel()
    ca = np.asarray(calib_errors, dtype=np.float64).ravel()
    errors = np.concatenate([tr, ca])
    if train_share == calib_share:
        return error_quantiles(errors)
    weights = np.concatenate([np.full(tr.size, float(train_share)), np.full(ca.size, float(calib_share))])
    return error_quantiles(errors, weights)


def reference_edges(threshold_info: Mapping[str, Any]) -> list[float] | None:
    """The edges a bundle's drift is measured against: the training span's deciles, else
    (a bundle from before them) the hold-out's, else None (drift not computed)."""
    edges = threshold_info.get("drift_quantiles") or threshold_info.get("error_quantiles")
    return [float(e) for e in edges] if edges else None


def psi(expected: Sequence[float] | FloatArray, actual: Sequence[float] | FloatArray) -> float:
    """Population stability index of two share vectors of the same bins."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), EPS)
    a = np.maximum(np.asarray(actual, dtype=np.float64), EPS)
    return float(np.sum((a - e) * np.log(a / e)))


class DriftTracker:
    """PSI of the newest `chunk` x `chunks` (to `chunk` more) raw errors against the deciles `edges`."""

    def __init__(
        self,
        edges: Sequence[float],
        chunk: int = CHUNK,
        chunks: int = CHUNKS,
        min_windows: int = MIN_WINDOWS,
    ):
        if len(edges) < 1:
            raise ValueError("drift needs at least one quantile edge")
        if chunk < 1 or chunks < 1 or min_windows < 1:
            raise ValueError(f"chunk, chunks and min_windows must be >= 1, got {chunk}, {chunks}, {min_windows}")
        self.edges = np.asarray(edges, dtype=np.float64)
        self._sorted = bool((self.edges[1:] >= self.edges[:-1]).all())  # non-decreasing, no NaN: `update` may sort
        self.bins = len(self.edges) + 1
        self.expected = np.full(self.bins, 1.0 / self.bins)
        self.chunk = chunk
        self.chunks = chunks
        self.horizon = chunk * chunks
        self.min_windows = min(min_windows, self.horizon)
        self._done: deque[NDArray[np.int64]] = deque()  # complete chunks' counts, oldest first
        self._current = np.zeros(self.bins, dtype=np.int64)  # the chunk being filled
        self._current_n = 0
        self._counts = np.zeros(self.bins, dtype=np.int64)  # sum of `_done` and `_current`
        self.seen = 0  # windows observed in all
        self._pending: list[Floats] = []  # batches `add`ed since the last `value`
        self._pending_n = 0

    def add(self, raw: Floats) -> None:
        """Queue a batch's raw errors: O(1) on the scoring path; binned at the next `value`,
        or once a chunk's worth is queued (so the queue stays bounded)."""
        self._pending.append(raw)
        self._pending_n += len(raw)
        if self._pending_n >= self.chunk:
            self._absorb()

    def _absorb(self) -> None:
        if self._pending:
            pending, self._pending, self._pending_n = self._pending, [], 0
            self.update(np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in pending]))

    def update(self, raw: Floats) -> None:
        """Add a batch's raw errors (non-finite ones are skipped)."""
        values = np.asarray(raw, dtype=np.float64).ravel()
        values = values[np.isfinite(values)]
        k = values.size
        if not k:
            return
        room = self.chunk - self._current_n
        if k < room and self._sorted:  # the common case: the batch stays in the current chunk
            # per bin: the values with as many edges <= them (np.searchsorted(edges, v, "right")),
            # counted from the sorted values: those below each edge (fewer comparisons, same counts)
            below = np.searchsorted(np.sort(values), self.edges, side="left")
            counts = np.diff(below, prepend=0, append=k)
            self._current += counts
            self._counts += counts
            self._current_n += k
            self.seen += k
            return
        new = np.searchsorted(self.edges, values, side="right")
        if k < room:
            counts = np.bincount(new, minlength=self.bins)
            self._current += counts
            self._counts += counts
            self._current_n += k
        else:
            start = 0
            while start < k:
                take = min(k - start, self.chunk - self._current_n)
                counts = np.bincount(new[start : start + take], minlength=self.bins)
                self._current += counts
                self._counts += counts
                self._current_n += take
                start += take
                if self._current_n == self.chunk:
                    self._close_chunk()
        self.seen += k

    def _close_chunk(self) -> None:
        self._done.append(self._current)
        if len(self._done) > self.chunks:
            self._counts -= self._done.popleft()
        self._current = np.zeros(self.bins, dtype=np.int64)
        self._current_n = 0

    @property
    def filled(self) -> int:
        """Errors the summary holds now (queued batches binned first)."""
        self._absorb()
        return len(self._done) * self.chunk + self._current_n

    # ------------------------------------------------------------------ state (restarts)

    def to_state(self) -> dict[str, Any]:
        """Plain data to go on from after a restart (`restore`): the reference, the chunk
        geometry and the counts; queued batches binned first."""
        self._absorb()
        return {
            "edges": self.edges.tolist(),
            "chunk": self.chunk,
            "chunks": self.chunks,
            "done": [c.tolist() for c in self._done],
            "current": self._current.tolist(),
            "current_n": self._current_n,
            "seen": self.seen,
        }

    def restore(self, state: Mapping[str, Any]) -> bool:
        """Adopt `to_state`'s data if it was kept against the same reference and chunk
        geometry (False, nothing changed, otherwise). Malformed data: ValueError."""
        same = (
            list(map(float, state["edges"])) == self.edges.tolist()
            and int(state["chunk"]) == self.chunk
            and int(state["chunks"]) == self.chunks
        )
        if not same:
            return False
        done = [np.asarray(c, dtype=np.int64) for c in state["done"]]
        current = np.asarray(state["current"], dtype=np.int64)
        current_n, seen = int(state["current_n"]), int(state["seen"])
        shapes_ok = all(c.shape == (self.bins,) for c in [*done, current])
        counts_ok = all(int(c.sum()) == self.chunk for c in done) and int(current.sum()) == current_n
        negative = any(bool((c < 0).any()) for c in [*done, current])
        if not shapes_ok or not counts_ok or negative or len(done) > self.chunks or not 0 <= current_n < self.chunk:
            raise ValueError("drift state: counts do not add up to its chunks")
        if seen < len(done) * self.chunk + current_n:
            raise ValueError("drift state: fewer windows seen than its chunks hold")
        self._pending, self._pending_n = [], 0
        self._done = deque(done)
        self._current, self._current_n, self.seen = current, current_n, seen
        self._counts = current + sum(done, np.zeros(self.bins, dtype=np.int64))
        return True

    def shares(self) -> list[float]:
        n = self.filled
        return [float(c) / n for c in self._counts] if n else [math.nan] * self.bins

    def value(self) -> float:
        """PSI now (queued batches binned first); NaN with fewer than `min_windows` errors seen."""
        n = self.filled
        if self.seen < self.min_windows:
            return math.nan
        return psi(self.expected, self._counts / n)
