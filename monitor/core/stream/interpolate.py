"""Per-stream channel alignment by linear interpolation onto the grid (``alignment: interpolate``).

The same interface and counters as `StreamAssembler` (``push``, ``push_row``, ``flush``;
frames ``(time, values, stale)``), for feeds whose timestamps jitter or drift against
the grid. The rule, per grid time ``g = k * period_seconds``:

* Each channel keeps its valued readings ``(t, v)``; frame ``k`` takes, per channel,
  the newest one at or before ``g``, ``(t0, v0)``, and the first one after it,
  ``(t1, v1)``, and holds ``v0 + (v1 - v0) (g - t0) / (t1 - t0)`` (``v0`` itself when
  ``t0 == g``). Without a valued reading after ``g`` (the frame was forced out while
  the channel was silent, or its next report was NaN) it holds ``v0``.
* The frame is *stale* when, for some channel, the line spans a gap: ``t1 - t0 >
  max_gap_seconds + period`` (more than ``max_gap_seconds / period`` readings missing
  between the anchors), or the channel holds a value with ``g - t0 > max_gap_seconds +
  period``, or it has no valued reading at or before ``g`` (value NaN). The bucket rules
  measure a held value's age from the start of its bucket, so they bridge between
  ``max_gap`` and ``max_gap + period`` of silence depending on where the readings sit
  in their buckets; this bound is theirs at its loosest, and does not depend on the
  phase of the readings against the grid.
* Frame ``k`` is emitted as soon as it is final -- every channel has reported at or
  after ``g`` (its clock, NaN reports included, is ``>= g``) -- or when a reading at or
  after ``(k + 1) period + lateness_seconds`` arrives while some channel is silent. The
  first frame is the first grid time at or after the stream's first reading.
* No reading is ``late``: one older than a frame already emitted cannot change that
  frame, but it is still the left anchor of the next one, so it is accepted. A
  channel timestamp equal to its previous one is a ``duplicate``, an older one
  ``out_of_order``, as under the bucket rules. Readings denser than the grid are used as
  anchors only where they neighbour a grid time (the others do not change any frame).
* After a stale frame every frame up to the point where the stale channel can be fresh
  again is stale too and is skipped (one stale frame per gap): up to the grid time at
  or after the right anchor ``t1``, or for a silent channel to the newest grid time at
  or before the newest reading.

Frames therefore lag the newest reading by up to one period plus a sample interval (a
frame needs a reading after its grid time). Per reading this costs a few list
operations per channel, more than the bucket rules; it has no vectorized path.
"""

from __future__ import annotations

import math

import numpy as np

from monitor.core.stream.assembler import EPS, AssembledFrame
from monitor.core.types import DropReason, FloatArray


class InterpolatingAssembler:
    """Aligns the channels of one stream by interpolation; `push` returns the frames it completes."""

    __slots__ = ("_bridge", "_clock", "_max_ts", "_next", "_points", "lateness", "max_gap", "n_channels", "period")

    def __init__(self, n_channels: int, period_seconds: float, max_gap_seconds: float, lateness_seconds: float):
        if n_channels < 1:
            raise ValueError("a stream needs at least one channel")
        self.n_channels = n_channels
        self.period = float(period_seconds)
        self.max_gap = float(max_gap_seconds)
        self.lateness = float(lateness_seconds)
        self._bridge = self.max_gap + self.period + EPS  # longest span / hold that is fresh
        self._next: int | None = None  # next grid index to emit
        self._max_ts = -math.inf
        self._clock = [-math.inf] * n_channels  # newest timestamp per channel (NaN reports too)
        # per channel: valued readings [t, v], oldest first; pruned to the newest one at or
        # before the next grid time and everything after it
        self._points: list[list[tuple[float, float]]] = [[] for _ in range(n_channels)]

    def last_times(self) -> list[float]:
        """Each channel's newest reading time (-inf: never reported)."""
        return list(self._clock)

    def push(self, timestamp: float, channel: int, value: float, out: list[AssembledFrame]) -> str | None:
        """Add one reading; append completed ``(time, values, stale)`` to `out`."""
        last = self._clock[channel]
        if timestamp <= last:
            return DropReason.DUPLICATE if timestamp == last else DropReason.OUT_OF_ORDER
        self._accept(timestamp)
        self._clock[channel] = timestamp
        if value == value:  # not NaN
            self._points[channel].append((timestamp, value))
        self._emit_ready(out)
        return None

    def push_row(self, timestamp: float, values: FloatArray, out: list[AssembledFrame]) -> str | None:
        """Add a reading for every channel at once (a wide CSV row)."""
        clock = self._clock
        if timestamp <= max(clock):
            return DropReason.DUPLICATE if any(timestamp == x for x in clock) else DropReason.OUT_OF_ORDER
        self._accept(timestamp)
        self._clock = [timestamp] * self.n_channels
        for points, v in zip(self._points, np.asarray(values, dtype=np.float64).tolist(), strict=True):
            if v == v:
                points.append((timestamp, v))
        self._emit_ready(out)
        return None

    def _accept(self, timestamp: float) -> None:
        if self._next is None:
            self._next = math.ceil(timestamp / self.period - EPS)
        if timestamp > self._max_ts:
            self._max_ts = timestamp

    def _emit_ready(self, out: list[AssembledFrame]) -> None:
        final_from = min(self._clock)
        while True:
            k = self._next
            if k is None:  # nothing accepted yet
                return
            g = k * self.period
            if final_from < g and self._max_ts < (k + 1) * self.period + self.lateness - EPS:
                return
            self._emit(k, out)

    def _emit(self, k: int, out: list[AssembledFrame]) -> None:
        g = k * self.period
        values = [math.nan] * self.n_channels
        stale = False
        skip_to = k + 1
        for c, points in enumerate(self._points):
            while len(points) >= 2 and points[1][0] <= g:
                del points[0]
            if not points or points[0][0] > g:  # nothing at or before g
                stale = True
                skip_to = max(skip_to, self._newest_grid())
                continue
            t0, v0 = points[0]
            right = len(points) >= 2 and t0 != g
            if right:
                t1, v1 = points[1]
                values[c] = v0 + (v1 - v0) * ((g - t0) / (t1 - t0))
            else:  # exact, or hold
                values[c] = v0
            if (points[1][0] if right else g) - t0 > self._bridge:
                stale = True
                # fresh again at the right anchor, or (silent channel) not before the newest reading
                skip_to = max(skip_to, math.ceil(points[1][0] / self.period) if right else self._newest_grid())
        out.append((g, np.array(values), stale))
        self._next = skip_to if stale else k + 1

    def _newest_grid(self) -> int:
        return math.floor(self._max_ts / self.period + EPS)

    def flush(self, out: list[AssembledFrame]) -> None:
        """Emit every frame up to the newest reading (end of a file or a replay)."""
        if self._next is None:
            return
        last = self._newest_grid()
        while self._next <= last:
            self._emit(self._next, out)
