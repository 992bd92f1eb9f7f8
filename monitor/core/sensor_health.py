"""Sensor health: stale, stuck, out-of-range and rate faults per stream and channel.

A pure stage beside the autoencoder: it reads the raw (unfiltered) frames the pipeline
assembles and decides, per channel, whether the *sensor* is broken rather than the
process. No clocks: the caller passes data times (frames) and `now` (the stale check).

* stale: no reading of the channel for `stale_seconds` (`tick`);
* stuck: the standard deviation of the last `stuck_window` samples is below the
  channel's learned noise floor, or `identical_samples` values in a row are identical;
* out_of_range: a value outside the configured `[low, high]`, or outside the training
  range widened by `range_margin` of its span;
* rate: ``|dv/dt|`` above the configured `max_rate`, or (`learn_rates`) above the
  training maximum times ``1 + rate_margin``.

Each fault is an episode: one ``firing`` alert when it starts, one ``resolved`` alert
after `clear_samples` good samples in a row (stale: as soon as the channel reports).
Frames are queued as they are assembled and checked in one vectorized pass per stream
at `process` (the pipeline's flush); on clean data that pass allocates a few arrays
and runs no Python loop over samples.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Final

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from monitor.core.alarm import alert_id
from monitor.core.config import SensorsConfig
from monitor.core.types import Alert, FloatArray

__all__ = ["CAUSES", "LIMITS_FILE", "SensorHealth", "SensorLimits", "SensorLimitsError", "learn_limits"]

STALE: Final = "stale"
STUCK: Final = "stuck"
OUT_OF_RANGE: Final = "out_of_range"
RATE: Final = "rate"
CAUSES: Final[tuple[str, ...]] = (STALE, STUCK, OUT_OF_RANGE, RATE)
_FRAME_CAUSES = (STUCK, OUT_OF_RANGE, RATE)  # column order of the per-frame fault array
LIMITS_FILE: Final = "sensor_limits.json"


class SensorLimitsError(ValueError):
    """A sensor_limits.json that cannot be used."""


@dataclass(frozen=True)
class SensorLimits:
    """What training data says a healthy sensor looks like, per channel (raw units).

    `noise_floor`: the smallest standard deviation of `window` consecutive samples seen
    in training, times the config's `noise_floor_fraction` (0: the channel was flat in
    training, the learned stuck check is off for it). `max_flat_run`: the longest run of
    identical values in training. `low`/`high`: the training range; `max_rate`: the
    largest ``|dv/dt|`` in training (units per second).
    """

    channels: list[str]
    window: int
    noise_floor: list[float]
    max_flat_run: list[int]
    low: list[float]
    high: list[float]
    max_rate: list[float]
    format_version: int = 1

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), indent=2, sort_keys=True, allow_nan=False).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes, where: str = LIMITS_FILE) -> SensorLimits:
        try:
            obj = json.loads(data)
        except ValueError as exc:
            raise SensorLimitsError(f"{where}: not JSON: {exc}") from None
        if not isinstance(obj, dict) or obj.get("format_version") != 1:
            raise SensorLimitsError(f"{where}: expected an object with format_version 1")
        channels = obj.get("channels")
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            raise SensorLimitsError(f"{where}: channels must be a list of names")
        window = obj.get("window")
        if isinstance(window, bool) or not isinstance(window, int) or window < 2:
            raise SensorLimitsError(f"{where}: window must be an integer >= 2, got {window!r}")
        lists: dict[str, list[float]] = {}
        for key in ("noise_floor", "max_flat_run", "low", "high", "max_rate"):
            values = obj.get(key)
            if (
                not isinstance(values, list)
                or len(values) != len(channels)
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
            ):
                raise SensorLimitsError(f"{where}: {key} must list one finite number per channel ({len(channels)})")
            lists[key] = [float(v) for v in values]
        return cls(
            channels=list(channels),
            window=window,
            noise_floor=lists["noise_floor"],
            max_flat_run=[int(v) for v in lists["max_flat_run"]],
            low=lists["low"],
            high=lists["high"],
            max_rate=lists["max_rate"],
        )


def _segments(values: FloatArray, fresh: np.ndarray) -> list[FloatArray]:
    """The runs of consecutive fresh rows of `values`."""
    idx = np.flatnonzero(fresh)
    if not len(idx):
        return []
    breaks = np.flatnonzero(np.diff(idx) != 1) + 1
    return [values[part[0] : part[-1] + 1] for part in np.split(idx, breaks)]


def _flat_runs(x: FloatArray, run0: np.ndarray) -> np.ndarray:
    """Per row and column: how many of the previous values in a row equal this one
    (0: it differs from the previous one). `run0` is the count carried in before row 0,
    and row 0 is compared to the carried-in previous row by the caller (`x` starts with it)."""
    n = len(x)
    eq = x[1:] == x[:-1]  # (n-1, C)
    if not eq.any():  # no value repeats its predecessor (noisy data): every count is 0
        return np.zeros(eq.shape, dtype=np.int64)
    idx = np.arange(1, n)[:, None]
    resets = np.where(eq, -1, idx)
    last = np.maximum.accumulate(resets, axis=0)
    return np.where(last >= 0, idx - last, idx + run0[None, :]).astype(np.int64)


def learn_limits(
    segments_of: Sequence[tuple[FloatArray, FloatArray, np.ndarray]],
    channels: Sequence[str],
    cfg: SensorsConfig,
) -> SensorLimits:
    """Limits from training frames: (times (n,), values (n, C), fresh (n,) bool) per stream."""
    c = len(channels)
    w = cfg.stuck_window
    min_std = np.full(c, np.inf)
    flat = np.zeros(c, dtype=np.int64)
    low = np.full(c, np.inf)
    high = np.full(c, -np.inf)
    rate = np.zeros(c)
    for times, values, fresh in segments_of:
        fresh = fresh & np.isfinite(values).all(axis=1)
        for seg_t, seg in zip(_segments(times.reshape(-1, 1), fresh), _segments(values, fresh), strict=True):
            low = np.minimum(low, seg.min(axis=0))
            high = np.maximum(high, seg.max(axis=0))
            if len(seg) >= 2:
                dt = np.diff(seg_t[:, 0])
                rate = np.maximum(rate, (np.abs(np.diff(seg, axis=0)) / dt[:, None]).max(axis=0))
                flat = np.maximum(flat, _flat_runs(seg, np.zeros(c, dtype=np.int64)).max(axis=0) + 1)
            for start in range(0, max(0, len(seg) - w + 1), 65536):  # bounded memory
                part = seg[start : start + 65536 + w - 1]
                if len(part) >= w:
                    std = sliding_window_view(part, w, axis=0).std(axis=-1)
                    min_std = np.minimum(min_std, std.min(axis=0))
    if not np.isfinite(low).all():
        raise ValueError("no fresh training frames to learn sensor limits from")
    floor = np.where(np.isfinite(min_std), min_std * cfg.noise_floor_fraction, 0.0)
    return SensorLimits(
        channels=list(channels),
        window=w,
        noise_floor=floor.tolist(),
        max_flat_run=flat.tolist(),
        low=low.tolist(),
        high=high.tolist(),
        max_rate=rate.tolist(),
    )


@dataclass
class _Channels:
    """The thresholds in force, one entry per channel (inf / 0: check off)."""

    low: FloatArray
    high: FloatArray
    max_rate: FloatArray
    floor: FloatArray  # stuck: std of the window below this (0: off)
    identical: np.ndarray  # stuck: this many identical values in a row (0: off)
    # a stuck window with no change at all masks like a run of identical values: only on a
    # channel that never repeated a value in training (a quantized one does, and a quiet
    # process holds it on one step; there only `identical` values in a row mask)
    flat_masks: np.ndarray


def _thresholds(cfg: SensorsConfig, channels: Sequence[str], limits: SensorLimits | None) -> _Channels:
    c = len(channels)
    low = np.full(c, -np.inf)
    high = np.full(c, np.inf)
    max_rate = np.full(c, np.inf)
    floor = np.zeros(c)
    identical = np.full(c, cfg.identical_samples, dtype=np.int64)
    flat_masks = np.ones(c, dtype=bool)
    if limits is not None and limits.channels == list(channels):
        lo, hi = np.asarray(limits.low), np.asarray(limits.high)
        if cfg.learn_ranges:
            margin = cfg.range_margin * np.maximum(hi - lo, 1e-12)
            low, high = lo - margin, hi + margin
        if cfg.learn_rates:
            learned = np.asarray(limits.max_rate) * (1.0 + cfg.rate_margin)
            max_rate = np.where(learned > 0, learned, np.inf)
        if limits.window == cfg.stuck_window:  # a floor learned over another window length does not apply
            floor = np.asarray(limits.noise_floor, dtype=np.float64)
        # a channel that was flat this long in training is not stuck when it is flat again
        identical = np.where(np.asarray(limits.max_flat_run) >= identical, 0, identical)
        flat_masks = np.asarray(limits.max_flat_run) <= 1
    for i, ch in enumerate(channels):  # configured limits win over learned ones
        if ch in cfg.ranges:
            low[i], high[i] = cfg.ranges[ch]
        if ch in cfg.max_rate:
            max_rate[i] = cfg.max_rate[ch]
    return _Channels(low, high, max_rate, floor, identical, flat_masks)


@dataclass
class _Stream:
    """One stream's check history and open episodes."""

    n: int
    tail: FloatArray  # the last up-to-(history) raw rows, for windows across batches
    tail_t: float = -math.inf  # time of the last row in `tail`
    flat: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    active: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=bool))
    good: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=np.int64))
    started: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    stale: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    stale_started: np.ndarray = field(default_factory=lambda: np.zeros(0))
    seen_last: FloatArray = field(default_factory=lambda: np.zeros(0))  # last_times at the previous tick
    seen_at: FloatArray = field(default_factory=lambda: np.zeros(0))  # `now` when each channel last advanced
    until: FloatArray = field(default_factory=lambda: np.zeros(0))  # masked while data time < this (a held episode)
    # per channel: its open (or last) stuck episode masks the channel (it began as a run of
    # identical values, or `mask_learned`); one that began under the learned noise floor does not
    stuck_masks: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    queue: list[tuple[FloatArray, FloatArray] | None] = field(default_factory=list)  # None: a gap

    @classmethod
    def new(cls, n: int) -> _Stream:
        return cls(
            n=n,
            tail=np.zeros((0, n)),
            flat=np.zeros(n, dtype=np.int64),
            active=np.zeros((n, 3), dtype=bool),
            good=np.zeros((n, 3), dtype=np.int64),
            started=np.zeros((n, 3)),
            stale=np.zeros(n, dtype=bool),
            stale_started=np.zeros(n),
            seen_last=np.full(n, -np.inf),
            seen_at=np.full(n, np.nan),  # NaN: not ticked yet
            until=np.full(n, -np.inf),
            stuck_masks=np.zeros(n, dtype=bool),
        )


class SensorHealth:
    """Sensor checks of every stream of one model's channels. Not thread-safe."""

    def __init__(
        self,
        cfg: SensorsConfig,
        channels: Sequence[str],
        model_version: str,
        period_seconds: float,
        limits: SensorLimits | None = None,
        mask_hold_seconds: float = 0.0,
    ):
        """`mask_hold_seconds`: how long after a fault episode resolves its channel stays
        masked (`masks`): the pipeline passes a window's span, so no window that still holds
        a faulty sample is scored with the channel in."""
        self.cfg = cfg
        self.mask_hold_seconds = float(mask_hold_seconds)
        self.channels = list(channels)
        self.model_version = model_version
        self.limits = limits
        self.th = _thresholds(cfg, channels, limits)
        self.stale_seconds = cfg.stale_seconds if cfg.stale_seconds is not None else 10.0 * period_seconds
        self.history = max(cfg.stuck_window, 2) - 1
        self.streams: dict[str, _Stream] = {}
        self._queued = False
        # (data time, channel, cause column, opened) per stream, of the last `process`:
        # what `masks` replays to know which channels were in fault at each window's time
        self.transitions: dict[str, list[tuple[float, int, int, bool]]] = {}
        # (active, until, stuck_masks) before the last process
        self._before: dict[str, tuple[np.ndarray, FloatArray, np.ndarray]] = {}
        self.masking: set[str] = set()  # streams whose channels may be masked (an open or held episode)
        # (C, 3) which (channel, cause) episodes mask the channel in scoring: stuck as a run
        # of identical values or a stuck window with no change at all (a sensor's signature;
        # per stream and episode, `_Stream.stuck_masks`: column 0 here is only its place), out
        # of range and rate against configured limits (physically impossible values); not the learned
        # checks (noise floor, training range, training rate) unless `mask_learned`: a
        # process fault that drives a channel past what a few hundred training rows showed,
        # or quietens it, is the anomaly itself, and masking the channel hid it (SKAB F1
        # 0.84 -> 0.48; decision 0018, addendum)
        self.maskable = np.ones((len(self.channels), len(_FRAME_CAUSES)), dtype=bool)
        if not cfg.mask_learned:
            self.maskable[:, 1] = [ch in cfg.ranges for ch in self.channels]
            self.maskable[:, 2] = [ch in cfg.max_rate for ch in self.channels]

    @property
    def queued(self) -> bool:
        return self._queued

    def carry_from(self, other: SensorHealth) -> None:
        """Take over `other`'s streams (a model swap with the same channels)."""
        if other.channels == self.channels:
            self.streams = other.streams
            self._queued = other._queued
            self.masking = other.masking

    def _stream(self, stream: str) -> _Stream:
        st = self.streams.get(stream)
        if st is None:
            st = self.streams[stream] = _Stream.new(len(self.channels))
        return st

    # ------------------------------------------------------------------ input

    def queue_row(self, stream: str, timestamp: float, values: FloatArray) -> None:
        """One fresh raw frame, checked at the next `process`."""
        self._stream(stream).queue.append((np.array([timestamp]), np.asarray(values, dtype=np.float64)[None, :]))
        self._queued = True

    def queue_rows(self, stream: str, times: FloatArray, values: FloatArray) -> None:
        """Consecutive fresh raw frames (times (m,), values (m, C))."""
        if len(times):
            self._stream(stream).queue.append((times, values))
            self._queued = True

    def queue_gap(self, stream: str) -> None:
        """A stale frame: windows and rates do not reach across it."""
        st = self.streams.get(stream)
        if st is not None:
            st.queue.append(None)
            self._queued = True

    # ------------------------------------------------------------------ checks

    def process(self) -> list[Alert]:
        """Check every queued frame; the alerts of faults that began or ended."""
        if self.transitions:
            self.transitions = {}
            self._before = {}
        if not self._queued:
            return []
        self._queued = False
        alerts: list[Alert] = []
        for stream, st in self.streams.items():
            if not st.queue:
                continue
            queue, st.queue = st.queue, []
            parts: list[tuple[FloatArray, FloatArray]] = []
            for item in queue:
                if item is None:
                    if parts:
                        self._check(stream, st, parts, alerts)
                        parts = []
                    st.tail = st.tail[:0]
                    st.tail_t = -math.inf
                    st.flat[:] = 0
                else:
                    parts.append(item)
            if parts:
                self._check(stream, st, parts, alerts)
        return alerts

    def _check(self, stream: str, st: _Stream, parts: list[tuple[FloatArray, FloatArray]], out: list[Alert]) -> None:
        if len(parts) == 1:
            ts, x = parts[0]
        else:
            ts = np.concatenate([p[0] for p in parts])
            x = np.concatenate([p[1] for p in parts])
        th = self.th
        m = len(ts)
        k = len(st.tail)
        hist = np.concatenate([st.tail, x]) if k else x
        bad = np.zeros((m, x.shape[1], 3), dtype=bool)
        # out of range
        bad[:, :, 1] = (x < th.low) | (x > th.high)
        # rate: against the previous row (the tail's last one across batches)
        if k or m > 1:
            prev_t = np.concatenate([[st.tail_t], ts[:-1]]) if k else np.concatenate([[np.nan], ts[:-1]])
            prev_x = hist[k - 1 : k - 1 + m] if k else np.vstack([np.full(x.shape[1], np.nan), x[:-1]])
            dt = ts - prev_t
            with np.errstate(invalid="ignore", divide="ignore"):
                rate = np.abs(x - prev_x) / dt[:, None]
            bad[:, :, 2] = rate > th.max_rate  # NaN (no previous row) compares False
        # stuck: the window's std under the noise floor, or a run of identical values
        w = self.history + 1
        flat = None
        if len(hist) >= w and th.floor.any():
            windows = sliding_window_view(hist, w, axis=0)  # windows ending at rows w-1..
            std = windows.std(axis=-1)
            first = max(0, w - 1 - k)  # rows of x with a whole window in hist: x[first:]
            ends = std[len(std) - (m - first) :] if m - first > 0 else std[:0]
            quiet = ends < th.floor
            bad[first:, :, 0] = quiet
            flat = np.zeros(bad.shape[:2], dtype=bool)  # not a learned judgement: no change at all
            if quiet.any():  # exactly equal values (a std of equal floats need not be 0.0)
                r, c = np.nonzero(quiet & th.flat_masks)
                win = windows[len(std) - (m - first) + r, c]
                flat[first + r, c] = win.max(axis=-1) == win.min(axis=-1)
        identical: np.ndarray | None = None
        if th.identical.any():
            runs = _flat_runs(np.concatenate([hist[k - 1 : k], x]) if k else x, st.flat)
            if not k:
                runs = np.vstack([np.zeros((1, x.shape[1]), dtype=np.int64), runs])
            st.flat = runs[-1].copy()
            identical = (runs + 1 >= th.identical) & (th.identical > 0)
            bad[:, :, 0] |= identical
        st.tail = hist[-self.history :] if self.history else hist[:0]
        st.tail_t = float(ts[-1])
        if not st.active.any() and not bad.any():
            return  # the common case: clean data, no open episode
        if flat is not None:  # a window of identical values masks like a run of them
            identical = flat if identical is None else identical | flat
        self._episodes(stream, st, ts, x, bad, out, identical)

    def _episodes(
        self,
        stream: str,
        st: _Stream,
        ts: FloatArray,
        x: FloatArray,
        bad: np.ndarray,
        out: list[Alert],
        identical: np.ndarray | None = None,
    ) -> None:
        clear = self.cfg.clear_samples
        before, until, masked_before = st.active.copy(), st.until.copy(), st.stuck_masks.copy()
        # (row, alert, channel, cause, masks): sorted by row below, so batching changes no
        # order; `masks`: whether the episode masks at that row; alert None: an open stuck
        # episode that starts masking there (its run of identical values is long enough)
        events: list[tuple[int, Alert | None, int, int, bool]] = []
        maskable = self.maskable
        for c, j in zip(*np.nonzero(st.active | bad.any(axis=0)), strict=True):
            col = bad[:, c, j].tolist()
            for i, is_bad in enumerate(col):
                if st.active[c, j]:
                    if is_bad:
                        st.good[c, j] = 0
                        if j == 0 and not st.stuck_masks[c] and identical is not None and identical[i, c]:
                            st.stuck_masks[c] = True  # begun under the noise floor, now a sensor's signature
                            events.append((i, None, c, j, True))
                        continue
                    st.good[c, j] += 1
                    if st.good[c, j] >= clear:
                        st.active[c, j] = False
                        alert = self._alert(stream, c, _FRAME_CAUSES[j], "resolved", st.started[c, j], ts[i], x[i, c])
                        events.append((i, alert, c, j, bool(st.stuck_masks[c] if j == 0 else maskable[c, j])))
                elif is_bad:
                    if j == 0:  # stuck: masks if it began as identical values (or learned ones mask)
                        st.stuck_masks[c] = self.cfg.mask_learned or (identical is not None and bool(identical[i, c]))
                    st.active[c, j] = True
                    st.good[c, j] = 0
                    st.started[c, j] = ts[i]
                    alert = self._alert(stream, c, _FRAME_CAUSES[j], "firing", ts[i], None, x[i, c])
                    events.append((i, alert, c, j, bool(st.stuck_masks[c] if j == 0 else maskable[c, j])))
        events.sort(key=lambda e: e[0])
        out.extend(e[1] for e in events if e[1] is not None)
        if events:
            if stream not in self._before:
                self._before[stream] = (before, until, masked_before)
            moves = self.transitions.setdefault(stream, [])
            masks_any = False
            for i, a, c, j, masks in events:
                if not masks:
                    continue  # alerted, not masked
                masks_any = True
                if a is None:
                    moves.append((float(ts[i]), c, j, True))
                elif a.state == "firing":
                    moves.append((a.started_at, c, j, True))
                else:
                    t_end = float(a.ended_at if a.ended_at is not None else a.started_at)
                    moves.append((t_end, c, j, False))
                    st.until[c] = max(float(st.until[c]), t_end + self.mask_hold_seconds)
            if masks_any:
                self.masking.add(stream)

    def tick(self, now: float, last_times: Mapping[str, Sequence[float]]) -> list[Alert]:
        """The stale check at `now` (the caller's clock): `last_times` holds each stream's
        newest reading time per channel (-inf: never reported).

        A channel is stale when its newest reading time has not advanced for more than
        `stale_seconds` of the caller's clock: a dead-man check on arrival, so a backlog
        of old readings (a broker delivering a persistent session) is not stale while it
        flows, and clock skew between devices and the daemon does not matter. Call it at
        a steady rate (the daemon: once a second); its resolution is the tick interval.
        """
        out: list[Alert] = []
        limit = self.stale_seconds
        if not limit > 0:
            return out
        for stream, last in last_times.items():
            st = self._stream(stream)
            t = np.asarray(last, dtype=np.float64)
            advanced = (t != st.seen_last) | np.isnan(st.seen_at)
            st.seen_at = np.where(advanced, now, st.seen_at)
            st.seen_last = t
            stale = now - st.seen_at > limit
            changed = np.flatnonzero(stale != st.stale)
            for c in changed.tolist():
                if stale[c]:
                    started = float(st.seen_at[c])  # the last arrival, on the caller's clock
                    st.stale_started[c] = started
                    out.append(self._alert(stream, c, STALE, "firing", started, None, None))
                else:
                    out.append(self._alert(stream, c, STALE, "resolved", float(st.stale_started[c]), now, None))
            st.stale = stale
        return out

    def masks(self, stream: str, times: FloatArray) -> np.ndarray | None:
        """Which channels of `stream` to mask at each of `times` (ascending data times of
        frames checked by the last `process`): bool (len(times), C), or None for none.

        A channel is masked from the frame its frame-fault episode (stuck, out of range,
        rate) fired at until `mask_hold_seconds` after the frame that resolved it. Stale is
        left out: a stale channel's frames are not scored anyway, and stale depends on the
        caller's clock, which replay has not. The answer depends only on data times, so
        batch boundaries change no mask."""
        st = self.streams.get(stream)
        if st is None or stream not in self.masking or not len(times):
            return None
        moves = self.transitions.get(stream, [])
        active, until, masked = self._before.get(stream, (st.active, st.until, st.stuck_masks))
        maskable = self.maskable.copy()
        maskable[:, 0] = masked
        active, until = active & maskable, until.copy()
        t_all = np.asarray(times, dtype=np.float64)
        if not moves and not active.any() and not (until > t_all[0]).any():
            self.masking.discard(stream)  # nothing open, every hold over: off the list
            return None
        hold = self.mask_hold_seconds
        out = np.zeros((len(t_all), len(self.channels)), dtype=bool)
        k = 0
        for i, t in enumerate(t_all.tolist()):
            while k < len(moves) and moves[k][0] <= t:
                t_move, c, j, opened = moves[k]
                active[c, j] = opened
                if not opened:
                    until[c] = max(float(until[c]), t_move + hold)
                k += 1
            out[i] = active.any(axis=1) | (t < until)
        return out if out.any() else None

    def faulty(self, stream: str) -> list[str]:
        """The channels of `stream` with an open sensor fault episode."""
        st = self.streams.get(stream)
        if st is None:
            return []
        mask = st.active.any(axis=1) | st.stale
        return [self.channels[i] for i in np.flatnonzero(mask).tolist()]

    def _alert(
        self,
        stream: str,
        c: int,
        cause: str,
        state: str,
        started: float,
        ended: float | None,
        value: float | None,
    ) -> Alert:
        channel = self.channels[c]
        return Alert(
            alert_id=alert_id(f"{stream}|{channel}|{cause}", float(started), self.model_version),
            stream=stream,
            state=state,
            started_at=float(started),
            ended_at=None if ended is None else float(ended),
            peak_score=0.0,
            current_score=0.0,
            threshold=0.0,
            model_version=self.model_version,
            kind="sensor",
            cause=cause,
            channel=channel,
            value=None if value is None else float(value),
        )
