"""The daemon's alarm state on disk: saved per group now and then and at shutdown,
restored when a group's first model is installed.

File: ``<group's models dir>/state/alarm.json`` (``alarm-<partitions>.json`` for a NATS
worker), beside the calibrator state and written the same way (atomic rename). A
restored open episode goes on firing without a second ``firing``; if its stream sends
nothing for the stale limit (`sensors.stale_seconds`, default 10 periods) after the
restore, the episode is resolved with ``reason: stale`` (`monitor.core.alarm_state`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from monitor.core.alarm_state import alarm_to_state, resolve_stale, restore_alarm
from monitor.core.config import Config
from monitor.core.fleet import Fleet
from monitor.core.types import Alert
from monitor.io.calib_state import STATE_DIR, StateError, load_state, save_state
from monitor.io.metrics import Metrics

log = logging.getLogger("monitor.alarm_state")

ALARM_FILE = "alarm.json"


def alarm_state_path(group_models_dir: Path, owner: str | None = None) -> Path:
    return Path(group_models_dir) / STATE_DIR / (ALARM_FILE if not owner else f"alarm-{owner}.json")


class AlarmPersistence:
    """Saves and restores every group's alarm state; closes restored episodes gone silent."""

    def __init__(self, cfg: Config, fleet: Fleet, metrics: Metrics, owner: Callable[[], str | None]):
        self.cfg = cfg
        self.fleet = fleet
        self.metrics = metrics
        self.owner = owner
        # (group, stream) -> (monotonic deadline, data time of its last window before the stop)
        self.pending: dict[tuple[str, str], tuple[float, float]] = {}

    def _path(self, group: str) -> Path:
        return alarm_state_path(self.cfg.group_models_dir(group), self.owner())

    def _stale_limit(self, group: str) -> float:
        g = self.cfg.group(group)
        s = g.sensors.stale_seconds
        return s if s is not None and s > 0 else 10.0 * g.stream.period_seconds

    def save(self, group: str) -> None:
        pipe = self.fleet.pipeline(group)
        if pipe is None:
            return
        path = self._path(group)
        try:
            save_state(path, {group: alarm_to_state(pipe.alarm, pipe.last_reading_times())})
        except OSError as exc:
            self.metrics.alarm_state_errors.labels("write").inc()
            log.warning("cannot write the alarm state of group %s to %s: %s", group, path, exc)

    def save_all(self) -> None:
        for group in self.fleet.names:
            self.save(group)

    def restore(self, group: str) -> None:
        """Adopt the group's saved alarm state (once, before its first reading)."""
        pipe = self.fleet.pipeline(group)
        if pipe is None:
            return
        path = self._path(group)
        try:
            state = load_state(path)
            if state is None:
                return
            open_at = restore_alarm(pipe.alarm, state.get(group))
        except (StateError, ValueError, TypeError) as exc:
            self.metrics.alarm_state_errors.labels("read").inc()
            log.warning("alarm state of group %s unusable, starting fresh: %s", group, exc)
            return
        deadline = time.monotonic() + self._stale_limit(group)
        for stream, last in open_at.items():
            self.pending[(group, stream)] = (deadline, last)
        log.info("alarm state of group %s: %d open episode(s) restored from %s", group, len(open_at), path)

    def tick(self) -> list[Alert]:
        """Restored episodes whose stream has reported go on; those silent past the stale
        limit are resolved (``reason: stale``)."""
        if not self.pending:
            return []
        now = time.monotonic()
        out: list[Alert] = []
        for key, (deadline, last) in list(self.pending.items()):
            group, stream = key
            pipe = self.fleet.pipeline(group)
            if pipe is None:
                continue
            if stream in pipe.streams:  # readings again: the episode goes on, decided by its scores
                del self.pending[key]
            elif now >= deadline:
                del self.pending[key]
                alert = resolve_stale(pipe.alarm, stream, last, group)
                if alert is not None:
                    out.append(alert)
        return out
