"""Online per-stream calibration: raw reconstruction error -> a score in threshold units.

The stage between the scorer (raw errors) and the alarm (decisions); pure, time passed in.

The rule, per stream (``x`` = the natural log of a window's raw error):

* The stream's windows are cut into chunks of `chunk_windows`, counted from its first
  window. A window is scored with the statistics as they stood at the start of its chunk,
  so a window's score depends on the stream's sequence of errors only, never on where a
  batch ended: live, replay and backtest agree by construction.
* Long-term distribution: exponentially decayed sums of ``x`` and ``x**2`` over accepted
  chunks (decay ``exp(-chunk/history_windows)`` per chunk) give a mean ``mu`` and a spread
  ``sigma`` (floored at `min_sigma`). Errors are close to log-normal (a window error is a
  mean of squares), so the log makes the tail test a z test.
* Score. Before the stream has `min_windows` accepted windows it is scored against the
  prior, the offline threshold for its key (the pipeline's seam): ``raw / prior``, with
  `warmup` "blend" (default) mixed with its own estimate once a chunk is learnt:
  ``(1 - w) raw / prior + w own`` with ``w = n / min_windows`` for n learnt windows and
  ``own`` the online score below with a normal tail (a stream shorter than the warm-up is
  not left on a prior fitted on a few held-out windows). After that, online:
  ``max(0, (x - mu) / sigma) / z_n`` with ``z = Phi^-1(1 - target_rate)`` and
  ``z_n = z * (1 + chunk_windows / n)`` for n learnt windows (a small-sample margin), so
  1.0 means a tail probability of `target_rate` under the stream's own distribution, for
  every stream whatever its scale (the comparability promise). This is the anomaly
  likelihood of the strongest streaming detectors with a one-window short-term mean; the
  k-of-n alarm does the short-term smoothing.
* Void windows (raw error 0: every channel masked, `masking.py`) score 0 and are not
  learnt: they count towards their chunk's length but not its statistics.
* Chunk gating (robustness without a per-window loop): a completed chunk whose mean
  ``x`` is `regime_z` sigmas off ``mu`` (either way), or whose variance is `regime_var_ratio`
  times ``sigma**2``, is *disturbed* and is not learned. Before the stream is online every
  chunk is learned (as offline calibration, the first stretch is taken as normal: a prior
  that a feed exceeds all the time must not keep it from learning). Disturbed chunks in a
  row that span `rebaseline_after_seconds` of data time make one `RegimeChange`; the
  stream's distribution is then replaced by the disturbed stretch's own (re-baseline),
  and its scores fall back, so the alarm resolves instead of firing forever.
* Input re-baseline (`rebaseline_scaler`, input_baseline.py): at that regime change, when
  the stream's inputs moved (per channel mean or spread of the disturbed stretch against
  the learnt baseline), its scaler is re-estimated from the stretch instead and its later
  windows are re-standardized (`overrides`; rows of this batch after the change are scored
  again through the `rescore` hook); the error distribution is then *kept*: the errors
  come back to their old level, and so does the sensitivity.
* Budget (`alarm.budget`, episodes per stream per week): a chunk that holds a window
  scoring >= 1.0 after a chunk that held none is an *onset*. Onsets are counted with a
  one-week exponential memory (data time); an onset while the count is over budget
  multiplies the stream's z by 1.25 (at most 4x); the multiplier relaxes back to 1 with a
  one-week time constant. Onsets bound episodes from above only roughly: the k-of-n rule
  fires on fewer of them (k > 1 needs k hot windows within n), and a chunk can hold
  two short episodes when `resolve_m` is smaller than a chunk.

Cost: per scoring batch a handful of numpy operations over all rows, plus a Python step
per (run of a stream, chunk) segment, never per window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import repeat
from operator import add, mul
from statistics import NormalDist
from typing import Any

import numpy as np

from monitor.core.calib_budget import AlertBudget
from monitor.core.calib_regime import RegimeDetection
from monitor.core.calib_stream import (
    _DISTURBED,
    _FIELDS,
    _LEARNT,
    _LEVELS,
    _LOG_MAX,
    _NT,
    _SCALED,
    _V1_FIELDS,
    _X_SCALE,
    BUDGET_MAX,
    STATE_VERSION,
    TAIL_LEVELS,
    TAIL_MEMORY,
    IntArray,
    PriorLookup,
    RegimeChange,
    Rescore,
    _exp,
    _log,
    _Stream,
    _tail_of,
)
from monitor.core.config import OnlineCalibrationConfig
from monitor.core.input_baseline import StreamInputs
from monitor.core.types import FloatArray, Floats

__all__ = [
    "BUDGET_MAX",
    "STATE_VERSION",
    "OnlineCalibrator",
    "PriorLookup",
    "RegimeChange",
    "Rescore",
]


class OnlineCalibrator(RegimeDetection, AlertBudget):
    """Per-stream calibration of one group's raw errors; not thread-safe (the pipeline's thread)."""

    def __init__(
        self,
        cfg: OnlineCalibrationConfig,
        prior: PriorLookup,
        period_seconds: float,
        budget: float | None = None,
        channels: int | None = None,
    ):
        self.cfg = cfg
        self.prior = prior
        self.budget = budget
        self.z = NormalDist().inv_cdf(1.0 - cfg.target_rate)
        self.blend_warmup = cfg.warmup == "blend"
        self.chunk = cfg.chunk_windows
        self.decay = math.exp(-cfg.chunk_windows / cfg.history_windows)
        self.tail_decay = math.exp(-cfg.chunk_windows / (TAIL_MEMORY * cfg.history_windows))
        after = cfg.rebaseline_after_seconds
        self.after = after if after is not None else cfg.rebaseline_after_periods * period_seconds
        self.streams: dict[str, _Stream] = {}
        self.events: list[RegimeChange] = []  # regime changes since the caller last drained them
        self.regime_changes = 0  # total, for the counter metric
        # input re-baseline: needs the inputs (`calibrate(inputs=...)`) and regime detection
        self.inputs_on = cfg.enabled and cfg.regime and cfg.rebaseline_scaler
        self.overrides: dict[str, StreamInputs] = {}  # streams whose scaler is re-baselined
        self.trials: set[str] = set()  # streams with a new scaler on trial (input_baseline.py)
        self.channels = channels  # input channels (checked on restore; None: as the state says)

    # ------------------------------------------------------------------ scoring

    def _stream(self, key: str) -> _Stream:
        st = self.streams.get(key)
        if st is None:
            st = self.streams[key] = _Stream(float(self.prior(key)))
        return st

    def calibrate(
        self,
        raw: Floats,
        runs: list[tuple[str, int, int]],
        times: Sequence[float] | FloatArray,
        inputs: FloatArray | None = None,
        rescore: Rescore | None = None,
    ) -> Floats:
        """Scores (threshold units) of a batch's raw errors; `runs` as `ScoreBatch.runs`
        (each stream's rows in time order). Learns from them; RegimeChanges go to `events`.
        `inputs` (rows x channels): each window's last frame, push-time standardized, in
        fixed point (`input_baseline.fixed_point`), for the input re-baseline (None: none);
        `rescore`: the raw errors of rows of a stream whose scaler was re-baselined at an
        earlier row of this batch (None: not rescored)."""
        n = len(raw)
        if not n:
            return np.zeros(0)
        if not self.cfg.enabled:
            return self._prior_only(raw, runs)
        raw64: FloatArray = np.asarray(raw, dtype=np.float64)
        void = raw64 <= 0.0  # a window with every channel masked: nothing to judge (masking.py)
        has_void = bool(void.any())
        x = np.log(np.where(void, 1.0, raw64)) if has_void else np.log(raw64)
        if np.isnan(x).any():
            x = np.where(np.isnan(x), _LOG_MAX, x)
        # 1. segments: the pieces of each run that lie in one chunk of its stream
        #    (stream, first row, rows, position in its chunk, completes the chunk)
        chunk = self.chunk
        streams = self.streams
        segs: list[tuple[_Stream, int, int, int, bool]] = []
        for key, start, stop in runs:
            st = streams.get(key) or self._stream(key)
            pos = st.pos
            if pos + stop - start < chunk:  # the common case: no chunk completes
                segs.append((st, start, stop - start, pos, False))
                st.pos = pos + stop - start
                continue
            a = start
            while a < stop:
                take = min(chunk - pos, stop - a)
                end = pos + take == chunk
                segs.append((st, a, take, pos, end))
                a += take
                pos = 0 if end else pos + take
            st.pos = pos
        # 2. each segment's sums, in fixed point: integer-valued float64 sums below 2**53
        #    are exact, so a chunk's sums do not depend on which batches cut it (live
        #    must equal replay; float addition is not associative)
        xq = np.rint(x * _X_SCALE)
        starts: IntArray | None = None
        if len(segs) > 1:
            starts = np.fromiter((seg[1] for seg in segs), dtype=np.intp, count=len(segs))
        voids: list[int] | None = None  # per segment: its void windows (None: there are none)
        if has_void:  # a void window is not learnt (never as log(0)), and scores 0
            xq[void] = 0.0
            x[void] = -1e300  # scores 0 online, and counts in no tail level
            vi = void.astype(np.float64)
            voids = [int(vi.sum())] if starts is None else np.add.reduceat(vi, starts).astype(int).tolist()
        if starts is None:
            s1, s2 = [float(xq.sum())], [float(xq @ xq)]
        else:
            s1 = np.add.reduceat(xq, starts).tolist()
            s2 = np.add.reduceat(xq * xq, starts).tolist()
        u1: list[Any] | None = None  # per segment: its channels' fixed-point input sums
        u2: list[Any] = []  # ... of squares (one channel: floats, not lists of one)
        one = False
        trial_x: FloatArray | None = None  # rows' log errors under their stream's scaler on trial
        if inputs is not None and self.inputs_on and rescore is not None:
            uq = inputs
            one = uq.shape[1] == 1
            if one:
                uq = uq[:, 0]
            if starts is None:  # ufuncs directly: ndarray.sum and einsum cost more on small batches
                u1, u2 = [np.add.reduce(uq, axis=0).tolist()], [np.add.reduce(uq * uq, axis=0).tolist()]
            else:
                u1, u2 = np.add.reduceat(uq, starts, axis=0).tolist(), np.add.reduceat(uq * uq, starts, axis=0).tolist()
        # 3. per segment in order: the parameters it is scored with, then learn from it
        online: list[bool] = []
        mu: list[float] = []
        zsig: list[float] = []  # online: z sigma; prior: the prior
        isig: list[float] = []  # 1 / sigma of the tail counts; 0: not counted (not online yet:
        # the first chunks' moments are rough, and every later window "exceeds" them)
        outcome: list[int] = []  # at a chunk's end: _LEARNT, _DISTURBED or _REBASED
        blend: dict[int, tuple[float, float]] | None = None  # warm-up: segment -> (weight, 1 / (z sigma))
        if self.trials and u1 is not None:
            trial_x = self._trial_errors(n, segs, rescore)
        # each segment's first and last window time as Python floats, in one gather (a
        # numpy scalar per segment costs more); the same values as float(times[i])
        firsts: list[float] | None = None
        lasts: list[float] | None = None
        if starts is not None and isinstance(times, np.ndarray) and times.dtype == np.float64 and times.ndim == 1:
            ends = starts + np.fromiter((seg[2] for seg in segs), dtype=np.intp, count=len(segs)) - 1
            firsts, lasts = times[starts].tolist(), times[ends].tolist()
        z0 = self.z
        blend_warmup = self.blend_warmup
        for j, (st, a, m, pos, end) in enumerate(segs):
            on = st.online
            online.append(on)
            if on:
                mu.append(st.mu)
                zsig.append(z0 * (1.0 + chunk / max(st.n_base, 1.0)) * st.sigma)  # self._z(st) * sigma
                isig.append(1.0 / st.sigma)
            else:
                if st.s0 > 0.0 and blend_warmup:
                    if blend is None:
                        blend = {}
                    blend[j] = (min(st.n_base / self.cfg.min_windows, 1.0), 1.0 / (self._z(st) * st.sigma))
                mu.append(st.mu)
                zsig.append(st.prior)
                isig.append(0.0)
            if pos == 0:
                st.p_first = float(times[a]) if firsts is None else firsts[j]
            st.p0 += m if voids is None else m - voids[j]
            st.p1 += s1[j]
            st.p2 += s2[j]
            if u1 is not None:
                inp = st.inp
                if inp is None:
                    inp = st.inp = StreamInputs(1 if one else len(u1[j]))
                if one:  # StreamInputs.add, inlined (once per segment)
                    inp.p1[0] += u1[j]
                    inp.p2[0] += u2[j]
                else:
                    inp.add(u1[j], u2[j])
                if inp.pending is not None and trial_x is not None:  # the trial chunk, under the new scaler
                    self._trial_sums(inp.pending, trial_x[a : a + m])
            t_end = (float(times[a + m - 1]) if lasts is None else lasts[j]) if end else 0.0
            done = self._complete(st, t_end) if end else _LEARNT
            outcome.append(done)
            if done == _SCALED and rescore is not None:
                raw64 = self._rescore(st, j, segs, rescore, raw, raw64, x, xq, s1, s2)
            if end and st.inp is not None and st.inp.pending is not None:  # a trial starts here
                if trial_x is None:
                    trial_x = np.full(n, np.nan)
                self._later_trial_errors(st, j, segs, rescore, trial_x)
        # segment lengths as an array and each row's mu, once for the three steps below
        # (np.repeat converts a list argument on every call; the values are the same)
        lengths = np.fromiter((seg[2] for seg in segs), dtype=np.intp, count=len(segs))
        mu_rows = np.repeat(mu, lengths) if len(segs) > 1 else None
        inv = self._tails(x, segs, starts, lengths, online, mu, zsig, isig, outcome, voids, mu_rows)
        score = self._scores(x, raw64, lengths, online, mu, inv, mu_rows)
        if blend is not None:
            score = self._blend(score, x, raw64, lengths, mu, inv, blend, mu_rows)
        if self.budget is not None:
            score = self._apply_budget(score, segs, times)
        return score

    def _trial_errors(
        self, n: int, segs: list[tuple[_Stream, int, int, int, bool]], rescore: Rescore | None
    ) -> FloatArray:
        """Log errors of this batch's rows of the streams with a scaler on trial at its
        start, under that scaler (NaN elsewhere: filled when a trial starts mid-batch)."""
        out: FloatArray = np.full(n, np.nan)
        assert rescore is not None
        for key in self.trials:
            st = self.streams.get(key)
            if st is None:
                continue
            rows = [np.arange(a, a + m, dtype=np.intp) for s, a, m, _, _ in segs if s is st]
            if rows:
                idx = np.concatenate(rows)
                out[idx] = _log(np.asarray(rescore(key, idx, True), dtype=np.float64))
        return out

    def _later_trial_errors(
        self,
        st: _Stream,
        j: int,
        segs: list[tuple[_Stream, int, int, int, bool]],
        rescore: Rescore | None,
        trial_x: FloatArray,
    ) -> None:
        """A trial started at segment `j`: `st`'s later rows' log errors under it."""
        later = [np.arange(s[1], s[1] + s[2], dtype=np.intp) for s in segs[j + 1 :] if s[0] is st]
        if later and rescore is not None:
            idx = np.concatenate(later)
            if np.isnan(trial_x[idx]).any():
                trial_x[idx] = _log(np.asarray(rescore(self._key(st), idx, True), dtype=np.float64))

    @staticmethod
    def _trial_sums(pending: list[float], xt: FloatArray) -> None:
        """Add a trial segment's log errors to the trial's sums (fixed point: exact)."""
        q = np.rint(xt * _X_SCALE)
        pending[10] += len(q)
        pending[11] += float(q.sum())
        pending[12] += float(q @ q)

    def _rescore(
        self,
        st: _Stream,
        j: int,
        segs: list[tuple[_Stream, int, int, int, bool]],
        rescore: Rescore,
        raw: Floats,
        raw64: FloatArray,
        x: FloatArray,
        xq: FloatArray,
        s1: list[float],
        s2: list[float],
    ) -> FloatArray:
        """`st`'s scaler was re-baselined at segment `j`: its later rows of this batch get
        their errors from `rescore` (the new scaler), and their segments' sums again."""
        later = [k for k in range(j + 1, len(segs)) if segs[k][0] is st]
        if not later:
            return raw64
        rows = np.concatenate([np.arange(segs[k][1], segs[k][1] + segs[k][2], dtype=np.intp) for k in later])
        new = np.asarray(rescore(self._key(st), rows, False), dtype=np.float64)
        if raw64 is raw:  # float64 raw came in without a copy: the caller's array stays
            raw64 = raw64.copy()
        raw64[rows] = new
        xr = np.log(np.maximum(new, 1e-300))
        x[rows] = np.where(np.isnan(xr), _LOG_MAX, xr)
        xq[rows] = np.rint(x[rows] * _X_SCALE)
        void = new == 0.0  # as in `calibrate`: not learnt, scores 0 (rows void before stay void:
        if void.any():  # the masks do not change with the scaler)
            xq[rows[void]] = 0.0
            x[rows[void]] = -1e300
        for k in later:
            a, m = segs[k][1], segs[k][2]
            piece = xq[a : a + m]
            s1[k], s2[k] = float(piece.sum()), float(piece @ piece)
        return raw64

    def _tails(
        self,
        x: FloatArray,
        segs: list[tuple[_Stream, int, int, int, bool]],
        starts: IntArray | None,
        lengths: IntArray,
        online: list[bool],
        mu: list[float],
        zsig: list[float],
        isig: list[float],
        outcome: list[int],
        voids: list[int] | None = None,
        mu_rows: FloatArray | None = None,
    ) -> list[float]:
        """Each segment's ``1 / (z sigma tail)`` (online) or ``1 / prior``, with the tail as
        it stood at the start of its chunk; counts the segments' windows above each tail
        level (with their chunk's mu and sigma; only once online) and folds a learnt
        chunk's counts in. A disturbed chunk's counts are held back: the next learnt chunk
        folds them in too (the disturbance was a transient, part of the tail: spikes,
        bursts of heavy noise), a re-baseline drops them (a lasting change is no tail),
        so a fault keeps scoring high while it lasts.

        The tail matches the stream's own p99 of log errors: with ``t`` the standardized
        level that a share TAIL_P of its windows exceed (interpolated in log share between
        TAIL_LEVELS, shrunk towards TAIL_Z with TAIL_PRIOR_WINDOWS of weight), ``tail = t /
        TAIL_Z``, so a normal-time p99 scores ``TAIL_Z / z_n`` (about 0.68) whatever the
        shape of the stream's error distribution: heavy tails no longer score 2+, light
        or bounded ones no longer below 0.5 (the comparability bar)."""
        if len(segs) == 1:
            u = (x - mu[0]) * isig[0]
        else:
            u = (x - (np.repeat(mu, lengths) if mu_rows is None else mu_rows)) * np.repeat(isig, lengths)
        rows: list[list[int]] | None = None  # per segment: windows above each level (None: none at all)
        hot = np.flatnonzero(u > TAIL_LEVELS[0])  # few rows: the rest adds to no level
        if hot.size:
            levels = np.searchsorted(_LEVELS, u[hot], side="left")  # levels below each: 1..len
            seg = np.zeros(hot.size, dtype=np.intp) if starts is None else np.searchsorted(starts, hot, "right") - 1
            width = len(TAIL_LEVELS) + 1
            hist = np.bincount(seg * width + levels, minlength=len(segs) * width).reshape(len(segs), width)
            above = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1]  # above[:, k]: windows with >= k levels below
            rows = above[:, 1:].tolist()  # one conversion; a segment without hot windows has a row of 0s
        inv: list[float] = []
        decay = self.tail_decay
        for j, (st, _, m, _, end) in enumerate(segs):
            inv.append(1.0 / (zsig[j] * st.tail) if online[j] else 1.0 / zsig[j])
            if isig[j] > 0.0:
                q = st.q
                q[0] += m if voids is None else m - voids[j]
                if rows is not None:
                    c_j = rows[j]
                    if c_j[0]:  # windows above the lowest level: the segment has counts
                        q[1:] = map(add, q[1:], c_j)
            if not end:
                continue
            if outcome[j] == _DISTURBED:  # held back: a transient is tail, a lasting change is not
                st.r = [r + q for r, q in zip(st.r, st.q, strict=True)]
            elif outcome[j] == _LEARNT:  # folds the disturbed stretch before it, if any: it was a transient
                if st.r[0]:
                    st.e = [decay * e + q + r for e, q, r in zip(st.e, st.q, st.r, strict=True)]
                    st.tail = _tail_of(st.e)
                    st.r = [0] * _NT
                elif st.q[0]:  # nothing held back (r[k] <= r[0] = 0): + 0 changes no float
                    st.e = list(map(add, map(mul, repeat(decay), st.e), st.q))  # decay * e + q each
                    st.tail = _tail_of(st.e)
            elif outcome[j] == _SCALED:  # a new scaler: the errors' tail stays
                st.r = [0] * _NT
            else:  # re-baselined: the new regime's tail is learnt afresh
                st.e = [0.0] * _NT
                st.r = [0] * _NT
                st.tail = 1.0
            st.q = [0] * _NT
        return inv

    def _scores(
        self,
        x: FloatArray,
        raw: FloatArray,
        lengths: IntArray,
        online: list[bool],
        mu: list[float],
        inv: list[float],
        mu_rows: FloatArray | None = None,
    ) -> FloatArray:
        out: FloatArray
        if len(lengths) == 1:
            out = np.maximum((x - mu[0]) * inv[0], 0.0) if online[0] else raw * inv[0]
            return out
        inv_rows = np.repeat(inv, lengths)
        if not any(online):
            out = raw * inv_rows
            return out
        out = np.maximum((x - (np.repeat(mu, lengths) if mu_rows is None else mu_rows)) * inv_rows, 0.0)
        if not all(online):
            out = np.where(np.repeat(online, lengths), out, raw * inv_rows)
        return out

    def _blend(
        self,
        score: FloatArray,
        x: FloatArray,
        raw: FloatArray,
        lengths: IntArray,
        mu: list[float],
        inv: list[float],
        blend: dict[int, tuple[float, float]],
        mu_rows: FloatArray | None = None,
    ) -> FloatArray:
        """Warm-up segments (`blend`: weight w and 1 / (z_n sigma) of their stream's own
        estimate so far): ``(1 - w) raw / prior + w max(0, (x - mu) / (z_n sigma))`` with
        ``w = n / min_windows`` for n learnt windows. Rows of other segments keep their
        score bit for bit (so a stream's scores do not depend on what shares its batch)."""
        if len(lengths) == 1:
            w, binv = blend[0]
            out: FloatArray = (1.0 - w) * (raw * inv[0]) + w * np.maximum((x - mu[0]) * binv, 0.0)
            return out
        ws = [0.0] * len(lengths)
        bs = [0.0] * len(lengths)
        for j, (w, binv) in blend.items():
            ws[j], bs[j] = w, binv
        w_rows = np.repeat(ws, lengths)
        own = np.maximum((x - (np.repeat(mu, lengths) if mu_rows is None else mu_rows)) * np.repeat(bs, lengths), 0.0)
        mixed = (1.0 - w_rows) * (raw * np.repeat(inv, lengths)) + w_rows * own
        out = np.where(w_rows > 0.0, mixed, score)
        return out

    def _prior_only(self, raw: Floats, runs: list[tuple[str, int, int]]) -> Floats:
        """Online calibration off: ``raw / prior`` for each stream's prior."""
        inv = [1.0 / self._stream(key).prior for key, _, _ in runs]
        if len(set(inv)) == 1:
            same: Floats = raw * inv[0]
            return same
        each: Floats = raw * np.repeat(inv, [stop - start for _, start, stop in runs])
        return each

    # ------------------------------------------------------------------ export

    def effective_threshold(self, key: str) -> float | None:
        """The raw error at which `key` scores 1.0 now (None: stream not seen)."""
        st = self.streams.get(key)
        if st is None:
            return None
        if self.cfg.enabled and st.online:
            return _exp(st.mu + self._z(st) * st.mult * st.sigma * st.tail)
        if self.cfg.enabled and self.blend_warmup and st.s0 > 0.0:  # warm-up blend: between the two,
            w = min(st.n_base / self.cfg.min_windows, 1.0)  # geometrically (exact at w = 0 and 1)
            own = st.mu + self._z(st) * st.mult * st.sigma
            return _exp((1.0 - w) * math.log(st.prior * st.mult) + w * own)
        return st.prior * st.mult

    def forget(self, key: str) -> None:
        self.streams.pop(key, None)
        self.overrides.pop(key, None)
        self.trials.discard(key)

    def drain_events(self) -> list[RegimeChange]:
        events, self.events = self.events, []
        return events

    # ------------------------------------------------------------------ persistence

    def to_state(self, model_version: str) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "model_version": model_version,
            "fields": list(_FIELDS),
            "streams": {key: st.to_list() for key, st in self.streams.items()},
            "inputs": {key: st.inp.to_dict() for key, st in self.streams.items() if st.inp is not None},
        }

    def restore(self, state: Any, model_version: str) -> int:
        """Adopt persisted state (of `to_state`); returns the streams restored. Raises
        ValueError on a malformed state; a state of another model version restores nothing
        (its errors have another distribution)."""
        if not isinstance(state, dict) or state.get("version") not in (1, 2, STATE_VERSION):
            raise ValueError(f"not a calibration state of version {STATE_VERSION} (or 1, 2)")
        fields = _FIELDS if state["version"] >= 2 else _V1_FIELDS  # 1: a normal tail
        if state.get("fields") != list(fields):
            raise ValueError("calibration state has other fields than its version writes")
        streams = state.get("streams")
        if not isinstance(streams, dict):
            raise ValueError("calibration state: 'streams' is not a mapping")
        if state.get("model_version") != model_version:
            return 0
        restored = {str(key): _Stream.from_list(values, fields) for key, values in streams.items()}
        inputs = state.get("inputs", {}) if state["version"] >= 3 else {}  # 1, 2: no input baselines
        if not isinstance(inputs, dict) or not set(inputs) <= set(restored):
            raise ValueError("calibration state: 'inputs' is not a mapping of its streams")
        overrides: dict[str, StreamInputs] = {}
        for key, data in inputs.items():
            channels = (
                self.channels if self.channels is not None else len(data.get("c", []) if isinstance(data, dict) else [])
            )
            inp = restored[key].inp = StreamInputs.from_dict(data, channels)
            if inp.active:
                overrides[key] = inp
        for key, st in restored.items():
            st.prior = float(self.prior(key))  # the seam decides the prior, not the file
        self.streams = restored
        self.overrides = overrides
        self.trials = {key for key, st in restored.items() if st.inp is not None and st.inp.pending is not None}
        return len(restored)
