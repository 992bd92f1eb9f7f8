"""Regime-change detection of `monitor.core.calibrate.OnlineCalibrator`: a completed chunk
of a stream's errors is learnt, or flagged as disturbed; a sustained disturbance re-baselines
the stream (its errors' distribution, or its scaler on trial) and emits a `RegimeChange`.

A mixin: `OnlineCalibrator` owns the state declared here and sets it in its ``__init__``."""

from __future__ import annotations

import math

from monitor.core.calib_stream import (
    _DIRECTIONS,
    _DISTURBED,
    _LEARNT,
    _REBASED,
    _SCALED,
    _X_SCALE,
    RegimeChange,
    _exp,
    _Stream,
)
from monitor.core.config import OnlineCalibrationConfig
from monitor.core.input_baseline import StreamInputs


class RegimeDetection:
    """Learning and regime detection per completed chunk (see the module docstring)."""

    cfg: OnlineCalibrationConfig
    z: float
    chunk: int
    decay: float
    after: float
    streams: dict[str, _Stream]
    events: list[RegimeChange]
    regime_changes: int
    overrides: dict[str, StreamInputs]
    trials: set[str]

    def _complete(self, st: _Stream, t_end: float) -> int:
        """A chunk of `st` is complete (ending at data time `t_end`): learn or flag it."""
        c0, c1, c2 = float(st.p0), st.p1 / _X_SCALE, st.p2 / (_X_SCALE * _X_SCALE)
        st.p0 = 0
        st.p1 = st.p2 = 0.0
        if c0 == 0:  # every window of the chunk was void (masked): nothing to learn or judge
            return _LEARNT
        m = c1 / c0
        var = max(c2 / c0 - m * m, 0.0)
        cfg = self.cfg
        direction = ""
        z = 0.0
        if st.online:
            z = (m - st.mu) / st.sigma
            if z >= cfg.regime_z:
                direction = "up"
            elif z <= -cfg.regime_z:
                direction = "down"
            elif var >= cfg.regime_var_ratio * st.sigma * st.sigma:
                direction = "spread"
        if st.inp is not None and st.inp.pending is not None:
            confirmed = self._verify(st, t_end)
            if confirmed is not None:
                return confirmed
        if not direction:
            st.dist_since = math.nan
            st.d0 = st.d1 = st.d2 = 0.0
            lam = self.decay
            st.s0 = lam * st.s0 + c0
            st.s1 = lam * st.s1 + c1
            st.s2 = lam * st.s2 + c2
            st.n_base += c0
            inp = st.inp
            held = inp is not None and not inp.blocked and st.online and cfg.regime and inp.off(c0)
            if inp is not None and not held:
                inp.learnt(lam, c0)
            if st.n_base >= cfg.min_windows:
                st.online = True
            self._moments(st)
            if inp is not None and held:
                inp.hold(c0, st.p_first, c1, z)
                if inp.pending is None and inp.due(t_end, self.after):
                    level_before = math.exp(st.mu)
                    level = math.exp(inp.ex / inp.d0)
                    since = inp.since
                    if inp.rebase():
                        return self._trial(st, since, t_end, "up" if z >= 0 else "down", level_before, level)
                    inp.accept()  # no channel moved enough: the held inputs are normal
            return _LEARNT
        if math.isnan(st.dist_since):
            st.dist_since = st.p_first
        st.d0 += c0
        st.d1 += c1
        st.d2 += c2
        if st.inp is not None:
            st.inp.hold(c0, st.p_first, c1, z)
        if cfg.regime and t_end - st.dist_since >= self.after:
            before = math.exp(st.mu) if st.online else st.prior
            since = st.dist_since
            inp = st.inp
            if inp is not None and not inp.blocked and inp.pending is None and inp.rebase():  # the inputs moved
                return self._trial(st, since, t_end, direction, before, math.exp(st.d1 / st.d0))
            if inp is not None:  # the errors re-baseline: the stretch's inputs are the new normal
                inp.accept()
                inp.blocked = False
            st.s0, st.s1, st.s2 = st.d0, st.d1, st.d2
            st.n_base = st.d0
            st.online = True
            self._moments(st)
            after = _exp(st.mu + self._z(st) * st.sigma)  # before any budget multiplier
            self.events.append(
                RegimeChange(self._key(st), st.dist_since, t_end, direction, before, math.exp(st.mu), after)
            )
            self.regime_changes += 1
            st.dist_since = math.nan
            st.d0 = st.d1 = st.d2 = 0.0
            return _REBASED
        return _DISTURBED

    def _trial(self, st: _Stream, since: float, t_end: float, direction: str, before: float, level: float) -> int:
        """`st`'s inputs moved: the new scaler (`inp.trial`) goes on trial for the stream's
        next chunk, scored in the shadow (the pipeline scores those windows with it too,
        decisions keep the current one). Meanwhile the stream goes on as without it: after
        the calibrator's regime test its errors re-baseline on the stretch (the kept
        distribution saved in `pending`); after the inputs' test nothing changes."""
        inp = st.inp
        assert inp is not None
        by_errors = not math.isnan(st.dist_since)
        kept = (st.s0, st.s1, st.s2, st.n_base, float(st.online))
        inp.pending = [
            float(by_errors),
            since,
            before,
            level,
            float(_DIRECTIONS.index(direction)),
            *kept,
            0.0,
            0.0,
            0.0,
        ]
        self.trials.add(self._key(st))
        if by_errors:
            st.s0, st.s1, st.s2 = st.d0, st.d1, st.d2
            st.n_base = st.d0
            st.online = True
            self._moments(st)
            st.dist_since = math.nan
            st.d0 = st.d1 = st.d2 = 0.0
            return _REBASED  # as without the scaler: the new regime's tail is learnt afresh
        return _LEARNT

    def _verify(self, st: _Stream, t_end: float) -> int | None:
        """The trial chunk is complete: its errors under the new scaler, against the
        distribution kept from before the change, not disturbed -> confirmed: the scaler is
        the override, the kept distribution is back, the RegimeChange goes out (with the
        scaler), this chunk's errors (the old scaler's) are not learnt (`_SCALED`: later
        rows of the batch are scored again). Disturbed -> undone: nothing changes (the
        stream went on as without the scaler); after the calibrator's regime test the
        error re-baseline's RegimeChange goes out now, and scaler trials stop until the
        errors re-baseline again (a fault's distribution: the return to normal must not be
        mapped onto the fault's inputs). None: the chunk is processed as usual."""
        inp = st.inp
        assert inp is not None and inp.pending is not None
        by_errors, since, before, level, d, k0, k1, k2, kn, kon, t0, t1, t2 = inp.pending
        inp.pending = None
        key = self._key(st)
        self.trials.discard(key)
        cfg = self.cfg
        mu, sigma = st.mu, st.sigma
        if by_errors and k0 > 0:
            mu = k1 / k0
            sigma = max(math.sqrt(max(k2 / k0 - mu * mu, 0.0)), cfg.min_sigma)
        m = t1 / _X_SCALE / max(t0, 1.0)
        var = max(t2 / (_X_SCALE * _X_SCALE) / max(t0, 1.0) - m * m, 0.0)
        back = t0 > 0 and abs(m - mu) < cfg.regime_z * sigma and var < cfg.regime_var_ratio * sigma * sigma
        direction = _DIRECTIONS[int(d)]
        if back:
            inp.confirm()
            self.overrides[key] = inp
            if by_errors:
                st.s0, st.s1, st.s2, st.n_base, st.online = k0, k1, k2, kn, bool(kon)
                self._moments(st)
            st.dist_since = math.nan
            st.d0 = st.d1 = st.d2 = 0.0
            thr = _exp(st.mu + self._z(st) * st.sigma)
            scaler = (tuple(inp.c), tuple(inp.s))
            self.events.append(RegimeChange(key, since, t_end, direction, before, level, thr, scaler))
            self.regime_changes += 1
            return _SCALED
        inp.trial = None
        if by_errors:
            inp.blocked = True
            thr = _exp(st.mu + self._z(st) * st.sigma)
            self.events.append(RegimeChange(key, since, t_end, direction, before, math.exp(st.mu), thr))
            self.regime_changes += 1
        return None

    def _z(self, st: _Stream) -> float:
        """z with a small-sample margin: ``z * (1 + chunk / n)`` for n learnt windows (x1.5
        at 2 chunks, x1.06 at 16): mu and sigma of a few correlated windows are rough."""
        return self.z * (1.0 + self.chunk / max(st.n_base, 1.0))

    def _moments(self, st: _Stream) -> None:
        if st.s0 <= 0:
            return
        st.mu = st.s1 / st.s0
        st.sigma = max(math.sqrt(max(st.s2 / st.s0 - st.mu * st.mu, 0.0)), self.cfg.min_sigma)

    def _key(self, st: _Stream) -> str:
        for key, s in self.streams.items():  # only on a regime change (rare)
            if s is st:
                return key
        raise KeyError("stream state not registered")
