"""The alarm state machine: scores in, state changes out, with explicit time.

Per stream:

* ``ok`` -> ``firing`` when at least `k` of the last `n` scores are >= 1.0 (the
  threshold) and at least `cooldown_seconds` have passed since the last resolve.
* ``firing`` -> ``ok`` (a ``resolved`` alert) after `resolve_m` consecutive scores
  below `resolve_below`. With ``end_at: last_hot`` (the default) the resolved alert's
  `ended_at` is the first window of that quiet run, so the tail of `resolve_m` windows
  that confirms the end is not counted as alerting (a short hot stretch alerts its own
  windows, not resolve_m more); ``end_at: resolve`` ends it at the resolving window.

Time is the data time of the scored window, passed in; the machine never reads a
clock, so a replay or backtest takes exactly the decisions the daemon took live.
Reading state (`firing`) never changes it.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from monitor.core.config import AlarmConfig
from monitor.core.types import Alert, ChannelContribution, FloatArray, Floats, ScoreBatch


@dataclass
class _Episode:
    alert_id: str
    started_at: float
    peak_score: float
    peak_channels: list[ChannelContribution]
    cold_since: float = float("nan")  # first window of the current run below resolve_below


@dataclass
class AlarmState:
    recent: deque[bool] = field(default_factory=deque)
    above: int = 0  # count of True in `recent`
    below_run: int = 0
    episode: _Episode | None = None
    last_resolved_at: float = float("-inf")


def alert_id(stream: str, started_at: float, model_version: str) -> str:
    """Deterministic id: the same feed and model give the same ids on every replay."""
    key = f"{stream}|{started_at:.6f}|{model_version}".encode()
    return hashlib.sha256(key).hexdigest()[:16]


class AlarmMachine:
    """Alarm state for many streams; `update` returns an Alert on a state change."""

    def __init__(
        self,
        cfg: AlarmConfig,
        threshold: float,
        model_version: str,
        channels: list[str],
        top_n: int = 3,
        *,
        threshold_for: Callable[[str], float] | None = None,
    ):
        self.cfg = cfg
        self.threshold = threshold
        # a stream's own threshold for its alerts (`Pipeline.threshold_for`); None: `threshold` for all
        self.threshold_for = threshold_for
        self.model_version = model_version
        self.channels = list(channels)
        self.top_n = top_n
        self._armed: set[str] = set()  # not firing, k of n hot, held back by the cooldown
        self.states: dict[str, AlarmState] = {}
        self.emitted_at: list[float] = []  # data time of the window behind each alert of the last update_batch

    @property
    def states(self) -> dict[str, AlarmState]:
        return self._states

    @states.setter
    def states(self, states: dict[str, AlarmState]) -> None:
        """Adopt another machine's state (a model swap keeps open episodes)."""
        self._states = states
        self._firing = {s for s, st in states.items() if st.episode}
        self._armed = {s for s, st in states.items() if not st.episode and st.above >= self.cfg.k}

    def firing(self, stream: str) -> bool:
        return stream in self._firing

    def firing_streams(self) -> list[str]:
        return sorted(self._firing)

    def idle(self) -> bool:
        """No stream is firing or armed and no stream's k-of-n memory holds a hot score: a
        batch whose scores are all below the threshold then changes nothing that can ever
        matter (its cold flags only push cold flags out of the memories; a memory of cold
        flags counts like an empty one), so a caller may skip `update_batch` for it. One
        pass over the streams: ask after a batch that was not skipped, not per batch."""
        return not self._firing and not self._armed and not any(st.above for st in self._states.values())

    def update_batch(self, batch: ScoreBatch) -> list[Alert]:
        """`update` for every window of a batch, in order; returns the state changes.

        Per stream, each stretch of windows that cannot change its state is folded in
        one step: for a stream that is not firing, every window before the first one at
        which k of the last n scores are hot and the cooldown has passed (that window
        fires); for a firing stream, every window up to the one that resolves it (peak,
        k-of-n memory and the run below `resolve_below` in array operations). Streams
        are independent, so alerts come out grouped by stream. The work is per run of a
        stream's rows (`batch.runs`) and per state change, not per window.
        """
        runs = batch.runs
        hot = batch.score >= 1.0
        emitted: list[float] = []
        self.emitted_at = emitted
        if not self._firing and not self._armed and not hot.any():
            counts: dict[str, int] = {}
            for stream, start, stop in runs:
                counts[stream] = counts.get(stream, 0) + stop - start
            self._fold_cold(counts)
            return []
        groups: dict[str, list[int]] = {}
        for stream, start, stop in runs:
            spans = groups.get(stream)
            if spans is None:
                groups[stream] = [start, stop]
            else:
                spans += (start, stop)
        alerts: list[Alert] = []
        scores = batch.score
        times = np.asarray(batch.times, dtype=np.float64)
        for stream, spans in groups.items():
            if len(spans) == 2:
                idx = np.arange(spans[0], spans[1])
            else:
                idx = np.concatenate([np.arange(spans[i], spans[i + 1]) for i in range(0, len(spans), 2)])
            if stream not in self._firing and stream not in self._armed and not hot[idx].any():
                self._fold_cold({stream: len(idx)})
                continue
            pos, end = 0, len(idx)
            while pos < end:
                if stream in self._firing:
                    done, alert = self._fold_firing(stream, idx[pos:], batch, times)
                    pos += done
                    if alert is not None:
                        emitted.append(float(times[int(idx[pos - 1])]))
                else:
                    pos += self._first_possible_change(stream, idx[pos:], hot, times)
                    if pos >= end:
                        break
                    i = int(idx[pos])  # k of n hot and the cooldown over: this window fires
                    alert = self.update(
                        stream,
                        float(times[i]),
                        float(scores[i]),
                        batch.channel_scores[i],
                        batch.observed[i],
                        batch.reconstructed[i],
                    )
                    pos += 1
                    if alert is not None:
                        emitted.append(float(times[i]))
                if alert is not None:
                    alerts.append(alert)
        return alerts

    def _fold_firing(
        self, stream: str, idx: NDArray[np.integer[Any]], batch: ScoreBatch, times: FloatArray
    ) -> tuple[int, Alert | None]:
        """For a firing stream: the windows `idx` up to and including the one that resolves
        the episode (or all of them), in one step. Returns (windows consumed, the
        resolved alert or None); the same state as `update` window by window: the k-of-n
        memory, the peak (the first window with the highest score, and its channels), the
        run of scores below `resolve_below`."""
        state = self._states[stream]
        ep = state.episode
        assert ep is not None  # only called for a firing stream
        s = batch.score[idx]
        if np.isnan(s).any():  # NaN compares false everywhere: window by window keeps it exact
            i = int(idx[0])
            return 1, self.update(
                stream,
                float(times[i]),
                float(batch.score[i]),
                batch.channel_scores[i],
                batch.observed[i],
                batch.reconstructed[i],
            )
        m = len(s)
        below = s < self.cfg.resolve_below
        positions = np.arange(m)
        last_reset = np.maximum.accumulate(np.where(below, -1, positions))
        run = np.where(last_reset >= 0, positions - last_reset, positions + 1 + state.below_run)
        hits = np.flatnonzero(run >= self.cfg.resolve_m)
        stop = int(hits[0]) + 1 if hits.size else m
        j = int(np.argmax(s[:stop]))
        if s[j] > ep.peak_score:
            row = int(idx[j])
            ep.peak_score = float(s[j])
            ep.peak_channels = self.top_channels(
                batch.channel_scores[row], batch.observed[row], batch.reconstructed[row]
            )
        self._armed.discard(stream)
        k = stop - 1  # the last window folded: its run below resolve_below started at `begin`
        if below[k]:
            begin = int(last_reset[k]) + 1
            if begin > 0 or state.below_run == 0:
                ep.cold_since = float(times[int(idx[begin])])
        if not hits.size:
            flags = (s >= 1.0).tolist()
            state.recent.extend(flags[-self.cfg.n :])
            state.above = sum(state.recent)
            state.below_run = int(run[-1])
            return m, None
        last = int(idx[stop - 1])
        return stop, self._resolve(stream, state, float(times[last]), float(batch.score[last]))

    def _state(self, stream: str) -> AlarmState:
        state = self._states.get(stream)
        if state is None:
            state = self._states[stream] = AlarmState(recent=deque(maxlen=self.cfg.n))
        return state

    def _fold_cold(self, counts: dict[str, int]) -> None:
        """Add runs of cold scores (they cannot fire anything) to streams that are not firing."""
        n = self.cfg.n
        for stream, count in counts.items():
            state = self._state(stream)
            state.recent.extend([False] * min(count, n))
            state.above = sum(state.recent)

    def _first_possible_change(
        self, stream: str, idx: NDArray[np.integer[Any]], hot: NDArray[np.bool_], times: FloatArray
    ) -> int:
        """For a stream that is not firing: fold the windows that cannot fire into its
        memory and return the position (in `idx`) of the first one that might."""
        state = self._state(stream)
        flags = hot[idx]
        k, n = self.cfg.k, self.cfg.n
        history = np.fromiter(state.recent, dtype=bool, count=len(state.recent))
        seq = np.concatenate([history, flags]).astype(np.int32)
        csum = np.concatenate([[0], np.cumsum(seq)])
        ends = np.arange(len(history) + 1, len(seq) + 1)  # window positions, 1-based ends in seq
        rolling = csum[ends] - csum[np.maximum(ends - n, 0)]
        candidates = np.flatnonzero(rolling >= k)
        if candidates.size and self.cfg.cooldown_seconds > 0:
            t = times[idx][candidates]
            candidates = candidates[t - state.last_resolved_at >= self.cfg.cooldown_seconds]
        first = int(candidates[0]) if candidates.size else len(idx)
        if first:
            state.recent.extend(flags[:first].tolist()[-n:])
            state.above = sum(state.recent)
            if state.above >= k:
                self._armed.add(stream)
            else:
                self._armed.discard(stream)
        return first

    def top_channels(
        self, channel_scores: Floats, observed: FloatArray, reconstructed: Floats
    ) -> list[ChannelContribution]:
        order = np.argsort(-channel_scores, kind="stable")[: self.top_n]
        return [
            {
                "channel": self.channels[i],
                "score": float(channel_scores[i]),
                "observed": float(observed[i]),
                "reconstructed": float(reconstructed[i]),
            }
            for i in order
        ]

    def update(
        self,
        stream: str,
        timestamp: float,
        score: float,
        channel_scores: Floats,
        observed: FloatArray,
        reconstructed: Floats,
    ) -> Alert | None:
        alert = self._update(stream, timestamp, score, channel_scores, observed, reconstructed)
        state = self._states[stream]
        if state.episode is None and state.above >= self.cfg.k:
            self._armed.add(stream)
        else:
            self._armed.discard(stream)
        return alert

    def _update(
        self,
        stream: str,
        timestamp: float,
        score: float,
        channel_scores: Floats,
        observed: FloatArray,
        reconstructed: Floats,
    ) -> Alert | None:
        state = self._state(stream)
        hot = score >= 1.0
        if len(state.recent) == state.recent.maxlen and state.recent[0]:
            state.above -= 1
        state.recent.append(hot)
        state.above += hot
        ep = state.episode
        if ep is None:
            if state.above >= self.cfg.k and timestamp - state.last_resolved_at >= self.cfg.cooldown_seconds:
                top = self.top_channels(channel_scores, observed, reconstructed)
                state.episode = _Episode(alert_id(stream, timestamp, self.model_version), timestamp, score, top)
                state.below_run = 0
                self._firing.add(stream)
                return self._alert(stream, "firing", state.episode, None, score, top)
            return None
        if score > ep.peak_score:
            ep.peak_score = score
            ep.peak_channels = self.top_channels(channel_scores, observed, reconstructed)
        if score < self.cfg.resolve_below:
            if not state.below_run:
                ep.cold_since = timestamp
            state.below_run += 1
        else:
            state.below_run = 0
        if state.below_run >= self.cfg.resolve_m:
            return self._resolve(stream, state, timestamp, score)
        return None

    def _resolve(self, stream: str, state: AlarmState, timestamp: float, score: float) -> Alert:
        """End the stream's episode at `timestamp` (the resolving window's score `score`)."""
        ep = state.episode
        assert ep is not None  # only called for a firing stream
        state.episode = None
        self._firing.discard(stream)
        state.last_resolved_at = timestamp
        state.recent.clear()
        state.above = 0
        state.below_run = 0
        # last_hot: the episode ends where its closing quiet run began (the resolve_m
        # windows that confirm the end are not alerting rows); resolve: at this window
        ended = ep.cold_since if self.cfg.end_at == "last_hot" else timestamp
        return self._alert(stream, "resolved", ep, ended, score, ep.peak_channels)

    def _alert(
        self,
        stream: str,
        state: str,
        ep: _Episode,
        ended_at: float | None,
        score: float,
        top: list[ChannelContribution],
    ) -> Alert:
        return Alert(
            alert_id=ep.alert_id,
            stream=stream,
            state=state,
            started_at=ep.started_at,
            ended_at=ended_at,
            peak_score=ep.peak_score,
            current_score=score,
            threshold=self.threshold if self.threshold_for is None else self.threshold_for(stream),
            model_version=self.model_version,
            top_channels=top,
        )

    def forget(self, stream: str) -> None:
        self._states.pop(stream, None)
        self._firing.discard(stream)
        self._armed.discard(stream)
