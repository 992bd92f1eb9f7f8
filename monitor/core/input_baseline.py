"""Per-stream input re-baseline at a regime change: a scaler override (issue 9).

The calibrator (calibrate.py) re-baselines a stream's *error* distribution after a
sustained change; this module re-baselines its *inputs*: at the same `RegimeChange` the
stream's scaler (per channel mean, and std for a variance change) is re-estimated from the
readings of the disturbed stretch, and the stream's later windows are standardized with it,
so that after a level shift the model sees inputs like those it was trained on and its
reconstruction error returns to its normal level (the calibrator then keeps its error
distribution, sensitivity in the new regime is that of the old one).

All sums are of the stream's *push-time* standardized inputs ``u = (v - mean) / std`` (its
adapter's scaler, or the group's): the last frame of each scored window, as the pipeline
observed it. Batch independence, as for the error sums: a chunk's sums are taken in fixed
point (``rint(u * 1024)``, clipped so that a chunk's sum of squares stays below 2**53), so a
chunk cut by any batches sums exactly as one; chunk sums are folded in chunk order.

Per stream: the decayed sums over learnt chunks (the baseline B, same decay as the error
sums) and the sums of the stretch D held out of it: chunks whose errors are disturbed (the
calibrator's test), and, once the stream is online, chunks whose input mean is OFF_Z
baseline spreads off (their errors are still learnt). A normal chunk folds D into B (a
transient or a seasonal excursion). Two ways to a re-baseline of the scaler:

* the calibrator's regime change (errors disturbed for `rebaseline_after_seconds`);
* an input regime change: D spans `rebaseline_after_seconds`, its mean is still OFF_Z
  spreads off and its errors were ERR_Z sigmas above the stream's mean on average (a level
  shift the model half-follows raises its errors by less than the calibrator's `regime_z`:
  they would be learnt as a new error level, and the model's sensitivity lost).

At a re-baseline, per channel:

* mean: ``D - B`` in baseline spreads; at least SHIFT_MIN of them -> the channel shifts;
* std: D's spread over B's outside [1 / SPREAD_MIN, SPREAD_MIN] -> the channel rescales.

No channel changes: no override (the calibrator re-baselines its error distribution, as
before). Otherwise the override maps the new regime's inputs where the old regime's were:
with the model's input ``u' = (u - c) / s``, ``s <- s * sd_D / sd_B`` and ``c <- mean_D -
s * (mean_B - c) / s_old``, and the baseline becomes the disturbed stretch (the new normal).
The pipeline applies it as ``u' = u * a + b`` (float32, ``a = 1 / s``, ``b = -c / s``) to
each of the stream's windows after the regime change's window, whatever the batch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from monitor.core.types import Float32Array, FloatArray

SHIFT_MIN = 0.5  # a channel's mean moved by at least this many baseline spreads: it shifts
OFF_Z = 1.0  # a chunk whose input mean is this many baseline spreads off (any channel) is held
# out of the baseline; a held stretch this far off at its end re-baselines the scaler ...
ERR_Z = 0.5  # ... when its errors were, on average, this many sigmas above the stream's mean
SPREAD_MIN = 2.0  # its spread changed by at least this factor (either way): it rescales
RATIO_MAX = 100.0  # bound of a std ratio (a flat or exploding stretch must not blow up inputs)
U_SCALE = 1024.0  # fixed point of standardized inputs in a chunk's sums
# a re-baseline on trial (the calibrator's `_trial`): [by errors?, since, level before,
# level after, direction, the kept error sums s0 s1 s2, n_base, online, trial sums t0 t1 t2]
PENDING_SIZE = 13
_OFF_Z2 = OFF_Z * OFF_Z
_K1, _K2 = 1.0 / U_SCALE, 1.0 / (U_SCALE * U_SCALE)  # exact: powers of two


class StreamInputs:
    """One stream's input sums and scaler override (push-time standardized units).

    Per-channel vectors are Python lists: they are updated once per segment of a scoring
    batch, where a numpy call on a handful of values costs more than the arithmetic."""

    __slots__ = (
        "b0",
        "b1",
        "b2",
        "blocked",
        "c",
        "d0",
        "d1",
        "d2",
        "ex",
        "ez",
        "p1",
        "p2",
        "pending",
        "s",
        "since",
        "trial",
    )
    _SCALARS = ("b0", "blocked", "d0", "ex", "ez", "since")
    _OPTIONAL = ("pending", "trial")  # a list of numbers or None

    def __init__(self, channels: int):
        z = [0.0] * channels
        self.p1, self.p2 = z[:], z[:]  # current chunk, fixed point (integer-valued floats)
        self.b0, self.b1, self.b2 = 0.0, z[:], z[:]  # decayed baseline (learnt chunks)
        self.d0, self.d1, self.d2 = 0.0, z[:], z[:]  # the stretch held out of the baseline
        self.since = math.nan  # its first window's time
        self.ex = self.ez = 0.0  # its sums of log errors and of their z (in the stream's sigma)
        self.c, self.s = z[:], [1.0] * channels  # override: u' = (u - c) / s
        # a re-baseline on trial for the stream's next chunk (the calibrator's `_verify`):
        self.trial: list[float] | None = None  # [*c, *s] of the scaler on trial
        self.pending: list[float] | None = None  # what the calibrator needs to confirm or undo it
        # after an undone trial the errors' distribution is the stretch's (a fault, likely):
        # no trial (and no input test) until the errors re-baseline again, so that the
        # return to normal is not mapped onto the fault's inputs
        self.blocked = False

    @property
    def active(self) -> bool:
        return any(v != 0.0 for v in self.c) or any(v != 1.0 for v in self.s)

    def add(self, s1: list[float], s2: list[float]) -> None:
        """A segment's fixed-point sums (exact: integer-valued floats below 2**53)."""
        p1, p2 = self.p1, self.p2
        for k in range(len(p1)):
            p1[k] += s1[k]
            p2[k] += s2[k]

    def _take_chunk(self) -> tuple[list[float], list[float]]:
        p1, p2 = _finite(self.p1, self.p2)
        c1 = [v / U_SCALE for v in p1]
        c2 = [v / (U_SCALE * U_SCALE) for v in p2]
        n = len(c1)
        self.p1, self.p2 = [0.0] * n, [0.0] * n
        return c1, c2

    def _baseline(self) -> tuple[list[float], list[float]]:
        """The baseline's mean and spread per channel (spread floored at 1e-9)."""
        b0 = self.b0
        mb = [v / b0 for v in self.b1]
        sb = [max(math.sqrt(max(q / b0 - m * m, 0.0)), 1e-9) for q, m in zip(self.b2, mb, strict=True)]
        return mb, sb

    def off(self, windows: float) -> bool:
        """The current chunk's input mean is OFF_Z baseline spreads off, in any channel
        (squared, no sqrt: once per chunk on the scoring path)."""
        b0 = self.b0
        if b0 <= 0:
            return False
        inv = 1.0 / (U_SCALE * windows)
        for p, b1, b2 in zip(self.p1, self.b1, self.b2, strict=True):
            m = b1 / b0
            d = p * inv - m
            if d * d >= _OFF_Z2 * max(b2 / b0 - m * m, 1e-18):
                return True
        return False

    def learnt(self, lam: float, windows: float) -> None:
        """A normal chunk (errors learnt, inputs on the baseline): into the baseline, with
        the stretch held before it (it was a transient, a seasonal excursion, not a regime).
        In place, one loop over the channels (once per chunk on the scoring path)."""
        d0 = self.d0
        self.b0 = lam * self.b0 + windows + d0
        b1, b2, p1, p2 = self.b1, self.b2, self.p1, self.p2
        for k in range(len(p1)):
            a, q = p1[k], p2[k]
            if not q < _EXACT:  # NaN, or too large to be exact: nothing for this channel
                a = q = 0.0
            b1[k] = lam * b1[k] + a * _K1
            b2[k] = lam * b2[k] + q * _K2
            p1[k] = p2[k] = 0.0
        if d0:
            for k in range(len(b1)):
                b1[k] += self.d1[k]
                b2[k] += self.d2[k]
            self._close_stretch()

    def hold(self, windows: float, t_first: float, x_sum: float, z: float) -> None:
        """A chunk kept out of the baseline (its errors disturbed, or its inputs `off`):
        into the held stretch; `x_sum`: its log errors' sum, `z`: their mean's z."""
        c1, c2 = self._take_chunk()
        if math.isnan(self.since):
            self.since = t_first
        self.d0 += windows
        self.d1 = [d + c for d, c in zip(self.d1, c1, strict=True)]
        self.d2 = [d + c for d, c in zip(self.d2, c2, strict=True)]
        self.ex += x_sum
        self.ez += z * windows

    def due(self, t_end: float, after: float) -> bool:
        """The held stretch spans `after` seconds, is still OFF_Z off the baseline and its
        errors were raised (ERR_Z): the inputs changed in a way the model does not know."""
        if math.isnan(self.since) or t_end - self.since < after or self.b0 <= 0 or self.d0 <= 0:
            return False
        mb, sb = self._baseline()
        d0 = self.d0
        far = any(abs(d / d0 - m) >= OFF_Z * sd for d, m, sd in zip(self.d1, mb, sb, strict=True))
        return far and self.ez / d0 >= ERR_Z

    def rebase(self) -> bool:
        """The stream re-baselines (after `hold` for the chunk that completed the
        stretch): a new override from D against B, on `trial` (not in effect yet; the
        stretch becomes the baseline either way); False when the inputs did not move (no
        trial; the caller decides about the stretch: `accept`)."""
        if self.b0 <= 0 or self.d0 <= 0:
            return False
        b1, b2, d1, d2 = (np.asarray(v) for v in (self.b1, self.b2, self.d1, self.d2))
        mb, md = b1 / self.b0, d1 / self.d0
        sb = np.sqrt(np.maximum(b2 / self.b0 - mb * mb, 0.0))
        sd = np.sqrt(np.maximum(d2 / self.d0 - md * md, 0.0))
        floor = 1e-9
        ratio = np.clip(np.maximum(sd, floor) / np.maximum(sb, floor), 1.0 / RATIO_MAX, RATIO_MAX)
        spread = (ratio >= SPREAD_MIN) | (ratio <= 1.0 / SPREAD_MIN)
        shift = np.abs(md - mb) >= SHIFT_MIN * np.maximum(sb, floor)
        if not (spread.any() or shift.any()):
            return False
        s_old, c_old = np.asarray(self.s), np.asarray(self.c)
        s_new = np.where(spread, s_old * ratio, s_old)
        # where the old regime's mean sat in the model's input space, the new one goes
        c_new = md - s_new * (mb - c_old) / s_old
        self.trial = [*np.where(shift | spread, c_new, c_old).tolist(), *s_new.tolist()]
        self.b0, self.b1, self.b2 = self.d0, self.d1[:], self.d2[:]
        self._close_stretch()
        return True

    def accept(self) -> None:
        """The held stretch becomes the baseline (a regime change without a new scaler)."""
        if self.d0 > 0:
            self.b0, self.b1, self.b2 = self.d0, self.d1[:], self.d2[:]
        self._close_stretch()

    def confirm(self) -> None:
        """The scaler on trial brought the errors back: it is the override from now on."""
        trial = self.trial
        assert trial is not None  # only after a rebase
        n = len(self.c)
        self.c, self.s = trial[:n], trial[n:]
        self.trial = None

    def trial_affine(self) -> tuple[Float32Array, Float32Array]:
        """(a, b) of the scaler on trial, as `affine`."""
        trial = self.trial
        assert trial is not None
        n = len(self.c)
        s, c = np.asarray(trial[n:]), np.asarray(trial[:n])
        return (1.0 / s).astype(np.float32), (-c / s).astype(np.float32)

    def _close_stretch(self) -> None:
        n = len(self.d1)
        self.d0 = 0.0
        self.d1, self.d2 = [0.0] * n, [0.0] * n
        self.since = math.nan
        self.ex = self.ez = 0.0

    def affine(self) -> tuple[Float32Array, Float32Array]:
        """(a, b) float32: the override as ``u' = u * a + b`` on the scored channels."""
        s, c = np.asarray(self.s), np.asarray(self.c)
        return (1.0 / s).astype(np.float32), (-c / s).astype(np.float32)

    # -------------------------------------------------------------- persistence

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k in self.__slots__:
            v = getattr(self, k)
            out[k] = float(v) if k in self._SCALARS else None if v is None else [float(x) for x in v]
        return out

    @classmethod
    def from_dict(cls, data: Any, channels: int) -> StreamInputs:
        if not isinstance(data, dict) or set(data) != set(cls.__slots__):
            raise ValueError(f"a stream's input state is a mapping of {sorted(cls.__slots__)}")
        st = cls(channels)
        for k in cls.__slots__:
            v = data[k]
            if k in cls._SCALARS:
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise ValueError(f"input state field {k} is not a number: {v!r}")
                if k in ("b0", "d0", "blocked") and not v >= 0:
                    raise ValueError(f"input state field {k} is not a count: {v!r}")
                setattr(st, k, float(v))
                continue
            if k in cls._OPTIONAL and v is None:
                continue
            size = {"trial": 2 * channels, "pending": PENDING_SIZE}.get(k, channels)
            ok = isinstance(v, list) and len(v) == size
            ok = ok and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
            if not ok:
                raise ValueError(f"input state field {k} is not {size} finite numbers")
            setattr(st, k, [float(x) for x in v])
        if (st.pending is None) != (st.trial is None):
            raise ValueError("input state: a re-baseline on trial needs both 'trial' and 'pending'")
        if st.trial is not None and not all(v > 0 for v in st.trial[channels:]):
            raise ValueError("input state: scaler ratios must be > 0")
        st.blocked = bool(st.blocked)
        if not all(v > 0 for v in st.s):
            raise ValueError("input state: scaler ratios must be > 0")
        return st


def fixed_point(obs: FloatArray, mean: FloatArray, scale: FloatArray) -> FloatArray:
    """``rint((obs - mean) * scale)`` (rows x channels), `scale` = ``inv_std * U_SCALE``:
    three ufunc calls, in place (once per scoring batch). Not clipped: a chunk whose sum of
    squares reaches 2**53 (where float sums stop being exact, so batch-independent) or is
    NaN adds nothing for that channel (`_finite`); below that every partial sum is exact."""
    q: FloatArray = np.subtract(obs, mean)
    np.multiply(q, scale, out=q)
    np.rint(q, out=q)
    return q


_EXACT = 2.0**53


def _finite(p1: list[float], p2: list[float]) -> tuple[list[float], list[float]]:
    """A chunk's fixed-point sums, zero for a channel whose sum of squares is NaN or not
    below 2**53 (then not exact; its sum of values is smaller in magnitude)."""
    keep = [q < _EXACT for q in p2]  # False for NaN too
    return [v if k else 0.0 for v, k in zip(p1, keep, strict=True)], [
        q if k else 0.0 for q, k in zip(p2, keep, strict=True)
    ]
