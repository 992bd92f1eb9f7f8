"""Leave alerting periods out of training data.

Spans come from alert messages (the daemon's `firing`/`resolved` JSON, as written by
`monitor replay --offline --alerts-out`, or a recording of the alert topic) or are given
by hand. Data inside a span, and `pad_seconds` before it (the window that led up to the
alert), is removed; the gap it leaves makes frames stale, so no training window spans it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from monitor.app.training import StreamData
from monitor.io.alertlog import labels_path, read_labels
from monitor.io.codec import parse_timestamp
from monitor.io.recording import iter_recordings

Span = tuple[float, float, str | None]  # start, end, stream (None: every stream)


def _alert_dicts(path: Path) -> Iterable[dict]:
    if path.name.endswith(".gz") or path.is_dir():
        for msg in iter_recordings([path]):
            try:
                yield json.loads(msg.payload)
            except ValueError:
                continue
        return
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if "payload" in obj and "topic" in obj:  # a recorded message
                try:
                    obj = json.loads(obj["payload"])
                except (TypeError, ValueError):
                    continue
            yield obj


def episodes_from_alerts(paths: Sequence[str | Path]) -> list[tuple[str, float, float, str | None]]:
    """(alert_id, start, end, stream) per firing..resolved episode; one never resolved runs to +inf."""
    open_: dict[str, dict] = {}
    out: list[tuple[str, float, float, str | None]] = []
    for p in paths:
        for a in _alert_dicts(Path(p)):
            if not isinstance(a, dict) or "alert_id" not in a or "started_at" not in a:
                continue
            if a.get("state") == "firing":
                open_[a["alert_id"]] = a
            elif a.get("state") == "resolved":
                open_.pop(a["alert_id"], None)
                out.append((str(a["alert_id"]), float(a["started_at"]), float(a["ended_at"]), a.get("stream")))
    out.extend((str(i), float(a["started_at"]), float("inf"), a.get("stream")) for i, a in open_.items())
    return out


def alert_kinds(paths: Sequence[str | Path]) -> dict[str, dict]:
    """The last message of every alert id in the logs (its `kind`, `state`, detail...)."""
    out: dict[str, dict] = {}
    for p in paths:
        for a in _alert_dicts(Path(p)):
            if isinstance(a, dict) and "alert_id" in a:
                out[str(a["alert_id"])] = a
    return out


def regime_spans_from_alerts(paths: Sequence[str | Path]) -> list[tuple[str, float, float, str | None]]:
    """(alert_id, start, end, stream) per regime a stream was re-baselined onto.

    A `regime_change` event re-baselines a stream's calibration on its disturbed stretch,
    so from then on the alarm stays quiet on it, whether it was a new normal or a long
    fault: either way no anomaly episode covers the rest of it. The regime runs from the
    event's `started_at` to the stream's next `regime_change` (or +inf). A next event that
    returns the errors to nearer the level before the regime (`level_after` closer, in
    log, to the first event's `level_before` than to its own `level_before`) ends the
    regime at its own `ended_at` (its disturbed stretch begins at a chunk boundary, so it
    may start inside the fault's last rows; the calibration re-baselined only at
    `ended_at`) and opens none: that is the fault ending."""
    events: dict[str | None, list[dict]] = {}
    for p in paths:
        for a in _alert_dicts(Path(p)):
            if isinstance(a, dict) and a.get("kind") == "regime_change" and "alert_id" in a and "started_at" in a:
                events.setdefault(a.get("stream"), []).append(a)
    out: list[tuple[str, float, float, str | None]] = []
    for stream, evs in events.items():
        evs.sort(key=lambda a: float(a["started_at"]))
        open_: dict | None = None
        for a in evs:
            if open_ is not None:
                back = _returns(open_, a)
                end = a.get("ended_at") if back else a["started_at"]
                out.append((str(open_["alert_id"]), float(open_["started_at"]), float(end or a["started_at"]), stream))
                if back:
                    open_ = None
                    continue
            open_ = a
        if open_ is not None:
            out.append((str(open_["alert_id"]), float(open_["started_at"]), float("inf"), stream))
    return out


def _level(a: dict, key: str) -> float:
    detail = a.get("detail")
    if not isinstance(detail, dict):
        return float("nan")
    try:
        v = float(detail.get(key, float("nan")))
    except (TypeError, ValueError):
        return float("nan")
    return v if v > 0 else float("nan")


def _returns(first: dict, nxt: dict) -> bool:
    """`nxt` brings the errors back nearer the level before `first` than the level it left."""
    base, left, now = _level(first, "level_before"), _level(nxt, "level_before"), _level(nxt, "level_after")
    if not all(np.isfinite([base, left, now])):
        return False
    return bool(abs(np.log(now / base)) <= abs(np.log(now / left)))


def spans_from_alerts(paths: Sequence[str | Path]) -> list[Span]:
    """Firing..resolved spans per alert id; an alert never resolved runs to +inf."""
    return [(s, e, stream) for _, s, e, stream in episodes_from_alerts(paths)]


def labelled_spans(paths: Sequence[str | Path]) -> tuple[list[Span], dict[str, int]]:
    """The spans `monitor train --exclude-alerts` leaves out, with the operators' labels
    beside each alert log (``alert-labels.json``, `monitor.io.alertlog`) applied as
    `monitor retrain` applies them: confirmed and unlabelled episodes are left out,
    false-alarm episodes stay in as normal data. Returns (spans, counts by label)."""
    labels: dict[str, dict] = {}
    for p in paths:
        labels.update(read_labels(labels_path(Path(p))))
    counts = {"confirmed": 0, "false_alarm": 0, "unlabelled": 0}
    spans: list[Span] = []
    for alert_id, start, end, stream in episodes_from_alerts(paths):
        label = labels.get(alert_id, {}).get("label") or "unlabelled"
        counts[label] = counts.get(label, 0) + 1
        if label != "false_alarm":
            spans.append((start, end, stream))
    return spans, counts


def count_in_spans(data: list[StreamData], spans: Sequence[Span], pad_seconds: float = 0.0) -> int:
    """How many rows/readings lie inside any span (what `exclude_spans` would remove)."""
    n = 0
    for sd in data:
        mine = [(s - pad_seconds, e) for s, e, stream in spans if stream in (None, sd.stream)]
        if not mine:
            continue
        if sd.timestamps is not None:
            hit = np.zeros(len(sd.timestamps), dtype=bool)
            for s, e in mine:
                hit |= (sd.timestamps >= s) & (sd.timestamps <= e)
            n += int(hit.sum())
        n += int(_in_spans(sd.readings.times, mine).sum())
    return n


def parse_span(start: str, end: str) -> Span:
    """A hand-given span: epoch seconds/ms or ISO 8601 for each end."""
    s, e = parse_timestamp(start), parse_timestamp(end)
    if e < s:
        raise ValueError(f"span end {end} is before its start {start}")
    return (s, e, None)


def exclude_spans(data: list[StreamData], spans: Sequence[Span], pad_seconds: float = 0.0) -> int:
    """Remove rows/readings inside any span (in place); returns how many were removed."""
    removed = 0
    for sd in data:
        mine = [(s - pad_seconds, e) for s, e, stream in spans if stream in (None, sd.stream)]
        if not mine:
            continue
        if sd.timestamps is not None and sd.values is not None:  # wide rows: both or neither
            drop = np.zeros(len(sd.timestamps), dtype=bool)
            for s, e in mine:
                drop |= (sd.timestamps >= s) & (sd.timestamps <= e)
            removed += int(drop.sum())
            sd.timestamps, sd.values = sd.timestamps[~drop], sd.values[~drop]
        if sd.readings:
            keep = ~_in_spans(sd.readings.times, mine)
            removed += len(sd.readings) - int(keep.sum())
            sd.readings = sd.readings.take(keep)
    return removed


def _in_spans(times: np.ndarray, spans: Sequence[tuple[float, float]]) -> np.ndarray:
    """Per time: whether it lies in any closed span [s, e]."""
    hit = np.zeros(len(times), dtype=bool)
    for s, e in spans:
        hit |= (times >= s) & (times <= e)
    return hit
