"""Shadow scoring: a candidate model scores the live windows beside the serving one.

A candidate that passed `monitor retrain`'s offline gate with ``retrain.shadow_hours > 0``
is not promoted at once: the daemon hands every window batch the serving model scored to
`Shadow.observe` as well. The candidate scores the *same* windows (re-standardized with its
own scaler, one extra forward pass per batch, no window assembly of its own; for a dense
candidate the re-standardization is folded into a copy of its first and last layer once,
`monitor.core.shadow_fold`), runs its own
alarm state machine (the group's alarm settings, its offline thresholds) and sends
nothing: it only counts the episodes it *would* have raised. After `ShadowSettings.seconds`
of live data (data time of the scored windows) `verdict` judges it against the serving
model on the same traffic:

* ``enough_windows``: at least `min_windows` windows were scored;
* ``alert_episodes``: would-alert episodes <= the serving model's anomaly episodes in the
  same span + `alert_margin`;
* ``alarm_budget``: would-alert episodes <= `max_alert_episodes` (an absolute ceiling:
  two equally noisy models do not make a good one);
* ``score_quantile``: the candidate's p99 score (threshold units) within a factor
  `max_quantile_ratio` of the serving model's, either way (a candidate whose scores sit
  far below 1.0 on live data is as suspicious as one far above).

The shadow also keeps the candidate's drift summary on those windows (`Shadow.drift`, the
tracker it would keep serving): promoted, it serves with it at once (decision 0021,
addendum 7).

Scores are kept as fixed log-spaced histograms (O(1) memory however long the shadow runs);
quantiles are read off them (the upper edge of the bin that reaches the quantile).

Pure: no I/O, no clocks (time is the windows' data time).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from monitor.core.alarm import AlarmMachine
from monitor.core.alarm_state import alarm_to_state, restore_alarm
from monitor.core.config import AlarmConfig
from monitor.core.drift import DriftTracker, reference_edges, tracker_for
from monitor.core.types import Alert, Float32Array, FloatArray, Floats, ScoreBatch

# score histogram: log10(score) in [-4, 4] in 0.05 steps, plus under- and overflow bins
HIST_EDGES = np.round(np.arange(-4.0, 4.0001, 0.05), 4)
SHADOW_STATE_VERSION = 1  # `Shadow.to_state`
PENDING_VALUES = 8192  # scores that wait to be binned together (`Shadow._settle`)

if TYPE_CHECKING:  # torch: imported when a shadow first scores (`Shadow._uniform_of`)
    from monitor.core.shadow_fold import FoldedDense

Scaler = tuple[FloatArray, FloatArray]  # (mean, 1 / std) of one stream
_EDGES_OUT = np.concatenate([[-np.inf], HIST_EDGES, [np.inf]])


def bin_of(logs: FloatArray) -> np.ndarray:
    """``np.searchsorted(HIST_EDGES, logs, side="right")`` for finite `logs`, by arithmetic:
    the edges are 0.05 apart from -4, so ``(log + 4) * 20`` names the bin up to rounding at
    an edge, and one comparison with each neighbouring edge settles it (a binary search
    over 161 edges costs about 60 ns a value on unordered scores, this about 8)."""
    f = logs + 4.0
    f *= 20.0
    j = f.astype(np.intp)
    j += 1
    np.clip(j, 0, len(HIST_EDGES), out=j)
    j -= _EDGES_OUT[j] > logs  # the edge below is above: one bin down
    j += _EDGES_OUT[j + 1] <= logs  # the edge above is reached: one bin up
    return j


@dataclass(frozen=True)
class ShadowSettings:
    seconds: float
    alert_margin: int = 1
    max_alert_episodes: int = 5
    max_quantile_ratio: float = 3.0
    min_windows: int = 100
    quantile: float = 0.99


@dataclass
class ShadowVerdict:
    promote: bool
    checks: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)


class _Hist:
    """Counts of scores in the `HIST_EDGES` bins (under- and overflow at the ends)."""

    def __init__(self) -> None:
        self.counts = np.zeros(len(HIST_EDGES) + 1, dtype=np.int64)
        self.n = 0

    def add(self, scores: Floats) -> None:
        s = np.asarray(scores, dtype=np.float64)
        finite = np.isfinite(s)
        if not finite.all():
            s = s[finite]
        if not s.size:
            return
        logs = np.maximum(s, 1e-12)
        np.log10(logs, out=logs)
        self.counts += np.bincount(bin_of(logs), minlength=len(self.counts))
        self.n += int(s.size)

    def restore(self, counts: Any) -> None:
        """Adopt saved counts (`Shadow.restore`); ValueError when they do not fit the bins."""
        ok = isinstance(counts, list) and all(isinstance(k, int) and not isinstance(k, bool) for k in counts)
        c = np.asarray(counts if ok else [])
        if not ok or c.shape != self.counts.shape or (c < 0).any():
            raise ValueError(f"a score histogram needs {len(self.counts)} non-negative integer counts")
        self.counts = c.astype(np.int64)
        self.n = int(self.counts.sum())

    def quantile(self, q: float) -> float:
        if not self.n:
            return math.nan
        at = int(np.searchsorted(np.cumsum(self.counts), q * self.n, side="left"))
        if at >= len(HIST_EDGES):
            return math.inf
        return float(10.0 ** HIST_EDGES[at])


@dataclass
class _Uniform:
    """The re-standardization and threshold when every stream has the same ones (neither
    model has per-stream adapters): one affine map over the flattened windows."""

    identity: bool
    a: Float32Array  # (W, channels): the per-channel factor repeated over the window
    b: Float32Array
    threshold: float
    mean: FloatArray  # the candidate's scaler (reconstructions back to units)
    inv_std: FloatArray
    folded: FoldedDense | None = None  # the map folded into the candidate's dense net (shadow_fold.py)


class Shadow:
    """One group's shadow candidate. Drive it from the scoring thread only."""

    def __init__(
        self,
        candidate: Any,  # a ScoringModel (pipeline imports this module: no import cycle)
        live: Any,
        alarm_cfg: AlarmConfig,
        settings: ShadowSettings,
        top_channels: int = 3,
    ):
        if candidate.scorer is None:
            raise ValueError(f"shadow candidate {candidate.version!r} carries no scorer")
        if not candidate.compatible_with(live):
            raise ValueError(
                f"shadow candidate {candidate.version!r} has another frame or window geometry than the serving "
                f"model {live.version!r} (channels, period, window, stride, filters, alignment, context): it cannot "
                "score the same windows"
            )
        self.model = candidate
        self.settings = settings
        self.alarm = AlarmMachine(
            alarm_cfg,
            candidate.threshold,
            candidate.version,
            candidate.channels,
            top_channels,
            threshold_for=candidate.offline_threshold,
        )
        # the candidate's drift on live traffic, as the daemon would track it serving (its
        # reference deciles and window rate): promoted, it serves with this summary at once
        # (`ShadowManager.on_model`) instead of NaN for its first 2.3 h. Not reset with the
        # serving model: it is the candidate's errors, whoever serves
        self.drift = drift_tracker_of(candidate)
        self.reset(live)

    def reset(self, live: Any) -> None:
        """Start counting again against the serving model `live` (a ScoringModel; a new
        serving model is a new comparison)."""
        self.live_version = live.version
        self.windows = 0
        self.episodes = 0  # the candidate's would-alert episodes (firing)
        self.live_episodes = 0  # the serving model's anomaly episodes over the same windows
        # the span, batch by batch; the histograms: scores wait in two buffers and are settled
        # in bulk (`_settle`) when read or when the buffers are full. Copied there, nothing of
        # a batch is kept alive (the live path's next batch reuses that memory, cache-warm)
        self._first = math.nan
        self._last = math.nan
        self._hist = _Hist()
        self._live_hist = _Hist()
        self._buf_c = np.empty(PENDING_VALUES)  # candidate raw errors (uniform: divided at settling) or scores
        self._buf_l = np.empty(PENDING_VALUES)  # the serving model's scores
        self._fill = 0
        self.last_max = math.nan  # the candidate's highest score (threshold units) in its newest batch
        self.alarm.states = {}
        self._idle = True  # the candidate's alarm has nothing a cold batch could change (AlarmMachine.idle)
        # one scaler and threshold for every stream (neither model has adapters): no per-stream tables
        self._uniform_ok = live.adapters is None and self.model.adapters is None
        self._uniform: _Uniform | None = None
        self._fold_ok = True  # a dense candidate takes the serving windows as they are (shadow_fold.py)
        # uniform: scores are raw / this, computed when settling (max(raw) / t is the top score)
        t = float(self.model.threshold)
        self._divisor: float | None = t if self._uniform_ok and t > 0 else None
        # per-stream tables (the serving model's scaler is part of them: rebuilt after a swap)
        self._rows: dict[str, int] = {}
        self._a: list[FloatArray] = []
        self._b: list[FloatArray] = []
        self._cm: list[FloatArray] = []
        self._cinv: list[FloatArray] = []
        self._thr: list[float] = []
        self._tables: tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, bool] | None = None

    @property
    def first_time(self) -> float:
        return self._first

    @property
    def last_time(self) -> float:
        return self._last

    @property
    def hist(self) -> _Hist:
        """The candidate's score histogram."""
        self._settle()
        return self._hist

    @property
    def live_hist(self) -> _Hist:
        """The serving model's score histogram over the same windows."""
        self._settle()
        return self._live_hist

    def _settle(self) -> None:
        """Bin the waiting scores: one division and binning for many batches (the same
        counts as batch by batch)."""
        k, self._fill = self._fill, 0
        if k:
            self._add(self._buf_c[:k], self._buf_l[:k])

    def _add(self, cand: Floats, live: Floats) -> None:
        self._hist.add(cand if self._divisor is None else np.divide(cand, self._divisor, dtype=np.float64))
        self._live_hist.add(live)

    def _queue(self, cand: Floats, live: Floats, times: Any) -> None:
        """A batch's scores into the buffers (settled first when they would overflow),
        its times into the span."""
        n = len(cand)
        if self._fill + n > PENDING_VALUES:
            self._settle()
        if n > PENDING_VALUES:  # a backlog's batch: binned at once
            self._add(cand, live)
        else:
            k = self._fill
            self._buf_c[k : k + n] = cand
            self._buf_l[k : k + n] = live
            self._fill = k + n
        if isinstance(times, np.ndarray):
            lo, hi = float(times.min()), float(times.max())
        else:  # the reading-by-reading path's list of floats
            lo, hi = float(min(times)), float(max(times))
        if not lo >= self._first:  # also while the span is NaN (empty)
            self._first = lo
        if not hi <= self._last:
            self._last = hi

    def _scaler(self, stream: str) -> Scaler:
        m = self.model
        adapters = m.adapters
        i = adapters.index.get(stream) if adapters is not None else None
        if adapters is not None and i is not None:
            return adapters.mean[i], adapters.inv_std[i]
        return m.mean, 1.0 / m.std

    def _ab(self, stream: str, live_scaler: Callable[[str], Scaler]) -> tuple[FloatArray, FloatArray]:
        # z_c = (v - cm) * cinv with v = z_l / linv + lm: z_c = z_l * a + b
        lm, linv = live_scaler(stream)
        cm, cinv = self._scaler(stream)
        return cinv / linv, (lm - cm) * cinv

    def _uniform_of(self, stream: str, live_scaler: Callable[[str], Scaler], shape: tuple[int, ...]) -> _Uniform:
        a, b = self._ab(stream, live_scaler)
        window, width = shape[1], shape[2]
        c = len(self.model.channels)
        af, bf = np.ones(width, dtype=np.float32), np.zeros(width, dtype=np.float32)
        af[:c], bf[:c] = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
        cm, cinv = self._scaler(stream)
        # torch only here: `models list` and other commands import this module without scoring
        from monitor.core.shadow_fold import fold_dense  # noqa: PLC0415

        return _Uniform(
            identity=bool(np.all(a == 1.0) and np.all(b == 0.0)),
            a=np.tile(af, (window, 1)),
            b=np.tile(bf, (window, 1)),
            threshold=float(self.model.threshold),
            mean=np.asarray(cm, dtype=np.float64),
            inv_std=np.asarray(cinv, dtype=np.float64),
            folded=fold_dense(self.model.scorer, a, b) if self._fold_ok else None,
        )

    def _row_of(self, stream: str, live_scaler: Callable[[str], Scaler]) -> int:
        """`stream`'s row in the per-stream tables (added on first sight)."""
        row = self._rows.get(stream)
        if row is None:
            a, b = self._ab(stream, live_scaler)
            cm, cinv = self._scaler(stream)
            self._a.append(a)
            self._b.append(b)
            self._cm.append(cm)
            self._cinv.append(cinv)
            self._thr.append(self.model.offline_threshold(stream))
            row = self._rows[stream] = len(self._rows)
            self._tables = None
        return row

    def _tables_now(self) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, bool]:
        if self._tables is None:
            a, b = np.asarray(self._a, dtype=np.float64), np.asarray(self._b, dtype=np.float64)
            self._tables = (
                a.astype(np.float32),
                b.astype(np.float32),
                np.asarray(self._cm, dtype=np.float64),
                np.asarray(self._cinv, dtype=np.float64),
                np.asarray(self._thr, dtype=np.float64),
                bool(np.all(a == 1.0) and np.all(b == 0.0)),
            )
        return self._tables

    def observe(
        self,
        x: Float32Array,
        runs: list[tuple[str, int, int]],
        live: ScoreBatch,
        live_alerts: list[Alert],
        live_scaler: Callable[[str], Scaler],
    ) -> int:
        """Score the serving model's window batch `x` (standardized with `live_scaler`)
        with the candidate; returns the candidate's would-alert episodes begun in it.
        `x` may be re-standardized in place: the caller hands over a buffer it does not read
        again (`Pipeline.flush` calls this last; no copy of the batch is made).

        Besides the candidate's forward pass, a batch costs: the re-standardization (a
        dense candidate without adapters on either side: none, it is folded into the
        network and the raw error is one matrix-vector product, `FoldedDense`; other
        networks with one scaler for all streams: one multiply and one add over the
        windows, nothing when the scalers are equal; with adapters, per-stream tables
        looked up once per run and gathered), the top score (``max(raw) / threshold``:
        dividing by a positive number keeps the order), the batch's first and last time,
        two copies of its scores into buffers and its raw errors queued for the drift
        tracker; the scores themselves and the
        histograms are worked out for many batches at once (`_settle`).
        The candidate's alarm runs, and its scores, channel scores and reconstructions
        are computed for it, only when a score is hot or its alarm is not idle
        (`AlarmMachine.idle`): a cold batch changes nothing there."""
        n = len(x)
        if not n:
            return 0
        uni: _Uniform | None = None
        per_row: np.ndarray | None = None
        score: FloatArray | None = None
        kept: Any = None  # the folded pass's intermediates (`FoldedDense.details`)
        if self._uniform_ok:
            uni = self._uniform
            if uni is None or uni.a.shape != x.shape[1:]:
                uni = self._uniform = self._uniform_of(runs[0][0], live_scaler, x.shape)
            if uni.folded is None and not uni.identity:  # in place: the pipeline's buffer is not read again
                np.multiply(x, uni.a, out=x)
                np.add(x, uni.b, out=x)
            thr: float | FloatArray = uni.threshold
        else:
            c = len(self.model.channels)
            row_of = self._row_of
            rows = np.fromiter((row_of(s, live_scaler) for s, _, _ in runs), dtype=np.intp, count=len(runs))
            lengths = np.fromiter((stop - start for _, start, stop in runs), dtype=np.intp, count=len(runs))
            per_row = np.repeat(rows, lengths)
            a, b, _, _, thr_s, identity = self._tables_now()
            if not identity:  # in place, as above
                np.multiply(x[..., :c], a[per_row][:, None, :], out=x[..., :c])
                x[..., :c] += b[per_row][:, None, :]
            thr = thr_s[per_row]
        per_channel: Floats | None = None  # folded: worked out below only for a batch the alarm sees
        recon_last: Floats | None = None
        if uni is not None and uni.folded is not None:
            raw, kept = uni.folded.raw(x)
        else:
            raw, per_channel, recon_last = self.model.scorer.errors(x)
        divisor = self._divisor
        pending: Floats
        if divisor is not None:
            top = float(raw.max()) / divisor  # = the largest raw / divisor, NaN if any is
            pending = raw  # divided when settling
        else:
            score = np.divide(raw, thr, dtype=np.float64)  # float64 before dividing
            top = float(score.max())
            pending = score
        fired = 0
        hot = top >= 1.0
        if not hot and top != top:  # a NaN somewhere: look at every score
            score = np.divide(raw, thr, dtype=np.float64) if score is None else score
            hot = bool((score >= 1.0).any())
        if hot or not self._idle:
            score = np.divide(raw, thr, dtype=np.float64) if score is None else score
            if kept is not None:
                assert uni is not None and uni.folded is not None
                per_channel, recon_last = uni.folded.details(kept)
            assert per_channel is not None and recon_last is not None
            batch = self._batch(live, runs, score, raw, per_channel, recon_last, uni, per_row)
            fired = sum(1 for al in self.alarm.update_batch(batch) if al.state == "firing")
            self.episodes += fired
            self._idle = self.alarm.idle()
        if self.drift is not None:
            self.drift.add(raw)  # queued: binned a chunk (2 048 windows at 1 Hz) at a time
        if live_alerts:
            self.live_episodes += sum(1 for al in live_alerts if al.state == "firing" and al.kind == "anomaly")
        self.windows += n
        self._queue(pending, live.score, live.times)
        self.last_max = top
        return fired

    def _batch(
        self,
        live: ScoreBatch,
        runs: list[tuple[str, int, int]],
        score: FloatArray,
        raw: Floats,
        per_channel: Floats,
        recon_last: Floats,
        uni: _Uniform | None,
        per_row: np.ndarray | None,
    ) -> ScoreBatch:
        """The candidate's scores as a batch for its alarm (channel scores in threshold
        units, reconstructions in the candidate's units)."""
        c = len(self.model.channels)
        pc, rl = np.asarray(per_channel, dtype=np.float64), np.asarray(recon_last, dtype=np.float64)
        if uni is not None:
            channel_scores = pc / (uni.threshold * c)
            reconstructed = rl / uni.inv_std + uni.mean
        else:
            assert per_row is not None
            _, _, cm, cinv, thr_s, _ = self._tables_now()
            thr = thr_s[per_row]
            channel_scores = pc / (thr * c)[:, None]
            reconstructed = rl / cinv[per_row] + cm[per_row]
        return ScoreBatch(None, live.times, score, raw, channel_scores, live.observed, reconstructed, runs=runs)

    # ------------------------------------------------------------------ state across restarts

    def to_state(self) -> dict[str, Any]:
        """What a restart needs to go on with this shadow period: plain JSON-able data,
        keyed by the candidate and the serving version (`restore`)."""
        return {
            "version": SHADOW_STATE_VERSION,
            "candidate": self.model.version,
            "current": self.live_version,
            "windows": self.windows,
            "first_time": None if math.isnan(self.first_time) else self.first_time,
            "last_time": None if math.isnan(self.last_time) else self.last_time,
            "episodes": self.episodes,
            "live_episodes": self.live_episodes,
            "histogram": {"candidate": self.hist.counts.tolist(), "current": self.live_hist.counts.tolist()},
            "alarm": alarm_to_state(self.alarm, {}),
            "drift": self.drift.to_state() if self.drift is not None else None,
        }

    def restore(self, state: Any) -> bool:
        """Go on from `state` (`to_state`) when it is this candidate's beside this serving
        model: True. Another pair's: False, nothing changed (a new comparison starts).
        ValueError when it is malformed (nothing changed either)."""
        if not isinstance(state, dict) or state.get("version") != SHADOW_STATE_VERSION:
            raise ValueError(f"not a shadow state of version {SHADOW_STATE_VERSION}")
        if state.get("candidate") != self.model.version or state.get("current") != self.live_version:
            return False
        counts = {k: _count(state, k) for k in ("windows", "episodes", "live_episodes")}
        first, last = _time(state, "first_time"), _time(state, "last_time")
        if math.isnan(first) != math.isnan(last) or first > last:
            raise ValueError("shadow state: first_time and last_time do not make a span")
        hists = state.get("histogram")
        if not isinstance(hists, dict):
            raise ValueError("shadow state: 'histogram' is not a mapping")
        hist, live_hist = _Hist(), _Hist()
        hist.restore(hists.get("candidate"))
        live_hist.restore(hists.get("current"))
        if hist.n > counts["windows"] or live_hist.n > counts["windows"]:
            raise ValueError("shadow state: the histograms hold more scores than windows were scored")
        drift = _restored_drift(self.model, state.get("drift"))
        restore_alarm(self.alarm, state.get("alarm"))  # last: raises before it changes anything
        self.drift = drift if drift is not None else self.drift
        self.windows, self.episodes, self.live_episodes = counts["windows"], counts["episodes"], counts["live_episodes"]
        self._fill = 0
        self._first, self._last = first, last
        self._hist, self._live_hist = hist, live_hist
        self._idle = self.alarm.idle()
        return True

    @property
    def elapsed_seconds(self) -> float:
        return 0.0 if math.isnan(self.first_time) else self.last_time - self.first_time

    def due(self) -> bool:
        """The shadow period is over (in data time) and enough windows were scored."""
        return self.elapsed_seconds >= self.settings.seconds and self.windows >= self.settings.min_windows

    def summary(self) -> dict[str, Any]:
        q = self.settings.quantile
        return {
            "candidate": self.model.version,
            "current": self.live_version,
            "windows": self.windows,
            "elapsed_seconds": self.elapsed_seconds,
            "shadow_seconds": self.settings.seconds,
            "first_time": None if math.isnan(self.first_time) else self.first_time,
            "last_time": None if math.isnan(self.last_time) else self.last_time,
            "episodes": {"candidate": self.episodes, "current": self.live_episodes},
            "quantiles": {
                "candidate": {"p50": _num(self.hist.quantile(0.5)), f"p{round(q * 100)}": _num(self.hist.quantile(q))},
                "current": {
                    "p50": _num(self.live_hist.quantile(0.5)),
                    f"p{round(q * 100)}": _num(self.live_hist.quantile(q)),
                },
            },
            "histogram": {
                "log10_edges": HIST_EDGES.tolist(),
                "candidate": self.hist.counts.tolist(),
                "current": self.live_hist.counts.tolist(),
            },
        }

    def verdict(self) -> ShadowVerdict:
        s = self.settings
        checks: list[dict[str, Any]] = []
        checks.append(
            {
                "check": "enough_windows",
                "passed": self.windows >= s.min_windows,
                "detail": f"{self.windows} windows scored in shadow (need >= {s.min_windows})",
            }
        )
        allowed = self.live_episodes + s.alert_margin
        checks.append(
            {
                "check": "alert_episodes",
                "passed": self.episodes <= allowed,
                "detail": f"candidate would have raised {self.episodes} alert episode(s), the serving model raised "
                f"{self.live_episodes} (+ margin {s.alert_margin} = {allowed})",
            }
        )
        checks.append(
            {
                "check": "alarm_budget",
                "passed": self.episodes <= s.max_alert_episodes,
                "detail": f"{self.episodes} would-alert episode(s) in {self.elapsed_seconds:.0f} s "
                f"(budget {s.max_alert_episodes})",
            }
        )
        cq, lq = self.hist.quantile(s.quantile), self.live_hist.quantile(s.quantile)
        if math.isfinite(cq) and math.isfinite(lq) and cq > 0 and lq > 0:
            ratio = cq / lq
            ok = 1.0 / s.max_quantile_ratio <= ratio <= s.max_quantile_ratio
            detail = (
                f"p{round(s.quantile * 100)} score candidate {cq:.3g} / serving {lq:.3g} = {ratio:.3g} "
                f"({'within' if ok else 'beyond'} a factor {s.max_quantile_ratio:g})"
            )
        else:
            ratio, ok = math.nan, False
            detail = f"p{round(s.quantile * 100)} scores not comparable (candidate {cq}, serving {lq})"
        checks.append({"check": "score_quantile", "passed": ok, "detail": detail, "ratio": _num(ratio)})
        passed = all(c["passed"] for c in checks)
        return ShadowVerdict(passed, checks, self.summary())


def drift_tracker_of(model: Any) -> DriftTracker | None:
    """The tracker the daemon keeps for `model` serving (`ShadowManager.on_model`): against
    its bundle's reference deciles at its window rate; None without deciles."""
    manifest = getattr(model, "manifest", None)
    edges = reference_edges(manifest.threshold_info) if manifest is not None else None
    return tracker_for(edges, model.period_seconds, model.stride) if edges else None


def _restored_drift(model: Any, state: Any) -> DriftTracker | None:
    """The candidate's drift summary from a shadow state (None: none saved, the candidate
    has no deciles, or it was kept against another reference); ValueError when malformed."""
    tracker = drift_tracker_of(model) if state is not None else None
    if tracker is None:
        return None
    if not isinstance(state, dict):
        raise ValueError("shadow state: 'drift' is not a mapping")
    try:
        return tracker if tracker.restore(state) else None
    except (KeyError, TypeError) as exc:
        raise ValueError(f"shadow state: drift summary unusable: {exc!r}") from exc


def _num(x: float) -> float | None:
    return None if not math.isfinite(x) else round(float(x), 6)


def _count(state: dict[str, Any], key: str) -> int:
    x = state.get(key)
    if isinstance(x, bool) or not isinstance(x, int) or x < 0:
        raise ValueError(f"shadow state: {key!r} is not a count")
    return x


def _time(state: dict[str, Any], key: str) -> float:
    x = state.get(key)
    if x is None:
        return math.nan
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise ValueError(f"shadow state: {key!r} is not a time")
    return float(x)
