"""The pure pipeline: readings -> frames -> filtered, standardized windows -> scores -> alerts.

No I/O and no clocks: the live daemon, `replay` and `backtest` all drive this object, so
what a backtest shows is what the daemon does. Readings are pushed one by one (or as
wide rows); windows that become due wait in a batch until `flush()` scores them all in
one forward pass and runs the alarm state machine over the results in order.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from monitor.alarm import AlarmMachine
from monitor.config import AlarmConfig, FilterConfig, StreamConfig
from monitor.stream.assembler import EPS, StreamAssembler
from monitor.stream.filters import FilterChain
from monitor.stream.windows import WindowBuffer
from monitor.types import Alert, Reading, ScoreBatch

_MIN_RUN = 8  # shorter runs of one stream's channel: reading by reading is as fast


@dataclass
class ScoringModel:
    """Everything the pipeline needs from a model bundle."""

    version: str
    channels: list[str]
    period_seconds: float
    window_size: int
    stride: int
    filters: list[FilterConfig]
    mean: np.ndarray
    std: np.ndarray
    threshold: float
    scorer: object  # has .errors(x_std) -> (raw (B,), per_channel (B, C), recon_last_std (B, C))
    manifest: dict = field(default_factory=dict)

    @classmethod
    def from_bundle(cls, bundle) -> "ScoringModel":
        from monitor.model.scorer import Scorer

        m = bundle.manifest
        return cls(
            version=bundle.version,
            channels=list(m["channels"]),
            period_seconds=float(m["period_seconds"]),
            window_size=int(m["window_size"]),
            stride=int(m["stride"]),
            filters=[FilterConfig(**f) for f in m.get("filters", [])],
            mean=np.asarray(m["scaler"]["mean"], dtype=np.float64),
            std=np.asarray(m["scaler"]["std"], dtype=np.float64),
            threshold=float(m["threshold"]["threshold"]),
            scorer=Scorer(bundle.module),
            manifest=m,
        )

    def compatible_with(self, other: "ScoringModel") -> bool:
        """Same frame and window geometry: stream state can carry over a swap."""
        return (
            self.channels == other.channels
            and self.period_seconds == other.period_seconds
            and self.window_size == other.window_size
            and self.stride == other.stride
            and self.filters == other.filters
        )


class StreamState:
    """One stream's assembler, filters and window buffer."""

    __slots__ = ("assembler", "filters", "windows", "frames")

    def __init__(self, model: ScoringModel, max_gap_seconds: float, lateness_seconds: float):
        n = len(model.channels)
        self.assembler = StreamAssembler(n, model.period_seconds, max_gap_seconds, lateness_seconds)
        self.filters = FilterChain(model.filters)
        self.windows = WindowBuffer(model.window_size, n, model.stride)
        self.frames: list = []  # scratch list the assembler appends completed frames to

    def filtered(self, values: np.ndarray, stale: bool) -> np.ndarray | None:
        """Run the filters over one frame; None (and a reset) for a stale frame."""
        if stale:
            self.filters.reset()
            self.windows.reset()
            return None
        return self.filters(values) if self.filters else values


def stream_timing(stream_cfg: StreamConfig, period_seconds: float) -> tuple[float, float]:
    """(max_gap_seconds, lateness_seconds) with the documented defaults filled in."""
    max_gap = stream_cfg.max_gap_seconds if stream_cfg.max_gap_seconds is not None else 5 * period_seconds
    lateness = stream_cfg.lateness_seconds if stream_cfg.lateness_seconds is not None else period_seconds
    return max_gap, lateness


class Pipeline:
    """Scores many streams with one model. Not thread-safe: drive it from one thread."""

    def __init__(self, model: ScoringModel, stream_cfg: StreamConfig, alarm_cfg: AlarmConfig, top_channels: int = 3):
        self.stream_cfg = stream_cfg
        self.alarm_cfg = alarm_cfg
        self.top_channels = top_channels
        self.counters: Counter = Counter()  # rejected/dropped inputs by reason, and totals
        self.streams: dict[str, StreamState] = {}
        # Due windows wait in a preallocated (capacity, W, C) float32 buffer (no per-window
        # copy + np.stack); their (stream, timestamp, observed raw) in `_meta`.
        self._meta: list[tuple] = []
        self._x = np.empty((0, 1, 1), dtype=np.float32)
        self._install(model)

    def _install(self, model: ScoringModel) -> None:
        self.model = model
        self.channel_index = {c: i for i, c in enumerate(model.channels)}
        self.max_gap, self.lateness = stream_timing(self.stream_cfg, model.period_seconds)
        self._inv_std = 1.0 / model.std
        shape = (model.window_size, len(model.channels))
        if self._x.shape[1:] != shape:
            self._x = np.empty((max(256, len(self._meta)),) + shape, dtype=np.float32)
        self.alarm = AlarmMachine(self.alarm_cfg, model.threshold, model.version, model.channels, self.top_channels)

    # ------------------------------------------------------------------ model swap

    def swap_model(self, model: ScoringModel) -> tuple[ScoreBatch, list[Alert]]:
        """Score with `model` from now on.

        Windows already due are scored by the old model first (returned, like `flush`).
        Alarm episodes carry over; stream state (assembler, filters, windows) carries
        over when the geometry is the same, else streams restart from empty windows.
        """
        leftovers = self.flush()
        old_states = self.alarm.states
        compatible = model.compatible_with(self.model)
        self._install(model)
        self.alarm.states = old_states
        if not compatible:
            self.streams.clear()
        return leftovers

    # ------------------------------------------------------------------ input

    def _state(self, stream: str) -> StreamState | None:
        state = self.streams.get(stream)
        if state is None:
            if len(self.streams) >= self.stream_cfg.max_streams:
                return None
            state = self.streams[stream] = StreamState(self.model, self.max_gap, self.lateness)
        return state

    def push_reading(self, reading: Reading) -> str | None:
        """Add one reading; returns None if accepted, else the reason it was dropped."""
        idx = self.channel_index.get(reading.channel)
        if idx is None:
            reason = "unknown_channel"
        else:
            state = self._state(reading.stream)
            if state is None:
                reason = "stream_cap"
            else:
                reason = state.assembler.push(reading.timestamp, idx, reading.value, state.frames)
                if state.frames:
                    self._consume_frames(reading.stream, state)
        if reason is not None:
            self.counters[reason] += 1
        else:
            self.counters["accepted"] += 1
        return reason

    def push_readings(self, readings: Iterable[Reading]) -> None:
        for r in readings:
            self.push_reading(r)

    def push_batch(self, readings: list[Reading]) -> None:
        """`push_reading` for each of `readings` (a scoring batch, in arrival order), with
        the same frames, windows, scores and drop counts, and the due windows in the same
        order.

        For a univariate, unfiltered model the readings are grouped by (stream, channel),
        keeping each stream's order; a group goes through the vectorized path
        (`_push_run`) when it qualifies, else reading by reading. Streams are independent
        (their own assembler and window buffer), so only the order of the due windows
        differs: each window is tagged with the position of the reading that made it due
        and the new windows are put back in that order (a stable sort: one reading's
        windows keep their order). Groups are taken in order of first appearance, so
        streams are created, and capped, in arrival order. Multichannel or filtered
        models: reading by reading (grouping a stream's channels buys nothing there).
        """
        n = len(readings)
        if n < _MIN_RUN or len(self.model.channels) != 1 or self.model.filters:
            push = self.push_reading
            for r in readings:
                push(r)
            return
        # spans of equal (stream, channel), grouped by key in order of first appearance
        groups: dict[tuple, list] = {}
        i = 0
        while i < n:
            first = readings[i]
            stream, channel = first[0], first[1]
            j = i + 1
            while j < n and readings[j][0] == stream and readings[j][1] == channel:
                j += 1
            spans = groups.get((stream, channel))
            if spans is None:
                groups[(stream, channel)] = [i, j]
            else:
                spans += (i, j)
            i = j
        push = self.push_reading
        if len(groups) == 1:  # one span: arrival order already
            stream, channel = next(iter(groups))
            if self._push_run(stream, channel, readings, 0, n) is None:
                for r in readings:
                    push(r)
            return
        if n < _MIN_RUN * len(groups) and not any(
            sum(spans[1::2]) - sum(spans[::2]) >= _MIN_RUN for spans in groups.values()
        ):  # no group long enough: reading by reading, in arrival order
            for r in readings:
                push(r)
            return
        meta = self._meta
        base = len(meta)
        keys: list = []  # per new window: the position of the reading that made it due
        for (stream, channel), spans in groups.items():
            if len(spans) == 2:
                i, j = spans
                run, pos = readings, None
            else:
                pos = [k for a in range(0, len(spans), 2) for k in range(spans[a], spans[a + 1])]
                run = [readings[k] for k in pos]
                i, j = 0, len(pos)
            if j - i >= _MIN_RUN:
                index = self._push_run(stream, channel, run, i, j)
                if index is not None:
                    if len(index):
                        if pos is None:
                            keys += (index + i).tolist()
                        else:
                            keys += np.asarray(pos)[index].tolist()
                    continue
            for k in (range(i, j) if pos is None else pos):
                before = len(meta)
                push(readings[k])
                if len(meta) != before:
                    keys += [k] * (len(meta) - before)
        m = len(keys)
        if m > 1:
            order = np.argsort(np.asarray(keys), kind="stable")
            if (order[1:] < order[:-1]).any():  # not already in arrival order
                new = meta[base:]
                meta[base:] = [new[o] for o in order.tolist()]
                self._x[base : base + m] = self._x[base : base + m][order]

    def _push_run(self, stream: str, channel: str, readings: list, i: int, j: int) -> np.ndarray | None:
        """The vectorized path of `push_batch`: `readings[i:j]`, all of `stream` and
        `channel`. Returns the positions in the run whose reading made a window due (one
        window each, appended in order), or None (nothing done) when it does not apply."""
        if self.channel_index.get(channel) != 0:
            return None
        state = self._state(stream)
        if state is None:
            return None
        ts = np.fromiter((r[2] for r in readings[i:j]), dtype=np.float64, count=j - i)
        vals = np.fromiter((r[3] for r in readings[i:j]), dtype=np.float64, count=j - i)
        asm = state.assembler
        buckets = np.floor(ts / asm.period + EPS)
        if not (np.isfinite(vals).all() and np.isfinite(buckets).all()):
            return None
        buckets = buckets.astype(np.int64)
        if not asm.fast_run_ok(ts, buckets):
            return None
        # the scalar path computes math.floor per reading: the same IEEE operations
        t_frames = asm.push_run(ts, buckets, vals)
        m = j - i
        self.counters["accepted"] += m
        self.counters["frames"] += m
        frames = vals.reshape(m, 1)
        z = (frames - self.model.mean) * self._inv_std
        index, windows = state.windows.push_many(z)
        k = len(index)
        if k:
            at = len(self._meta)
            self._reserve(at + k)
            self._x[at : at + k] = windows
            meta = self._meta
            tf = t_frames.tolist()
            for e in index.tolist():
                meta.append((stream, tf[e], frames[e]))
        return index

    def _reserve(self, n: int) -> None:
        if n > len(self._x):
            grown = np.empty((max(n, 2 * len(self._x)),) + self._x.shape[1:], dtype=np.float32)
            grown[: len(self._meta)] = self._x[: len(self._meta)]
            self._x = grown

    def push_row(self, stream: str, timestamp: float, values: np.ndarray) -> str | None:
        """Add a reading for every channel of `stream` at once (a wide CSV row)."""
        state = self._state(stream)
        if state is None:
            reason = "stream_cap"
        else:
            reason = state.assembler.push_row(timestamp, values, state.frames)
            if state.frames:
                self._consume_frames(stream, state)
        self.counters[reason or "accepted"] += 1
        return reason

    def end_of_data(self) -> None:
        """Emit every frame still waiting (end of a file or recording)."""
        for stream, state in self.streams.items():
            state.assembler.flush(state.frames)
            if state.frames:
                self._consume_frames(stream, state)

    def _consume_frames(self, stream: str, state: StreamState) -> None:
        for t, values, stale in state.frames:
            self.counters["frames"] += 1
            filtered = state.filtered(values, stale)
            if filtered is None:
                self.counters["stale_frames"] += 1
                continue
            z = (filtered - self.model.mean) * self._inv_std
            window = state.windows.push(z)
            if window is not None:
                at = len(self._meta)
                if at >= len(self._x):
                    self._reserve(at + 1)
                self._x[at] = window
                self._meta.append((stream, t, filtered))
        state.frames.clear()

    # ------------------------------------------------------------------ scoring

    @property
    def pending(self) -> int:
        return len(self._meta)

    def flush(self) -> tuple[ScoreBatch, list[Alert]]:
        """Score every due window in one batch, then run the alarms in arrival order."""
        batch, self._meta = self._meta, []
        if not batch:
            return ScoreBatch.empty(), []
        model = self.model
        x = self._x[: len(batch)]
        raw, per_channel, recon_last = model.scorer.errors(x)
        if len(self._x) > 4096 and len(batch) < len(self._x) // 8:
            self._x = np.empty((max(256, 2 * len(batch)),) + self._x.shape[1:], dtype=np.float32)
        inv_thr = 1.0 / model.threshold
        streams, times, observed = (list(col) for col in zip(*batch))
        scores = ScoreBatch(streams, times, raw * inv_thr, raw, per_channel * (inv_thr / per_channel.shape[1]),
                            observed, recon_last * model.std + model.mean)
        alerts = self.alarm.update_batch(scores)
        self.counters["windows_scored"] += len(batch)
        return scores, alerts
