"""Canary faults: documented synthetic perturbations of normal data, to test detection power.

A model that detects nothing raises no false alarms, so a gate that only counts false
alarms passes a blind model best of all. The retrain gate therefore also injects these
faults into the newest held-out *normal* data and asks whether the model's alarm fires.

Every canary perturbs one channel over a span ``[start, end)`` (epoch seconds); ``sigma``
is that channel's robust spread on the held-out data (IQR / 1.349, so a standard
deviation for Gaussian data; the standard deviation, then 1.0, where the IQR is 0)::

    spike               one sample (the first in the span) + SPIKE_SIGMA x sigma
    step                every sample in the span + STEP_SIGMA x sigma
    drift               a ramp from 0 at `start` to + DRIFT_SIGMA x sigma at `end`
    stuck               every sample in the span = the first sample's value
    noise_burst         + Gaussian noise of NOISE_SIGMA x sigma (seeded)
    broken_correlation  channel b (of the most correlated pair a, b) mirrored about its
                        span mean: b' = 2 mean(b) - b, so b moves against a while its
                        range and mean stay normal

Planning is deterministic: the same seed, data shape and settings give the same
canaries (kinds cycle in `KINDS` order, channels are drawn from a seeded generator, and
the pair for `broken_correlation` is the most correlated one). Pure numpy, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from monitor.core.types import FloatArray

KINDS: tuple[str, ...] = ("spike", "step", "drift", "stuck", "noise_burst", "broken_correlation")
SPIKE_SIGMA = 8.0
STEP_SIGMA = 3.0
DRIFT_SIGMA = 4.0
NOISE_SIGMA = 2.0


@dataclass(frozen=True)
class Canary:
    """One injected fault: `kind` on `channel` over [start, end) seconds (`partner`: the
    other channel of a broken correlation)."""

    name: str  # e.g. "step#1/pressure"
    kind: str
    channel: int
    start: float
    end: float
    sigma: float
    seed: int
    partner: int | None = None

    def as_dict(self, channels: Sequence[str]) -> dict[str, object]:
        d: dict[str, object] = {
            "name": self.name,
            "kind": self.kind,
            "channel": channels[self.channel],
            "start": self.start,
            "end": self.end,
            "sigma": round(self.sigma, 6),
        }
        if self.partner is not None:
            d["partner"] = channels[self.partner]
        return d


def robust_sigma(values: FloatArray) -> float:
    """IQR / 1.349 of the finite values; the standard deviation, then 1.0, where that is 0."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return 1.0
    q1, q3 = np.quantile(v, [0.25, 0.75])
    s = float(q3 - q1) / 1.349
    if s > 0:
        return s
    s = float(np.std(v))
    return s if s > 0 else 1.0


def most_correlated_pair(values: FloatArray) -> tuple[int, int]:
    """(a, b) with the largest |Pearson correlation| over the rows of `values` (N, C); (0, 1)
    when no pair varies (and (0, 0) for one channel)."""
    v = np.asarray(values, dtype=np.float64)
    c = v.shape[1]
    if c < 2:
        return (0, 0)
    best, pair = -1.0, (0, 1)
    std = v.std(axis=0)
    for a in range(c):
        for b in range(a + 1, c):
            if std[a] == 0 or std[b] == 0:
                continue
            r = abs(float(np.corrcoef(v[:, a], v[:, b])[0, 1]))
            if np.isfinite(r) and r > best:
                best, pair = r, (a, b)
    return pair


def plan(
    values: FloatArray,
    spans: Sequence[tuple[float, float]],
    *,
    per_kind: int = 2,
    kinds: Sequence[str] = KINDS,
    seed: int = 0,
) -> list[Canary]:
    """`per_kind` canaries of each kind; canary i lies in span ``spans[i % len(spans)]``.

    `values` (N, C) is the held-out normal data the channel spreads and the correlated
    pair are measured on.
    """
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown canary kind(s) {unknown}; known: {', '.join(KINDS)}")
    if not spans:
        raise ValueError("no span to inject canaries into")
    v = np.asarray(values, dtype=np.float64)
    n_channels = v.shape[1]
    sigmas = [robust_sigma(v[:, j]) for j in range(n_channels)]
    a, b = most_correlated_pair(v)
    rng = np.random.default_rng(seed)
    out: list[Canary] = []
    i = 0
    for rep in range(per_kind):
        for kind in kinds:
            start, end = spans[i % len(spans)]
            if kind == "broken_correlation" and n_channels >= 2:
                # alternate which side of the pair is mirrored
                channel, partner = (b, a) if rep % 2 == 0 else (a, b)
            else:
                channel, partner = int(rng.integers(n_channels)), None
            out.append(
                Canary(
                    f"{kind}#{rep + 1}",
                    kind,
                    channel,
                    float(start),
                    float(end),
                    sigmas[channel],
                    seed * 1000 + i,
                    partner,
                )
            )
            i += 1
    return out


def perturb(canary: Canary, times: FloatArray, values: FloatArray) -> FloatArray:
    """One channel's series (times (N,), values (N,)) with `canary` applied (a new array)."""
    t = np.asarray(times, dtype=np.float64)
    out = np.array(values, dtype=np.float64, copy=True)
    inside = (t >= canary.start) & (t < canary.end)
    idx = np.flatnonzero(inside)
    if idx.size == 0:
        return out
    s = canary.sigma
    if canary.kind == "spike":
        out[idx[0]] += SPIKE_SIGMA * s
    elif canary.kind == "step":
        out[idx] += STEP_SIGMA * s
    elif canary.kind == "drift":
        out[idx] += DRIFT_SIGMA * s * (t[idx] - canary.start) / max(canary.end - canary.start, 1e-9)
    elif canary.kind == "stuck":
        out[idx] = out[idx[0]]
    elif canary.kind == "noise_burst":
        out[idx] += np.random.default_rng(canary.seed).normal(0.0, NOISE_SIGMA * s, idx.size)
    elif canary.kind == "broken_correlation":
        out[idx] = 2.0 * float(np.mean(out[idx])) - out[idx]
    else:
        raise ValueError(f"unknown canary kind {canary.kind!r}")
    return out


def inject(canary: Canary, times: FloatArray, values: FloatArray) -> FloatArray:
    """Wide rows (times (N,), values (N, C)) with `canary` applied to its channel (a copy)."""
    out = np.array(values, dtype=np.float64, copy=True)
    out[:, canary.channel] = perturb(canary, times, out[:, canary.channel])
    return out
