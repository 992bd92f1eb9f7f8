"""Detection-power checks of the retrain gate: canary faults, the threshold jump, past episodes.

A false-alarm budget alone passes a blind model best of all (it never alarms), so
`monitor retrain` also asks, of the candidate and of the serving model alike:

* **canaries**: the faults of `monitor.core.canary` injected, one at a time, into the
  newest held-out normal data; a canary counts as detected when the alarm is on at some
  scored window between its start and one window past its end *and* was not on there in
  the same run without the canary (a model that alarms all the time detects nothing);
* **threshold jump**: the candidate's calibrated threshold against the serving one's;
* **past episodes**: the spans of earlier alerts (except those an operator marked as
  false alarms) replayed, each must raise the alarm again.

Every model pass goes through `score_slice`, i.e. the daemon's own `Runner`
(`run_backtest` for wide rows, the readings fed in time order for recordings).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from monitor.app.backtest import run_backtest
from monitor.app.training import StreamData
from monitor.core import canary as canaries
from monitor.core.config import AlarmConfig, CalibrationConfig, Config
from monitor.core.fleet import Fleet, GroupResult
from monitor.core.runner import Runner
from monitor.core.scoring_model import ScoringModel
from monitor.core.types import Alert, Score

# --------------------------------------------------------------------------- slicing


def time_slice(sd: StreamData, lo: float = -math.inf, hi: float = math.inf) -> StreamData:
    """The part of a StreamData with lo <= timestamp < hi."""
    out = StreamData(sd.stream, list(sd.channels))
    if sd.timestamps is not None and sd.values is not None:
        keep = (sd.timestamps >= lo) & (sd.timestamps < hi)
        out.timestamps = sd.timestamps[keep]
        out.values = sd.values[keep]
    out.readings = sd.readings.between(lo, hi)
    return out


def times_of(sd: StreamData) -> np.ndarray:
    """Every timestamp of a StreamData, sorted."""
    parts = [sd.timestamps] if sd.timestamps is not None else []
    if sd.readings:
        parts.append(sd.readings.times)
    return np.sort(np.concatenate(parts)) if parts else np.zeros(0)


def wide(sd: StreamData) -> tuple[np.ndarray, np.ndarray]:
    """(times (N,), values (N, C)) of a stream: its wide rows, or its readings with every
    channel interpolated onto the first channel's times (for statistics only)."""
    if sd.timestamps is not None and sd.values is not None and len(sd.timestamps):
        return sd.timestamps, sd.values
    rc = sd.readings
    index = rc.channel_index(list(sd.channels))
    series = []
    for i in range(len(sd.channels)):
        mine = index == i
        t, v = rc.times[mine], rc.values[mine]
        order = np.lexsort((v, t))  # by time, then value: what sorting (time, value) pairs gave
        series.append(np.column_stack([t[order], v[order]]).reshape(-1, 2))
    if not series or not len(series[0]):
        return np.zeros(0), np.zeros((0, len(sd.channels)))
    t = series[0][:, 0]
    cols = [np.interp(t, s[:, 0], s[:, 1]) if len(s) else np.zeros_like(t) for s in series]
    return t, np.column_stack(cols)


def with_canary(sd: StreamData, c: canaries.Canary) -> StreamData:
    """A copy of `sd` with canary `c` applied (wide rows or readings of its channel)."""
    out = StreamData(sd.stream, list(sd.channels))
    if sd.timestamps is not None and sd.values is not None:
        out.timestamps, out.values = sd.timestamps, canaries.inject(c, sd.timestamps, sd.values)
    if sd.readings:
        readings = sd.readings.ordered()
        mine = readings.channel_index(list(sd.channels)) == c.channel
        values = readings.values.copy()
        values[mine] = canaries.perturb(c, readings.times[mine], readings.values[mine])
        out.readings = readings.with_values(values)
    return out


# --------------------------------------------------------------------------- one model pass


@dataclass
class SliceRun:
    """One model's pass over one slice: per scored row/window its time, score and alarm state."""

    times: np.ndarray
    scores: np.ndarray
    alerting: np.ndarray  # bool
    nonfinite: int = 0
    alerts_fired: int = 0

    def alarm_between(self, lo: float, hi: float) -> bool:
        sel = (self.times >= lo) & (self.times <= hi)
        return bool(np.any(self.alerting[sel]))


def offline_only(cfg: Config) -> Config:
    """`cfg` with per-stream online calibration and the alert budget off everywhere: the
    gate judges a model by its own offline threshold on a short held-out slice, where online
    calibration would still be warming up and would re-baseline long canary faults
    (decision 0007)."""

    def off(c: CalibrationConfig) -> CalibrationConfig:
        return replace(c, online=replace(c.online, enabled=False))

    def no_budget(a: AlarmConfig) -> AlarmConfig:
        return replace(a, budget=None)

    groups = [replace(g, calibration=off(g.calibration), alarm=no_budget(g.alarm)) for g in cfg.groups]
    return replace(cfg, calibration=off(cfg.calibration), alarm=no_budget(cfg.alarm), groups=groups)


def score_slice(cfg: Config, model: ScoringModel, sd: StreamData, group: str | None) -> SliceRun:
    """Score one stream's slice through the daemon's runner, on the model's offline
    threshold (`offline_only`)."""
    cfg = offline_only(cfg)
    times: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    alerting: list[np.ndarray] = []
    run = SliceRun(np.zeros(0), np.zeros(0), np.zeros(0, bool))
    if sd.timestamps is not None and sd.values is not None and len(sd.timestamps):
        order = np.argsort(sd.timestamps, kind="stable")
        res = run_backtest(
            replace(cfg, data=replace(cfg.data, stream=sd.stream)),
            sd.timestamps[order],
            sd.values[order],
            list(sd.channels),
            model,
            group=group or (cfg.groups[0].name if cfg.groups else None),
            sensors=False,  # the gate judges the model: a stuck canary must reach it unmasked
        )
        has = np.flatnonzero(~np.isnan(res.score))
        if has.size:
            first = has[0]
            tail = res.score[first:]
            bad = ~np.isfinite(tail) | ~np.all(np.isfinite(res.contributions[first:]), axis=1)
            run.nonfinite += int(bad.sum())
            times.append(res.times[first:])
            scores.append(tail)
            alerting.append(res.alert[first:] > 0)
        run.alerts_fired += sum(1 for a in res.alerts if a.state == "firing" and a.kind == "anomaly")
    if sd.readings:
        got: list[Score] = []
        alerts: list[Alert] = []
        gcfg = cfg.fleet()[0] if not cfg.groups else cfg.group(group or cfg.groups[0].name)
        runner = Runner(Fleet.single(model, gcfg), on_scores=lambda r: _extend(got, r), on_alert=alerts.append)
        ordered = sd.readings.ordered()  # columns: Reading objects made 256 at a time
        for at in range(0, len(ordered), 256):
            runner.feed(list(ordered[at : at + 256]))
        runner.finish()
        alerts = [a for a in alerts if a.kind == "anomaly"]  # regime_change events neither start nor end one
        changes = {(a.stream, a.started_at if a.state == "firing" else a.ended_at): a.state for a in alerts}
        firing = False
        flags = np.zeros(len(got), dtype=bool)
        for i, sc in enumerate(got):
            state = changes.get((sc.stream, sc.timestamp))
            if state is not None:
                firing = state == "firing"
            flags[i] = firing
            if not (math.isfinite(sc.score) and bool(np.all(np.isfinite(sc.channel_scores)))):
                run.nonfinite += 1
        times.append(np.array([sc.timestamp for sc in got], dtype=np.float64))
        scores.append(np.array([sc.score for sc in got], dtype=np.float64))
        alerting.append(flags)
        run.alerts_fired += sum(1 for a in alerts if a.state == "firing")
    if times:
        run.times, run.scores, run.alerting = np.concatenate(times), np.concatenate(scores), np.concatenate(alerting)
    return run


def _extend(scores: list[Score], result: GroupResult) -> None:
    scores.extend(result.scores)


# --------------------------------------------------------------------------- canaries


@dataclass
class CanarySettings:
    per_kind: int = 2
    seed: int = 0
    margin: float = 0.15  # candidate rate >= current rate - margin
    floor: float = 0.5  # and >= floor


@dataclass
class CanaryPlan:
    """Canaries and the base segments (of one stream's newest held-out data) they go into."""

    stream: str
    canaries: list[canaries.Canary]
    segments: list[StreamData]  # canary i goes into segments[i % len(segments)]
    tail_seconds: float  # detection counts up to this long after a canary's end
    channels: list[str] = field(default_factory=list)

    def describe(self) -> list[dict[str, object]]:
        return [c.as_dict(self.channels) for c in self.canaries]


def plan_canaries(
    holdout: Sequence[StreamData], model: ScoringModel, settings: CanarySettings, max_gap_seconds: float = 0.0
) -> CanaryPlan | None:
    """Canaries in the newest held-out data of the stream with the most of it (None: too little).

    A segment is 8 windows long: 3 windows of lead-in (the first window fills and the
    alarm settles), the canary over the next 4 windows, 1 window of tail. Segments are
    cut back to back from the newest end, as many as the canaries need, and only where
    the data is contiguous (no gap over `max_gap_seconds`, or two periods, and at least
    90 % of the rows a segment should have): a segment across a left-out alert span would
    leave stale frames, no windows to score, and a canary nobody could detect.
    """
    best = max(holdout, key=lambda sd: len(times_of(sd)), default=None)
    if best is None:
        return None
    t = np.unique(times_of(best))
    if len(t) < 2:
        return None
    period = model.period_seconds
    win = model.window_size * period
    seg_len, lead, span = 8 * win, 3 * win, 4 * win
    gap = max(max_gap_seconds, 2 * period)
    n_canaries = settings.per_kind * len(canaries.KINDS)
    spans: list[tuple[float, float]] = []
    segments: list[StreamData] = []
    hi = float(t[-1]) + period
    while len(segments) < n_canaries and hi - seg_len >= float(t[0]) - 0.5 * period:
        lo = hi - seg_len
        inside = t[(t >= lo) & (t < hi)]
        edges = np.concatenate([[lo], inside, [hi - period]])
        if len(inside) >= 0.9 * seg_len / period and float(np.max(np.diff(edges))) <= gap:
            segments.append(time_slice(best, lo, hi))
            spans.append((lo + lead, lo + lead + span))
            hi = lo
        else:
            hi -= win  # slide past the gap
    if not segments:
        return None
    _, values = wide(best)
    channels = list(best.channels)
    planned = canaries.plan(values, spans, per_kind=settings.per_kind, seed=settings.seed)
    return CanaryPlan(best.stream, planned, segments, win, channels)


def run_canaries(cfg: Config, model: ScoringModel, cp: CanaryPlan, group: str | None) -> dict[str, object]:
    """{detected, total, rate, missed: [names], clean_alarms} for one model."""
    clean = [score_slice(cfg, model, seg, group) for seg in cp.segments]
    detected, missed, clean_alarms = 0, [], 0
    for i, c in enumerate(cp.canaries):
        k = i % len(cp.segments)
        lo, hi = c.start, c.end + cp.tail_seconds
        if clean[k].alarm_between(lo, hi):
            clean_alarms += 1
            missed.append(f"{c.name}/{cp.channels[c.channel]}")
            continue
        run = score_slice(cfg, model, with_canary(cp.segments[k], c), group)
        if run.alarm_between(lo, hi):
            detected += 1
        else:
            missed.append(f"{c.name}/{cp.channels[c.channel]}")
    total = len(cp.canaries)
    return {
        "detected": detected,
        "total": total,
        "rate": round(detected / total, 6) if total else None,
        "missed": missed,
        "clean_alarms": clean_alarms,
    }


def canary_check(cand: dict | None, current: dict | None, settings: CanarySettings) -> dict:
    """Candidate rate >= floor and >= current rate - margin."""
    if cand is None:
        return {
            "check": "canary_detection",
            "passed": False,
            "detail": "cannot check detection power: the held-out data has no contiguous stretch of 8 windows to "
            "inject canaries into (hold out more: --holdout-fraction, --holdout FILES; or label false alarms so "
            "their spans stay in the data)",
        }
    rate = float(cand["rate"] or 0.0)
    need = settings.floor
    why = f"floor {settings.floor:g}"
    if current is not None and current.get("rate") is not None:
        rel = float(current["rate"]) - settings.margin
        if rel > need:
            need, why = rel, f"current {float(current['rate']):.3g} - margin {settings.margin:g}"
    ok = rate >= need - 1e-12
    detail = f"candidate detected {cand['detected']}/{cand['total']} canaries ({rate:.3g}) {'>=' if ok else '<'} {why}"
    if current is not None:
        detail += f"; current detected {current['detected']}/{current['total']}"
    if cand["missed"]:
        detail += f"; candidate missed {', '.join(cand['missed'])}"
    return {"check": "canary_detection", "passed": ok, "detail": detail, "candidate": cand, "current": current}


# --------------------------------------------------------------------------- threshold jump


def threshold_check(candidate: float, current: float | None, max_factor: float, allow: bool) -> dict:
    """The candidate's threshold within `max_factor` of the serving one (either way)."""
    if current is None or not (math.isfinite(current) and current > 0):
        return {"check": "threshold_jump", "passed": True, "detail": "skipped: no current model to compare with"}
    if not (math.isfinite(candidate) and candidate > 0):
        return {"check": "threshold_jump", "passed": False, "detail": f"candidate threshold {candidate} is not > 0"}
    ratio = candidate / current
    factor = max(ratio, 1.0 / ratio)
    ok = factor <= max_factor
    detail = (
        f"candidate threshold {candidate:.4g} vs current {current:.4g}: {ratio:.3g}x "
        f"({'within' if ok else 'beyond'} the allowed factor {max_factor:g})"
    )
    if not ok and allow:
        ok, detail = True, detail + "; allowed by --allow-threshold-jump / retrain.allow_threshold_jump"
    return {"check": "threshold_jump", "passed": ok, "detail": detail, "ratio": round(ratio, 6)}


# --------------------------------------------------------------------------- past episodes


@dataclass
class Episode:
    """A past alert span to replay: its data (with a lead-in) and its label."""

    alert_id: str
    stream: str | None
    start: float
    end: float
    label: str  # "confirmed" | "unlabelled"
    data: list[StreamData]


def run_episodes(
    cfg: Config, model: ScoringModel, episodes: Sequence[Episode], group: str | None, tail_seconds: float
) -> dict[str, dict]:
    """alert_id -> {label, detected} for the episodes that have data."""
    out: dict[str, dict] = {}
    for ep in episodes:
        hit = False
        for sd in ep.data:
            run = score_slice(cfg, model, sd, group)
            if run.alarm_between(ep.start, ep.end + tail_seconds):
                hit = True
                break
        out[ep.alert_id] = {"label": ep.label, "detected": hit}
    return out


def episode_check(cand: dict[str, dict], current: dict[str, dict] | None, without_data: list[str]) -> dict:
    """Every confirmed and unlabelled past episode must raise the alarm again."""
    if not cand:
        detail = "skipped: no past alert episodes to replay"
        if without_data:
            detail += f" ({len(without_data)} without data in --data)"
        return {"check": "past_episodes", "passed": True, "detail": detail, "episodes": {}}
    missed = [a for a, r in cand.items() if not r["detected"]]
    confirmed = [a for a, r in cand.items() if r["label"] == "confirmed"]
    ok = not missed
    detail = f"candidate flags {len(cand) - len(missed)}/{len(cand)} past episodes ({len(confirmed)} confirmed)"
    if current is not None:
        detail += f"; current flags {sum(1 for r in current.values() if r['detected'])}/{len(current)}"
    if missed:
        names = [f"{a} ({cand[a]['label']})" for a in missed]
        detail += f"; missed {', '.join(names)}"
    if without_data:
        detail += f"; {len(without_data)} without data in --data"
    return {
        "check": "past_episodes",
        "passed": ok,
        "detail": detail,
        "episodes": {
            a: {"label": r["label"], "candidate": r["detected"], "current": (current or {}).get(a, {}).get("detected")}
            for a, r in cand.items()
        },
    }
