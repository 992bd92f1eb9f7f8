"""What the pipeline adds to the alarm's alerts after scoring: the operating state of the
window behind each alert, and the regime-change events in data-time order.

Pure functions of one flush's outputs (like `masking.name_masked`), so batching changes
neither the context nor the order of what goes out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from monitor.core.alarm import alert_id
from monitor.core.calibrate import RegimeChange
from monitor.core.model.latent import States
from monitor.core.types import Alert, Float32Array, FloatArray, ScoreBatch

ScalerOf = Callable[[str], tuple[FloatArray, FloatArray]]
"""A stream's push-time scaler: (mean, 1 / std) in raw units (`Pipeline.scaler_for`)."""


def with_operating_states(
    alerts: list[Alert], emitted_at: Sequence[float], scores: ScoreBatch, codes: Float32Array, st: States
) -> list[Alert]:
    """Each alarm alert with the operating state of the window behind it (its
    `AlarmMachine.emitted_at` time, in its stream's rows)."""
    times = np.asarray(scores.times, dtype=np.float64)
    out = []
    for alert, at in zip(alerts, emitted_at, strict=True):
        row = None
        for stream, start, stop in scores.runs:
            if stream == alert.stream:
                hits = np.flatnonzero(times[start:stop] == at)
                if hits.size:
                    row = start + int(hits[0])
        if row is None:
            out.append(alert)
            continue
        state, novelty = st.assign(codes[row : row + 1])
        i = int(state[0])
        context = {
            "index": i + 1,
            "of": st.k,
            "name": st.names[i],
            "novelty": round(float(novelty[0]), 4),
            "text": st.describe(i),
        }
        out.append(replace(alert, operating_state=context))
    return out


def with_regime_changes(
    alerts: list[Alert],
    emitted_at: Sequence[float],
    events: list[RegimeChange],
    version: str,
    scaler_of: ScalerOf,
) -> list[Alert]:
    """The alarm's alerts and the regime-change events, in the data-time order they
    were raised (so each stream's sequence is the same whatever the batches)."""
    out = list(zip(emitted_at, range(len(alerts)), alerts, strict=True))
    for j, ev in enumerate(events):
        out.append((ev.at, len(alerts) + j, regime_alert(ev, version, scaler_of)))
    out.sort(key=lambda item: (item[0], item[1]))
    return [a for _, _, a in out]


def regime_alert(ev: RegimeChange, version: str, scaler_of: ScalerOf) -> Alert:
    """The `kind: regime_change` event alert of one regime change."""
    detail: dict[str, Any] = {
        "direction": ev.direction,
        "level_before": ev.level_before,
        "level_after": ev.level_after,
    }
    if ev.scaler is not None:  # the new scaler (raw units), what the stream is standardized with from now on
        c, s = (np.asarray(v) for v in ev.scaler)
        mean, inv_std = scaler_of(ev.stream)
        sd = 1.0 / inv_std
        detail["scaler"] = {"mean": [float(v) for v in mean + c * sd], "std": [float(v) for v in sd * s]}
    return Alert(
        alert_id=alert_id(ev.stream, ev.started_at, f"{version}|regime_change"),
        stream=ev.stream,
        state="event",
        started_at=ev.started_at,
        ended_at=ev.at,
        peak_score=ev.level_after / ev.level_before if ev.level_before > 0 else float("inf"),
        current_score=0.0,
        threshold=ev.threshold,
        model_version=version,
        kind="regime_change",
        detail=detail,
    )
