"""Per-stream calibration state: constants, log-error helpers, the regime-change event
and the persisted per-stream record (`_Stream`) of `monitor.core.calibrate`."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
from numpy.typing import NDArray

from monitor.core.input_baseline import StreamInputs
from monitor.core.types import FloatArray, Floats

IntArray = NDArray[np.intp]

WEEK_SECONDS = 7 * 86400.0
BUDGET_STEP = 1.25  # z multiplier per over-budget onset
BUDGET_MAX = 4.0  # largest z multiplier
STATE_VERSION = 3  # 3: per-stream input baselines and scaler overrides ("inputs")
TAIL_LEVELS = (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0)  # standardized log errors whose exceedances are counted
TAIL_P = 0.01  # the tail quantile matched: the stream's own p99 of log errors ...
TAIL_Z = NormalDist().inv_cdf(1.0 - TAIL_P)  # ... is put where a normal distribution has its p99
TAIL_PRIOR_WINDOWS = 1024.0  # weight (windows) of the normal-tail prior in the tail estimate
TAIL_MEMORY = 4.0  # the tail counts decay this many times slower than mu and sigma: a
# p99 is what a few fault windows in a learnt chunk move most, so it must move slowly
_X_SCALE = 1024.0  # fixed point of log errors in a chunk's sums: (690 * 1024)**2 * 4096 < 2**53
_LOG_MAX = 690.0  # log of a NaN error: it scores (and is learnt) as a huge error

_LEARNT, _DISTURBED, _REBASED, _SCALED = 0, 1, 2, 3  # what a completed chunk did
# (_SCALED: confirmed a new scaler for the stream, its errors' distribution kept)
_DIRECTIONS = ("up", "down", "spread")

Rescore = Callable[[str, IntArray, bool], Floats]
"""The pipeline's hook: raw errors of rows (of this batch) of a stream with its current
scaler (False: the batch's outputs take them) or with its scaler on trial (True: they only
verify it)."""


def _log(raw: FloatArray) -> FloatArray:
    """Log errors as `calibrate` takes them (NaN: a huge error)."""
    x = np.log(np.maximum(raw, 1e-300))
    out: FloatArray = np.where(np.isnan(x), _LOG_MAX, x)
    return out


def _exp(v: float) -> float:
    """exp without an OverflowError (a stream of zero or NaN errors has |log error| ~ 690)."""
    return math.exp(min(v, 700.0))


def _tail_of(e: list[float]) -> float:
    """The tail factor of decayed counts ``[windows, above level 0, above level 1, ...]``."""
    n = e[0]
    lo = e[1] / n  # the share above each level, computed only as far as the search goes
    t = TAIL_LEVELS[-1]
    if lo <= TAIL_P:
        t = TAIL_LEVELS[0]  # lighter than any level measured: the lowest
    else:
        for k in range(1, len(TAIL_LEVELS)):
            share = e[k + 1] / n
            if share <= TAIL_P:
                hi = max(share, 1e-12)
                f = math.log(lo / TAIL_P) / math.log(lo / hi) if lo > hi else 1.0
                t = TAIL_LEVELS[k - 1] + f * (TAIL_LEVELS[k] - TAIL_LEVELS[k - 1])
                break
            lo = share
    t = (n * t + TAIL_PRIOR_WINDOWS * TAIL_Z) / (n + TAIL_PRIOR_WINDOWS)
    return t / TAIL_Z


PriorLookup = Callable[[str], float]
"""The seam: the offline threshold (raw units) for a stream key."""


@dataclass(frozen=True)
class RegimeChange:
    """A sustained level or variance change of one stream's errors, and its re-baseline."""

    stream: str
    started_at: float  # first window of the disturbed stretch
    at: float  # the window at which the stream re-baselined
    direction: str  # "up", "down" (level of the errors) or "spread" (their variance)
    level_before: float  # typical raw error before (exp of the mean log error)
    level_after: float
    threshold: float  # the stream's threshold (raw units) after re-baselining, before any budget multiplier
    # the stream's new scaler over its push-time one, (c, s): inputs u -> (u - c) / s per
    # channel (None: the errors' distribution re-baselined instead)
    scaler: tuple[tuple[float, ...], tuple[float, ...]] | None = None


_FIELDS: tuple[str, ...] = (
    "prior",
    "s0",
    "s1",
    "s2",
    "n_base",
    "online",
    "pos",
    "p0",
    "p1",
    "p2",
    "p_first",
    "d0",
    "d1",
    "d2",
    "dist_since",
    "mu",
    "sigma",
    "mult",
    "rate",
    "rate_at",
    "chunk_hot",
    "hot_prev",
)
_V1_FIELDS = _FIELDS  # state version 1 had these only: it restores with a normal tail
_LEVELS = np.asarray(TAIL_LEVELS)
_NT = len(TAIL_LEVELS) + 1  # tail counters: windows counted, then windows above each level
_TAIL_FIELDS = (
    "tail",
    *(f"e{k}" for k in range(_NT)),
    *(f"q{k}" for k in range(_NT)),
    *(f"r{k}" for k in range(_NT)),
)
_FIELDS = _V1_FIELDS + _TAIL_FIELDS


class _Stream:
    """One stream's calibration state (floats only: cheap to persist)."""

    __slots__ = (*_V1_FIELDS, "tail", "e", "q", "r", "inp")

    def __init__(self, prior: float):
        self.prior = prior  # offline threshold for this stream (raw units)
        self.s0 = self.s1 = self.s2 = 0.0  # decayed sums over accepted chunks: count, x, x**2
        self.n_base = 0.0  # accepted windows (not decayed): online once >= min_windows
        self.online = False
        self.pos = 0  # windows of the current chunk seen
        self.p0 = 0  # the current chunk's windows
        self.p1 = self.p2 = 0.0  # ... and its sums of fixed-point x and x**2 (integer-valued)
        self.p_first = math.nan  # time of the current chunk's first window
        self.d0 = self.d1 = self.d2 = 0.0  # sums of the current disturbed stretch
        self.dist_since = math.nan  # its first window's time (nan: not disturbed)
        self.mu = 0.0
        self.sigma = 1.0
        self.mult = 1.0  # budget multiplier of z (or of the prior)
        self.rate = 0.0  # onsets with a one-week memory
        self.rate_at = math.nan
        self.chunk_hot = False  # the current chunk holds a window >= 1.0
        self.hot_prev = False  # the last completed chunk did
        # tail shape: scores divide by ``z sigma tail`` (tail 1.0: a normal tail)
        self.tail = 1.0
        self.e = [0.0] * _NT  # decayed: windows counted, windows above mu + level * sigma
        self.q = [0] * _NT  # the same of the current chunk (integers: batch-independent)
        self.r = [0] * _NT  # ... of the disturbed chunks since the last learnt one
        self.inp: StreamInputs | None = None  # input sums and scaler override (rebaseline_scaler)

    def to_list(self) -> list[float]:
        out: list[float] = []
        for f in _V1_FIELDS:
            v = getattr(self, f)
            out.append(int(v) if isinstance(v, (bool, int)) else float(v))  # ints stay exact
        return [*out, float(self.tail), *map(float, self.e), *map(int, self.q), *map(int, self.r)]

    @classmethod
    def from_list(cls, values: Sequence[Any], fields: Sequence[str] = _FIELDS) -> _Stream:
        if not isinstance(values, list) or len(values) != len(fields):
            raise ValueError(f"a stream's state is a list of {len(fields)} numbers")
        st = cls(1.0)
        for f, v in zip(fields, values, strict=True):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"state field {f} is not a number: {v!r}")
            if f in _V1_FIELDS or f == "tail":
                setattr(st, f, float(v))
            elif f[0] == "e":
                st.e[int(f[1:])] = float(v)
            else:
                (st.q if f[0] == "q" else st.r)[int(f[1:])] = int(v)
        st.online, st.chunk_hot, st.hot_prev = bool(st.online), bool(st.chunk_hot), bool(st.hot_prev)
        st.pos, st.p0 = int(st.pos), int(st.p0)
        if not (st.prior > 0 and st.sigma > 0 and st.mult >= 1.0 and st.pos >= 0 and st.tail > 0):
            raise ValueError("state out of range (prior/sigma must be > 0, mult >= 1, pos >= 0)")
        return st
