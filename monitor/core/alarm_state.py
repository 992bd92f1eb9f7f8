"""Alarm state that survives a restart: an `AlarmMachine`'s per-stream state as plain
data, and back.

Written per group by the daemon (`monitor.io.calib_state` paths, ``alarm.json``)
periodically and at shutdown, read at start. What it restores: each stream's k-of-n
memory, its run below `resolve_below`, its open episode (alert id, start, peak and its
channels) and its last resolve time (the cooldown). So an episode that was firing when
the daemon stopped goes on firing with no second ``firing`` alert, and resolves once.

A restored episode whose stream sends nothing more is closed by `resolve_stale`: a
``resolved`` alert with ``reason: stale``, ended at the last window the state saw.
Pure: no clock, no files; the caller decides when a stream counts as silent.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from typing import Any

from monitor.core.alarm import AlarmMachine, AlarmState, _Episode
from monitor.core.types import Alert

__all__ = ["ALARM_STATE_VERSION", "alarm_to_state", "resolve_stale", "restore_alarm"]

ALARM_STATE_VERSION = 1


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None  # JSON has no inf / NaN that every reader takes


def _float(x: Any, default: float) -> float:
    if x is None:
        return default
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ValueError(f"expected a number, got {x!r}")
    return float(x)


def alarm_to_state(machine: AlarmMachine, last_times: dict[str, float]) -> dict[str, Any]:
    """Plain JSON-able data of every stream's alarm state; `last_times`: the data time of
    each stream's newest window (where a stale resolve ends the episode)."""
    streams: dict[str, Any] = {}
    for stream, st in machine.states.items():
        ep = st.episode
        streams[stream] = {
            "recent": [bool(b) for b in st.recent],
            "below_run": int(st.below_run),
            "last_resolved_at": _num(st.last_resolved_at),
            "last_time": _num(last_times.get(stream, -math.inf)),
            "episode": None
            if ep is None
            else {
                "alert_id": ep.alert_id,
                "started_at": ep.started_at,
                "peak_score": _num(ep.peak_score),
                "peak_channels": list(ep.peak_channels),
                "cold_since": _num(ep.cold_since),
            },
        }
    return {"version": ALARM_STATE_VERSION, "model_version": machine.model_version, "streams": streams}


def restore_alarm(machine: AlarmMachine, state: Any) -> dict[str, float]:
    """Adopt `state` (of `alarm_to_state`) into `machine`; returns, for each stream with an
    open episode, the data time of its last window. ValueError on a malformed state (the
    machine is then unchanged)."""
    if not isinstance(state, dict) or state.get("version") != ALARM_STATE_VERSION:
        raise ValueError(f"not an alarm state of version {ALARM_STATE_VERSION}")
    streams = state.get("streams")
    if not isinstance(streams, dict):
        raise ValueError("alarm state: 'streams' is not a mapping")
    n = machine.cfg.n
    restored: dict[str, AlarmState] = {}
    open_at: dict[str, float] = {}
    for stream, item in streams.items():
        if not isinstance(item, dict):
            raise ValueError(f"alarm state of stream {stream!r} is not a mapping")
        recent = item.get("recent", [])
        if not isinstance(recent, list) or not all(isinstance(b, bool) for b in recent):
            raise ValueError(f"alarm state of stream {stream!r}: 'recent' is not a list of booleans")
        st = AlarmState(recent=deque(recent[-n:], maxlen=n))
        st.above = sum(st.recent)
        st.below_run = int(_float(item.get("below_run"), 0.0))
        st.last_resolved_at = _float(item.get("last_resolved_at"), -math.inf)
        ep = item.get("episode")
        if ep is not None:
            if not isinstance(ep, dict) or not isinstance(ep.get("alert_id"), str):
                raise ValueError(f"alarm state of stream {stream!r}: malformed episode")
            channels = ep.get("peak_channels", [])
            if not isinstance(channels, list) or not all(isinstance(c, dict) for c in channels):
                raise ValueError(f"alarm state of stream {stream!r}: peak_channels is not a list of objects")
            st.episode = _Episode(
                alert_id=ep["alert_id"],
                started_at=_float(ep.get("started_at"), math.nan),
                peak_score=_float(ep.get("peak_score"), 0.0),
                peak_channels=channels,
                cold_since=_float(ep.get("cold_since"), math.nan),
            )
            open_at[str(stream)] = _float(item.get("last_time"), st.episode.started_at)
        restored[str(stream)] = st
    machine.states = restored
    return open_at


def resolve_stale(machine: AlarmMachine, stream: str, ended_at: float, group: str) -> Alert | None:
    """Close `stream`'s open episode because its stream went silent: the ``resolved``
    alert (``reason: stale``), or None when it is not firing."""
    st = machine.states.get(stream)
    if st is None or st.episode is None:
        return None
    alert = machine._resolve(stream, st, ended_at, math.nan)
    return dataclasses.replace(alert, ended_at=ended_at, group=group, reason="stale", current_score=0.0)
