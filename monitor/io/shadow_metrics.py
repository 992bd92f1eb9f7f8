"""Metrics of shadow scoring and model drift (decision 0021), per group.

* ``monitor_shadow_score{group}``: the candidate's highest score (threshold units) in the
  newest batch it scored in shadow;
* ``monitor_shadow_windows_total{group}``, ``monitor_shadow_would_alert_total{group}``: windows
  the candidate scored, alert episodes it would have raised (none is sent);
* ``monitor_shadow_alert_episodes{group}``: the candidate's would-alert episodes over its
  whole shadow period (restored across a restart, unlike the counter);
* ``monitor_shadow_current_alert_episodes{group}``: the serving model's anomaly episodes
  over the same windows (what the would-alert count is compared with);
* ``monitor_shadow_elapsed_seconds{group}``: data time the candidate has been scored over;
* ``monitor_shadow_active{group}``: 1 while a candidate is in shadow;
* ``monitor_shadow_verdict{group,verdict}``: 1 for the last verdict (``promoted`` or
  ``rejected``), 0 for the other; ``monitor_shadow_check_passed{group,check}``;
* ``monitor_shadow_state_errors_total{op}``: shadow state files (``state/shadow.json``)
  that could not be read (``op="read"``: a fresh shadow period) or written (``"write"``);
* ``monitor_drift_state_errors_total{op}``: drift state files (``state/drift.json``) that
  could not be read (``op="read"``: the statistic starts over, NaN for its first hours) or
  written (``"write"``);
* ``monitor_model_drift{group}``: PSI of the newest raw errors against the calibration
  deciles of the serving bundle (`monitor.core.drift`); NaN before enough windows or for a
  bundle without calibration quantiles.

Every group's series exist from the start (counters 0, gauges NaN, verdicts 0), so the
dashboard's panels and queries have a series before any shadow ran.
"""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Gauge

VERDICTS = ("promoted", "rejected")


class ShadowMetrics:
    def __init__(self, registry: CollectorRegistry, groups: list[str]):
        self.score = Gauge(
            "monitor_shadow_score", "Shadow candidate's highest score in its newest batch", ["group"], registry=registry
        )
        self.windows = Counter(
            "monitor_shadow_windows", "Windows the shadow candidate scored", ["group"], registry=registry
        )
        self.would_alert = Counter(
            "monitor_shadow_would_alert",
            "Alert episodes the shadow candidate would have raised (not sent)",
            ["group"],
            registry=registry,
        )
        self.episodes = Gauge(
            "monitor_shadow_alert_episodes",
            "Would-alert episodes of the shadow candidate over its whole shadow period",
            ["group"],
            registry=registry,
        )
        self.current_episodes = Gauge(
            "monitor_shadow_current_alert_episodes",
            "Serving model's anomaly episodes over the windows the candidate scored",
            ["group"],
            registry=registry,
        )
        self.elapsed = Gauge(
            "monitor_shadow_elapsed_seconds",
            "Data time the shadow candidate was scored over",
            ["group"],
            registry=registry,
        )
        self.active = Gauge(
            "monitor_shadow_active", "1 while a candidate is scored in shadow", ["group"], registry=registry
        )
        self.verdict = Gauge(
            "monitor_shadow_verdict",
            "1 for the last shadow verdict of the group",
            ["group", "verdict"],
            registry=registry,
        )
        self.check = Gauge(
            "monitor_shadow_check_passed",
            "1 if the last shadow verdict's check passed",
            ["group", "check"],
            registry=registry,
        )
        self.state_errors = Counter(
            "monitor_shadow_state_errors",
            "Shadow state files that could not be read (a fresh shadow period) or written.",
            ["op"],
            registry=registry,
        )
        self.drift_state_errors = Counter(
            "monitor_drift_state_errors",
            "Drift state files that could not be read (the statistic starts over) or written.",
            ["op"],
            registry=registry,
        )
        self.drift = Gauge(
            "monitor_model_drift",
            "PSI of recent raw errors against the serving bundle's calibration deciles",
            ["group"],
            registry=registry,
        )
        for g in groups:
            self.active.labels(g).set(0)
            self.drift.labels(g).set(math.nan)
            self.windows.labels(g)
            self.would_alert.labels(g)
            for gauge in (self.score, self.episodes, self.current_episodes, self.elapsed):
                gauge.labels(g).set(math.nan)
            for v in VERDICTS:
                self.verdict.labels(g, v).set(0.0)
        for op in ("read", "write"):
            self.state_errors.labels(op)
            self.drift_state_errors.labels(op)

    def observed(
        self, group: str, windows: int, fired: int, last_max: float, episodes: int, current: int, elapsed: float
    ) -> None:
        self.windows.labels(group).inc(windows)
        if fired:
            self.would_alert.labels(group).inc(fired)
        self.score.labels(group).set(last_max)
        self.episodes.labels(group).set(episodes)
        self.current_episodes.labels(group).set(current)
        self.elapsed.labels(group).set(elapsed)

    def decided(self, group: str, promoted: bool, checks: list[dict]) -> None:
        self.active.labels(group).set(0)
        for v in VERDICTS:
            self.verdict.labels(group, v).set(1.0 if (v == "promoted") == promoted else 0.0)
        for c in checks:
            self.check.labels(group, c["check"]).set(1.0 if c["passed"] else 0.0)
