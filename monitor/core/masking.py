"""Masked scoring: a channel in sensor fault is scored from the others.

While `monitor.core.sensor_health` holds a channel in a frame fault (stuck, out of
range, rate), the pipeline zeroes that channel's column in the standardized window (0 is
the channel's training mean: the value training's `mask_prob` corruption writes, see
`monitor.core.model.train`), so the autoencoder reconstructs it from the other channels,
and the window's raw error leaves the channel's error out. A broken instrument then can
neither hide a process fault (a frozen value the model happens to reconstruct well) nor
fake one (an impossible value far from its reconstruction). Anomaly alerts raised on such
windows name the masked channels (`Alert.masked`).

Masking needs another channel to judge the process by. A window whose every scored
channel is in fault is scored unmasked (`keep_one_judge`): a single-channel feed that
leaves its training range is, from that one channel, as likely a process change as a
broken sensor, and masking it would score it 0 for as long as the excursion lasts (a
level shift or trend on a univariate feed went unseen). The sensor alert still fires, so
both readings reach the operator.

Pure numpy on arrays the pipeline already holds; called only when a mask is set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from monitor.core.types import Alert, Float32Array, Floats, ScoreBatch

__all__ = ["exclude_masked", "keep_one_judge", "mask_windows", "name_masked"]


def keep_one_judge(masked: np.ndarray) -> np.ndarray | None:
    """`masked` (B, C) with the rows that mask every channel cleared (scored unmasked: see
    the module docstring), or None when no mask is left."""
    full = masked.all(axis=1)
    if full.any():
        masked = masked.copy()
        masked[full] = False
        if not masked.any():
            return None
    return masked


def mask_windows(
    x: Float32Array, masked: np.ndarray, reconstruct: Callable[[Float32Array], Float32Array] | None
) -> None:
    """Mask, in place, the columns of `x` (B, W, C_in) that `masked` (B, C) marks (C <= C_in:
    the scored channels come first, context channels are never masked): zero them (the
    training mean, as `mask_prob` corruption does), then, with `reconstruct`, replace them
    by the model's reconstruction of that zeroed window (one imputation step: a whole
    zeroed column is further from training than `mask_prob`'s scattered zeros, and
    the other channels reconstruct better around an imputed one)."""
    rows, cols = np.nonzero(masked)
    x[rows, :, cols] = 0.0
    if reconstruct is None:
        return
    hit = np.flatnonzero(masked.any(axis=1))
    recon = reconstruct(x[hit])
    pos = np.searchsorted(hit, rows)
    x[rows, :, cols] = recon[pos, :, cols]


def exclude_masked(raw: Floats, per_channel: Floats, masked: np.ndarray, reduction: str) -> tuple[Floats, Floats]:
    """(raw, per_channel) with the masked channels' errors left out: per_channel 0 there,
    raw the mean (or, "channel_max", the maximum) of the other channels' errors. A window
    with every channel masked scores 0: nothing left to judge the process by (the pipeline
    clears such rows first, `keep_one_judge`, and scores them unmasked)."""
    rows = np.flatnonzero(masked.any(axis=1))
    per_channel = np.array(per_channel, dtype=np.float32, copy=True)
    raw = np.array(raw, dtype=np.float32, copy=True)
    sub = per_channel[rows]
    keep = ~masked[rows]
    sub = np.where(keep, sub, np.float32(0.0))
    kept = keep.sum(axis=1)
    value = sub.max(axis=1) if reduction == "channel_max" else sub.sum(axis=1) / np.maximum(kept, 1)
    raw[rows] = np.where(kept > 0, value, np.float32(0.0))
    per_channel[rows] = sub
    return raw, per_channel


def name_masked(
    alerts: list[Alert], emitted_at: Sequence[float], scores: ScoreBatch, masked: np.ndarray, channels: Sequence[str]
) -> list[Alert]:
    """The alarm's alerts, each naming the channels masked in the window behind it
    (`emitted_at`: that window's data time, one per alert)."""
    times = np.asarray(scores.times, dtype=np.float64)
    out: list[Alert] = []
    for alert, t in zip(alerts, emitted_at, strict=True):
        names: list[str] = []
        for stream, start, stop in scores.runs:
            if stream != alert.stream:
                continue
            hit = np.flatnonzero(times[start:stop] == t)
            if hit.size:
                names = [channels[c] for c in np.flatnonzero(masked[start + int(hit[0])]).tolist()]
                break
        out.append(dataclasses.replace(alert, masked=names) if names else alert)
    return out
