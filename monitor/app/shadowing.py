"""The daemon's side of shadow scoring and drift (decision 0021).

Per group, `ShadowManager`:

* follows ``models/<group>/shadow`` (a `ModelWatcher` on that pointer; main thread), and
  installs a verified candidate beside the serving model (`Pipeline.shadow`; scoring
  thread). The candidate scores the serving model's windows inside `Pipeline.flush`;
  nothing it decides is sent;
* exports ``monitor_shadow_*`` and writes ``models/<group>/shadow.json`` (the running
  comparison, then the verdict; `monitor models shadow-report` reads it) every few seconds;
* when the shadow period is over (`Shadow.due`), takes the verdict: promoted moves
  ``current`` to the candidate (`registry.promote`, on the rollback stack like any
  promotion: the group's watcher then swaps it in); rejected leaves ``current`` alone. The
  ``shadow`` pointer is removed either way and the verdict is logged and exported;
* keeps a `DriftTracker` per group on the serving model's raw errors (when its bundle has
  reference deciles: the training span's, or an older bundle's hold-out deciles) and
  exports ``monitor_model_drift{group}``; a candidate promoted from shadow serves with the
  tracker it kept on its own errors during the shadow period (`Shadow.drift`), so its drift
  is there at once; a model installed otherwise starts empty (NaN for 2.3 h);
* persists each running shadow (`Shadow.to_state`: its start, counts, histograms and
  alarm) to ``<group's models dir>/state/shadow.json`` (``shadow-p<partitions>.json`` for a
  NATS worker) atomically, with the calibrator and alarm state (every
  ``alerts.state_save_seconds`` and at shutdown), and restores it when the same candidate
  is installed again beside the same serving version: a restart goes on with the shadow
  period instead of starting it over. A file that cannot be used is a WARNING, a count in
  ``monitor_shadow_state_errors_total{op}`` and a fresh start. The file goes with the
  verdict or when the pointer is removed.

Threads: the pipeline's shadow is only touched on the scoring thread (state saves and the
restore included, as for the calibrator state); pointer moves and report writes happen on
the main thread (`poll`); the two hand over through a lock.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from monitor.app.lifecycle import ModelWatcher
from monitor.core.config import Config
from monitor.core.drift import DriftTracker, reference_edges, tracker_for
from monitor.core.fleet import Fleet, GroupResult
from monitor.core.model.registry import SHADOW, SHADOW_REPORT, BundleError, clear_shadow, promote
from monitor.core.scoring_model import ScoringModel
from monitor.core.shadow import Shadow, ShadowSettings
from monitor.io.atomic import write_atomic
from monitor.io.calib_state import STATE_DIR, StateError, load_state, save_state
from monitor.io.shadow_metrics import ShadowMetrics

log = logging.getLogger(__name__)

REPORT_FILE = SHADOW_REPORT
STATE_FILE = "shadow.json"  # under the group's state/ directory (beside calibration.json)
# the scoring thread looks at the shadows (metrics, due, verdict) this often, not after every
# batch: a look settles the batches waiting in each `Shadow` (one binning for all of them)
CHECK_SECONDS = 1.0
_NONE = object()  # a pending "remove the shadow"
DRIFT_STATE_FILE = "drift.json"
DRIFT_STATE_VERSION = 1


def shadow_state_path(group_models_dir: Path, owner: str | None = None) -> Path:
    return Path(group_models_dir) / STATE_DIR / (STATE_FILE if not owner else f"shadow-{owner}.json")


def drift_state_path(group_models_dir: Path, owner: str | None = None) -> Path:
    return Path(group_models_dir) / STATE_DIR / (DRIFT_STATE_FILE if not owner else f"drift-{owner}.json")


def settings_of(cfg: Config) -> ShadowSettings:
    rs = cfg.retrain
    return ShadowSettings(
        seconds=rs.shadow_hours * 3600.0,
        alert_margin=rs.shadow_alert_margin,
        max_alert_episodes=rs.shadow_max_alert_episodes,
        max_quantile_ratio=rs.shadow_max_quantile_ratio,
        min_windows=rs.shadow_min_windows,
    )


class ShadowManager:
    def __init__(
        self,
        cfg: Config,
        fleet: Fleet,
        registry: CollectorRegistry,
        owner: Callable[[], str | None] = lambda: None,
    ):
        self.cfg = cfg
        self.fleet = fleet
        self.owner = owner  # names a NATS worker's state files (`Service._state_owner`)
        self.metrics = ShadowMetrics(registry, fleet.names)
        self.settings = settings_of(cfg)
        self.enabled = cfg.retrain.shadow_hours > 0
        self.watchers = (
            {g.name: ModelWatcher(cfg.group_models_dir(g.name), pointer=SHADOW) for g in cfg.fleet()}
            if self.enabled
            else {}
        )
        self._lock = threading.Lock()
        self._pending: dict[str, Any] = {}  # group -> ScoringModel or _NONE (main -> scoring thread)
        self._decided: list[tuple[str, dict[str, Any]]] = []  # (group, report) (scoring -> main thread)
        self._reports: dict[str, dict[str, Any]] = {}  # group -> running summary (scoring -> main thread)
        self._seen: dict[str, tuple[int, int]] = {}  # group -> (windows, episodes) exported
        self._active: dict[str, str] = {}  # group -> candidate version in shadow
        self.drift: dict[str, DriftTracker | None] = {}
        # group -> (promoted candidate, its drift summary from the shadow period): the
        # promoted model serves with it (`on_model`); under `_lock` (scoring and main thread)
        self._seeds: dict[str, tuple[str, DriftTracker]] = {}
        self.verdicts: list[dict[str, Any]] = []  # every verdict taken (tests, audits)
        self._next_check = 0.0  # monotonic time of the next look at the shadows (after_batch)

    # ------------------------------------------------------------------ main thread

    def poll(self) -> None:
        """Follow the shadow pointers, write the reports, act on the verdicts."""
        for group, watcher in self.watchers.items():
            try:
                had = watcher._seen not in (None, ("<none>",))
                result = watcher.poll()
                gone = had and watcher._seen == ("<none>",)
            except Exception:
                log.exception("polling the shadow pointer of group %s failed", group)
                continue
            if result is not None and result.model is not None:
                with self._lock:
                    self._pending[group] = result.model
            elif result is not None:
                self._write(group, {"state": "rejected", "error": result.error, "checks": []})
                self._clear(group)
            elif gone:
                with self._lock:
                    self._pending[group] = _NONE
        with self._lock:
            decided, self._decided = self._decided, []
            reports, self._reports = self._reports, {}
        for group, report in reports.items():
            self._write(group, report)
        for group, report in decided:
            self._act(group, report)

    def _act(self, group: str, report: dict[str, Any]) -> None:
        models_dir = Path(self.cfg.group_models_dir(group))
        candidate = str(report.get("summary", {}).get("candidate") or report.get("candidate"))
        if report["state"] == "promoted":
            try:
                promote(models_dir, candidate)
            except (BundleError, OSError) as exc:
                report = {**report, "state": "rejected", "error": f"promotion failed: {exc}"}
                with self._lock:
                    self._seeds.pop(group, None)
        self._clear(group)
        self._forget_state(group)
        self._write(group, report)
        self.verdicts.append({"group": group, **report})
        failed = "; ".join(c["detail"] for c in report.get("checks", []) if not c["passed"])
        if report["state"] == "promoted":
            log.warning("shadow: group %s promoted %s after its shadow period: %s", group, candidate, _details(report))
        else:
            log.warning(
                "shadow: group %s rejected %s, the serving model keeps serving: %s",
                group,
                candidate,
                report.get("error") or failed,
            )
        self.metrics.decided(group, report["state"] == "promoted", report.get("checks", []))

    def _clear(self, group: str) -> None:
        try:
            clear_shadow(Path(self.cfg.group_models_dir(group)))
        except OSError as exc:
            log.error("cannot remove the shadow pointer of group %s: %s", group, exc)

    def _write(self, group: str, report: dict[str, Any]) -> None:
        path = Path(self.cfg.group_models_dir(group)) / REPORT_FILE
        try:
            write_atomic(path, json.dumps(report, indent=1, default=str) + "\n")
        except OSError as exc:
            log.error("cannot write %s: %s", path, exc)

    # ------------------------------------------------------------------ shadow state

    def _state_path(self, group: str) -> Path:
        return shadow_state_path(Path(self.cfg.group_models_dir(group)), self.owner())

    def _forget_state(self, group: str) -> None:
        path = self._state_path(group)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            log.error("cannot remove the shadow state %s: %s", path, exc)

    def save_all(self) -> None:
        """Write every running shadow's state (the scoring thread, or after it stopped)."""
        for group in self.fleet.names:
            pipe = self.fleet.pipeline(group)
            sh = pipe.shadow if pipe is not None else None
            if sh is None:
                continue
            path = self._state_path(group)
            try:
                save_state(path, sh.to_state())
            except OSError as exc:
                self.metrics.state_errors.labels("write").inc()
                log.warning("cannot write the shadow state of group %s to %s: %s", group, path, exc)

    def save_drift(self) -> None:
        """Write every group's drift summary (the scoring thread, or after it stopped), so a
        restart goes on with its hours of windows instead of NaN for the first 2.3 h."""
        with self._lock:
            seeds = dict(self._seeds)
        for group in self.fleet.names:
            pipe, tracker = self.fleet.pipeline(group), self.drift.get(group)
            version = pipe.model.version if pipe is not None else None
            if group in seeds:  # promoted, not swapped in yet: a restart serves the candidate with it
                version, tracker = seeds[group]
            if tracker is None or version is None:
                continue
            path = drift_state_path(Path(self.cfg.group_models_dir(group)), self.owner())
            state = {"version": DRIFT_STATE_VERSION, "model": version, **tracker.to_state()}
            try:
                save_state(path, state)
            except OSError as exc:
                self.metrics.drift_state_errors.labels("write").inc()
                log.warning("cannot write the drift state of group %s to %s: %s", group, path, exc)

    def _restore_drift(self, group: str, model: ScoringModel, tracker: DriftTracker) -> None:
        """Go on with the saved summary if it is this model's, kept against the same
        reference; a file that cannot be used: WARNING, counted, the statistic starts over."""
        path = drift_state_path(Path(self.cfg.group_models_dir(group)), self.owner())
        try:
            state = load_state(path)
            if state is None or state.get("model") != model.version:
                return
            if state.get("version") != DRIFT_STATE_VERSION:
                raise ValueError(f"drift state version {state.get('version')!r}, expected {DRIFT_STATE_VERSION}")
            if tracker.restore(state):
                log.info("drift of group %s: restored %d windows from %s", group, tracker.seen, path)
        except (StateError, ValueError, TypeError, KeyError) as exc:
            self.metrics.drift_state_errors.labels("read").inc()
            log.warning("drift state of group %s unusable, the statistic starts over: %s", group, exc)

    def _restore(self, group: str, sh: Shadow) -> bool:
        """Go on with `sh`'s saved shadow period, if the file holds this candidate's beside
        this serving model; a file that cannot be used: WARNING, counted, a fresh start."""
        path = self._state_path(group)
        try:
            state = load_state(path)
            if state is None:
                return False
            if not sh.restore(state):
                log.info(
                    "shadow state %s is of %s beside %s, not of %s beside %s: the shadow period starts now",
                    path,
                    state.get("candidate"),
                    state.get("current"),
                    sh.model.version,
                    sh.live_version,
                )
                return False
        except (StateError, ValueError, TypeError) as exc:
            self.metrics.state_errors.labels("read").inc()
            log.warning("shadow state of group %s unusable, the shadow period starts now: %s", group, exc)
            return False
        return True

    # ------------------------------------------------------------------ scoring thread

    def install_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for group, model in pending.items():
            pipe = self.fleet.pipeline(group)
            if model is _NONE:
                if pipe is not None and pipe.shadow is not None:
                    log.warning("shadow: the shadow pointer of group %s was removed; candidate dropped", group)
                    pipe.shadow = None
                    self.metrics.active.labels(group).set(0)
                self._forget_state(group)
                continue
            if pipe is None:
                self._reject(group, model.version, "the group has no serving model to compare with")
                continue
            try:
                gcfg = self.cfg.for_group(group) if self.cfg.groups else self.cfg
                sh = Shadow(model, pipe.model, gcfg.alarm, self.settings, pipe.top_channels)
            except ValueError as exc:
                self._reject(group, model.version, str(exc))
                continue
            resumed = self._restore(group, sh)
            pipe.shadow = sh
            pipe.shadow_error = None
            # the counters count this process's windows; the gauges show the whole period
            self._seen[group] = (sh.windows, sh.episodes)
            self._active[group] = model.version
            self.metrics.active.labels(group).set(1)
            if resumed:
                self.metrics.episodes.labels(group).set(sh.episodes)
                self.metrics.current_episodes.labels(group).set(sh.live_episodes)
                self.metrics.elapsed.labels(group).set(sh.elapsed_seconds)
                log.warning(
                    "shadow: group %s goes on scoring %s beside %s: %.0f of %.0f s of live data, %d windows, "
                    "%d would-alert episode(s) so far (restored; no alerts sent)",
                    group,
                    model.version,
                    pipe.model.version,
                    sh.elapsed_seconds,
                    self.settings.seconds,
                    sh.windows,
                    sh.episodes,
                )
            else:
                log.warning(
                    "shadow: group %s scores %s beside %s for %.0f s of live data (no alerts sent)",
                    group,
                    model.version,
                    pipe.model.version,
                    self.settings.seconds,
                )

    def _reject(self, group: str, version: str, why: str) -> None:
        with self._lock:
            self._decided.append((group, {"state": "rejected", "candidate": version, "error": why, "checks": []}))

    def after_batch(self, snapshot: bool) -> None:
        """Export the shadows' progress; take the verdict of any whose period is over.
        Called after every batch; looks at most every `CHECK_SECONDS` (and at a snapshot)."""
        now = time.monotonic()
        if not snapshot and now < self._next_check:
            return
        self._next_check = now + CHECK_SECONDS
        for group in self.fleet.names:
            pipe = self.fleet.pipeline(group)
            if pipe is None:
                continue
            sh = pipe.shadow
            if sh is None:
                if pipe.shadow_error is not None:
                    self._reject(group, self._active.get(group, "?"), pipe.shadow_error)
                    pipe.shadow_error = None
                continue
            windows, episodes = self._seen.get(group, (0, 0))
            if sh.windows != windows:
                self.metrics.observed(
                    group,
                    sh.windows - windows,
                    sh.episodes - episodes,
                    sh.last_max,
                    sh.episodes,
                    sh.live_episodes,
                    sh.elapsed_seconds,
                )
                self._seen[group] = (sh.windows, sh.episodes)
            if sh.due():
                verdict = sh.verdict()
                pipe.shadow = None
                state = "promoted" if verdict.promote else "rejected"
                with self._lock:
                    if verdict.promote and sh.drift is not None:
                        self._seeds[group] = (sh.model.version, sh.drift)
                    self._decided.append(
                        (group, {"state": state, "checks": verdict.checks, "summary": verdict.summary})
                    )
            elif snapshot:
                with self._lock:
                    self._reports[group] = {"state": "running", "checks": [], "summary": sh.summary()}

    def on_model(self, group: str, model: ScoringModel) -> None:
        """A serving model was installed: drift is measured against its calibration."""
        # the training span's deciles; a bundle from before them: its hold-out's (core/drift.py)
        edges = reference_edges(model.manifest.threshold_info) if model.manifest is not None else None
        tracker = tracker_for(edges, model.period_seconds, model.stride) if edges else None
        with self._lock:
            seed = self._seeds.pop(group, None)
        if tracker is not None and seed is not None and seed[0] == model.version and _same_geometry(seed[1], tracker):
            # promoted from shadow: its errors on live traffic in that period are this model's drift
            tracker = seed[1]
            held = tracker.filled  # bins the queued windows first
            log.info(
                "drift of group %s: %s goes on with the %d windows it scored in shadow (%d in the summary)",
                group,
                model.version,
                tracker.seen,
                held,
            )
        elif tracker is not None:
            self._restore_drift(group, model, tracker)
        self.drift[group] = tracker
        self.metrics.drift.labels(group).set(tracker.value() if tracker is not None else math.nan)

    def on_scores(self, result: GroupResult) -> None:
        tracker = self.drift.get(result.group)
        if tracker is not None:
            tracker.add(result.scores.raw)

    def export_drift(self) -> None:
        for group, tracker in self.drift.items():
            if tracker is not None:
                self.metrics.drift.labels(group).set(tracker.value())


def _same_geometry(a: DriftTracker, b: DriftTracker) -> bool:
    return a.edges.tolist() == b.edges.tolist() and (a.chunk, a.chunks, a.min_windows) == (
        b.chunk,
        b.chunks,
        b.min_windows,
    )


def _details(report: dict[str, Any]) -> str:
    return "; ".join(c["detail"] for c in report.get("checks", []))
