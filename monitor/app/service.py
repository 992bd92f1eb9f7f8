"""The daemon: MQTT intake -> bounded queue -> scoring thread -> sinks, plus metrics and health.

Threads:
  * paho's network thread (MQTTIngest) decodes messages and hands them to a bounded queue;
  * the scoring thread drains the queue in batches, drives the `Fleet` through the
    `Runner` (each stream to its group's pipeline, one forward pass per group), sends
    alerts and acks messages it has handled;
  * the main thread handles signals, polls each group's model pointer and reports health.

SIGTERM/SIGINT: stop intake, drain the queue, flush, close sinks, exit 0 within
`stop_timeout_seconds`. SIGHUP: re-check the model pointer now (a forced reload) and
re-read the config file: the log level applies at once, other changes are reported as
needing a restart, and an invalid file is ignored.
"""

from __future__ import annotations

import functools
import json
import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry

from monitor.app.alarm_persist import AlarmPersistence
from monitor.app.integrations import Integrations
from monitor.app.lifecycle import LoadResult, ModelWatcher
from monitor.app.shadowing import ShadowManager
from monitor.core.config import Config, ConfigError, load_config
from monitor.core.fleet import Fleet, GroupResult
from monitor.core.model.threads import use_threads
from monitor.core.pipeline import TALLIES, Pipeline
from monitor.core.runner import Runner
from monitor.core.scoring_model import ScoringModel
from monitor.core.types import Alert, DropReason, ScoreBatch
from monitor.io.calib_state import StateError, load_state, partitions_owner, save_state, state_path
from monitor.io.codec import Codec
from monitor.io.handoff import HandOff
from monitor.io.http import MetricsServer, serve
from monitor.io.latent_out import LatentPublisher
from monitor.io.metrics import Metrics
from monitor.io.mqtt import MQTTIngest
from monitor.io.nats import NATSIngest
from monitor.io.nats_ops import JetStreamAlertSink, NATSCollector
from monitor.io.notify import liveness_problem, stopping
from monitor.io.record import Recorder
from monitor.io.recording import ALERTS_FILE
from monitor.io.retrain_status import TEXTFILE_NAME, RetrainStatusCollector
from monitor.io.sequence import SequenceCollector
from monitor.io.silences import SilenceWatch, silences_path
from monitor.io.sinks import AlertmanagerSink, JSONLinesSink, LogSink, MQTTSink, Sink
from monitor.io.sources import Source
from monitor.io.yielding import YieldingPublisher

log = logging.getLogger(__name__)

HEALTH_STALL_SECONDS = 10.0  # /healthz: the scoring heartbeat may be at most this old
CALIBRATION_SAVE_SECONDS = 60.0  # calibrator state is written this often (and at shutdown)
CALIBRATION_EXPORT_SECONDS = 5.0  # per-stream effective thresholds are exported this often


class Service:
    def __init__(
        self,
        cfg: Config,
        *,
        registry: CollectorRegistry | None = None,
        extra_sinks: list[Sink] | None = None,
        stop_timeout_seconds: float = 8.0,
        manual_ack: bool | None = None,
        score_listeners: list[Callable[[ScoreBatch], None]] | None = None,
        config_path: str | Path | None = None,
        partitions: tuple[int, ...] | None = None,
        on_handled: Callable[[list], None] | None = None,
    ):
        self.cfg = cfg
        self.config_path = config_path  # re-read on SIGHUP
        self.registry = registry or CollectorRegistry()
        self.fleet = Fleet.from_config(cfg)
        self.metrics = Metrics(self.registry, groups=self.fleet.names)
        # the retrain job's verdict (a textfile beside the models) re-exported at scrape time
        self.registry.register(RetrainStatusCollector(Path(cfg.models.dir) / TEXTFILE_NAME))
        self.stop_timeout = stop_timeout_seconds
        self.partitions = partitions  # source: nats — the partitions this worker owns (None: nats.owned)
        self.on_handled = on_handled  # after each handled batch, before its acks (tests, audits)
        # bounded by messages, readings and bytes; full: drop and count, or hold (backpressure)
        self.queue = HandOff(cfg.mqtt.queue_size, cfg.mqtt.queue_readings, cfg.mqtt.queue_bytes)
        self.codec = Codec(cfg.topics, cfg.mqtt.max_payload_bytes, cfg.stream.max_future_seconds, columns=True)
        self.registry.register(SequenceCollector(self.codec.sequences))  # topics[].sequence_field gaps
        self.runner = Runner(self.fleet, on_scores=self._on_scores, on_alert=self._on_alert)
        # shadow candidates (retrain.shadow_hours > 0) and drift, per group (decision 0021)
        self.shadows = ShadowManager(cfg, self.fleet, self.registry, self._state_owner)
        self._pending_models: dict[str, ScoringModel] = {}
        self._model_lock = threading.Lock()
        # one watcher per group: a bad bundle in one group is refused there, the others are untouched
        self.watchers = {
            g.name: ModelWatcher(
                cfg.group_models_dir(g.name),
                required_channels=g.stream.channels or None,
                on_result=functools.partial(self._on_model_result, g.name),
            )
            for g in cfg.fleet()
        }
        # At-least-once: ack QoS 1 messages only after the scoring thread has handled them.
        # Backpressure (mqtt.overload) works through unacked messages: manual acks as well; so does
        # the NATS source (acks after handling move each partition's durable floor).
        acks_after_handling = not cfg.mqtt.clean_start or cfg.mqtt.overload == "backpressure" or cfg.source == "nats"
        self.manual_ack = acks_after_handling if manual_ack is None else manual_ack
        self.extra_sinks = list(extra_sinks or [])
        self.score_listeners = list(score_listeners or [])  # e.g. a recorder or a test probe
        self.sinks: list[Sink] = []
        self.ingest: Source | None = None
        self.latent_out: LatentPublisher | None = None  # alerts.latent_topic (set in start)
        self.integrator_publish: YieldingPublisher | None = None  # scores, denoised, latent (set in start)
        self.integrations: Integrations | None = None  # availability, stream state, HA discovery (MQTT)
        self.muted_alerts = 0
        self._muted = 0  # alerts of warm-up replays not sent (they went out before the restart)
        self.recorder: Recorder | None = None
        self.http: MetricsServer | None = None
        self._stop = threading.Event()
        self._intake_stopped = threading.Event()
        self._reload = threading.Event()
        self._scorer: threading.Thread | None = None
        self.last_progress = time.monotonic()  # scoring thread heartbeat (monotonic)
        self._reported: Counter[tuple[str, str]] = Counter()  # (group or "", reason) -> exported
        self.state_save_seconds = cfg.alerts.state_save_seconds  # calibrator and alarm state (and at shutdown)
        self._next_state_save = time.monotonic() + self.state_save_seconds
        self.alarm_state = AlarmPersistence(cfg, self.fleet, self.metrics, self._state_owner)
        self.silences = SilenceWatch(silences_path(cfg.models.dir), on_error=self.metrics.silence_file_errors.inc)
        self.silences.refresh()
        self._next_calibration_export = 0.0

    # ------------------------------------------------------------------ model

    @property
    def pipeline(self) -> Pipeline | None:
        """The first group's pipeline (the only one without `groups:`)."""
        return self.fleet.pipeline(self.fleet.names[0])

    @property
    def watcher(self) -> ModelWatcher:
        """The first group's model watcher (the only one without `groups:`)."""
        return self.watchers[self.fleet.names[0]]

    def _on_model_result(self, group: str, result: LoadResult) -> None:
        self.metrics.model_load(result.error is None, result.seconds, result.model.version if result.model else None)

    def _poll_model(self, force: bool = False) -> None:
        for group, watcher in self.watchers.items():
            try:
                result = watcher.poll(force=force)
            except Exception:  # one group's pointer must not stop the others' polling
                log.exception("polling the models of group %s failed", group)
                continue
            if result is not None and result.model is not None:
                with self._model_lock:
                    self._pending_models[group] = result.model
        self.shadows.poll()

    def _install_pending_model(self) -> list[Alert]:
        with self._model_lock:
            pending, self._pending_models = self._pending_models, {}
        alerts: list[Alert] = []
        for group, model in pending.items():
            swapped = self.fleet.model(group) is not None
            if swapped:
                self._save_calibration(group)  # the old model's: kept if the swap is undone
            alerts += self.runner.install(group, model).alerts
            self.shadows.on_model(group, model)
            self._restore_calibration(group)
            if not swapped:
                self.alarm_state.restore(group)
            self.metrics.group_model(group, model.version, _created_at(model))
            log.info("%s model %s in group %s", "swapped in" if swapped else "serving", model.version, group)
        return alerts

    # ------------------------------------------------------------------ calibrator state

    def _restore_calibration(self, group: str) -> None:
        """Adopt the group's saved calibrator state (same model version only). A corrupt
        file is a warning and a counted error, and the group starts fresh."""
        pipe = self.fleet.pipeline(group)
        if pipe is None or not pipe.online_cfg.enabled:
            return
        path = state_path(self.cfg.group_models_dir(group), self._state_owner())
        try:
            state = load_state(path)
            if state is None:
                return
            n = pipe.calibrator.restore(state.get(group), pipe.model.version)
        except (StateError, ValueError, TypeError) as exc:
            self.metrics.calibration_state_errors.labels("read").inc()
            log.warning("calibration state of group %s unusable, starting fresh: %s", group, exc)
            return
        log.info("calibration of group %s: restored %d stream(s) from %s", group, n, path)

    def _state_owner(self) -> str | None:
        """source: nats: this worker's partitions name its state file (workers may share a
        models dir); MQTT: one daemon per models dir, one file."""
        if self.cfg.source != "nats":
            return None
        owned = self.partitions if self.partitions is not None else self.cfg.nats.owned_partitions()
        return partitions_owner(owned)

    def _save_calibration(self, group: str) -> None:
        pipe = self.fleet.pipeline(group)
        if pipe is None or not pipe.online_cfg.enabled:
            return
        path = state_path(self.cfg.group_models_dir(group), self._state_owner())
        try:
            save_state(path, {group: pipe.calibrator.to_state(pipe.model.version)})
        except OSError as exc:
            self.metrics.calibration_state_errors.labels("write").inc()
            log.warning("cannot write the calibration state of group %s to %s: %s", group, path, exc)

    def save_calibration(self) -> None:
        """Write every group's calibrator state (the scoring thread, or after it stopped)."""
        for group in self.fleet.names:
            self._save_calibration(group)

    def _calibration_tick(self) -> None:
        """On the scoring thread: export effective thresholds, persist state now and then."""
        now = time.monotonic()
        export = now >= self._next_calibration_export
        self.shadows.after_batch(snapshot=export)
        if export:
            self._next_calibration_export = now + CALIBRATION_EXPORT_SECONDS
            self.shadows.export_drift()
            for group in self.fleet.names:
                pipe = self.fleet.pipeline(group)
                if pipe is None or not pipe.online_cfg.enabled:
                    continue
                cal = pipe.calibrator
                for stream in list(cal.streams):
                    self.metrics.set_calibration(stream, cal.effective_threshold(stream), cal.budget_use(stream))
        if now >= self._next_state_save:
            self._next_state_save = now + self.state_save_seconds
            self.save_calibration()
            self.alarm_state.save_all()
            self.shadows.save_all()
            self.shadows.save_drift()

    # ------------------------------------------------------------------ health

    def scoring_problem(self) -> str | None:
        """The scoring thread's part of `health`: None while it runs (or is meant to be stopped)."""
        if self._scorer is not None and not self._scorer.is_alive() and not self._stop.is_set():
            return "scoring thread is not running"
        return None

    def health(self) -> tuple[bool, str]:
        """Liveness (``/healthz``, Docker HEALTHCHECK, Kubernetes): the same function as the
        systemd watchdog (`liveness_problem`: scorer alive and progressing, paho's thread
        alive and hearing from the broker). Before `start` finishes it is "starting"."""
        if self.ingest is None or self._scorer is None:
            return True, "starting"
        if self._stop.is_set():
            return True, "stopping"
        problem = liveness_problem(self, stall_seconds=HEALTH_STALL_SECONDS)
        return (True, "ok") if problem is None else (False, problem)

    def groups_without_model(self) -> list[str]:
        with self._model_lock:
            pending = set(self._pending_models)
        return [g for g in self.fleet.without_model() if g not in pending]

    def ready(self) -> tuple[bool, str]:
        """Ready: every group has a model and the broker is connected. Not ready names the
        groups without a model (and why), so /readyz says which ones hold it back."""
        missing = self.groups_without_model()
        if missing:
            if not self.cfg.groups:
                return False, self.watcher.last_error or "no model loaded"
            why = "; ".join(f"{g}: {self.watchers[g].last_error or 'no model loaded'}" for g in missing)
            return False, f"groups without a model: {', '.join(missing)} ({why})"
        if self.ingest is None or not self.ingest.connected:
            broker = "NATS server" if self.cfg.source == "nats" else "MQTT broker"
            return False, f"not connected to the {broker}" + (
                f": {self.ingest.last_error}" if self.ingest is not None and self.ingest.last_error else ""
            )
        if not getattr(self.ingest, "subscribed", True):  # MQTT: until SUBACK, a clean session loses messages
            return False, "connected; waiting for the broker to grant the subscriptions"
        warmed = getattr(self.ingest, "warmed", None)  # NATS: replaying the partitions' last window
        if warmed is not None and not warmed.is_set():
            return False, "warming up: replaying the owned partitions' last window from JetStream"
        return True, "ok"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        cfg = self.cfg
        use_threads(cfg.model.threads)  # scoring's torch threads (the daemon's, not a group's)
        self._poll_model()
        self._install_pending_model()
        self.metrics.set_callbacks(
            queue_depth=self.queue.qsize,
            streams_active=self.fleet.streams_active,
            queue_readings=self.queue.readings,
            queue_bytes=self.queue.bytes,
        )
        self.http = serve(self.registry, cfg.metrics.address, cfg.metrics.port, self.health, self.ready)
        if cfg.record.enabled:  # tap of our own intake: retraining data is exactly what was scored
            self.recorder = Recorder(
                cfg.record.dir,
                rotate_bytes=cfg.record.rotate_bytes,
                rotate_seconds=cfg.record.rotate_seconds,
                on_error=lambda _what: self.metrics.sink_error("recorder"),
                max_age_seconds=cfg.record.max_age_hours * 3600.0,
                max_bytes=cfg.record.max_bytes,
                on_deleted=self.metrics.recordings_deleted,
            ).start()
        self.ingest = self._make_ingest()
        if self.integrations is not None:  # its publish goes through the client made just now
            self.integrations.set_publish(self.ingest.publish)
        # high-volume integrator messages give way to alerts (yielding.py); the status and
        # stream-state topics above are few and retained, and go as they are
        self.integrator_publish = YieldingPublisher(
            self.ingest.publish, cfg.alerts.integrator_max_unsent, on_shed=self.metrics.integrator_shed.inc
        )
        if cfg.alerts.latent_topic:
            self.latent_out = LatentPublisher(
                self.integrator_publish, cfg.alerts.latent_topic, cfg.alerts.latent_every_seconds
            )
        self.sinks = [self._broker_sink(self.ingest)]
        if cfg.alerts.log:
            self.sinks.append(LogSink())
        if self.recorder is not None:  # alerts beside the recordings: retraining leaves those spans out
            self.sinks.append(
                JSONLinesSink(Path(cfg.record.dir) / ALERTS_FILE, on_error=lambda: self.metrics.sink_error("file"))
            )
        am = cfg.alertmanager
        if am.urls:  # (alerts.alertmanager_url is folded into alertmanager.urls by the config)
            self.sinks.append(
                AlertmanagerSink(
                    am.urls,
                    timeout_seconds=am.timeout_seconds,
                    queue_size=am.queue_size,
                    resend_seconds=am.resend_seconds,
                    labels=am.labels,
                    max_attempts=am.max_attempts,
                    retry_initial_seconds=am.retry_initial_seconds,
                    retry_max_seconds=am.retry_max_seconds,
                    username=am.username,
                    password=am.password,
                    bearer_token=am.bearer_token,
                    on_error=lambda: self.metrics.sink_error("alertmanager"),
                )
            )
        self.sinks.extend(self.extra_sinks)
        self._scorer = threading.Thread(target=self._score_loop, name="scorer", daemon=True)
        self._scorer.start()
        self.ingest.start()
        log.info("monitor started; metrics on http://%s:%d/metrics", cfg.metrics.address, self.http.port)

    def _broker_sink(self, ingest: Source) -> Sink:
        """Alerts on the broker: MQTT, core NATS, or (nats.alerts_stream) JetStream, de-duplicated."""
        cfg = self.cfg
        on_error = functools.partial(self.metrics.sink_error, "mqtt")
        if isinstance(ingest, NATSIngest) and cfg.nats.alerts_stream:
            return JetStreamAlertSink(ingest.publish_alert, cfg.alerts.topic, on_error=on_error)
        return MQTTSink(ingest.publish, cfg.alerts.topic, cfg.alerts.qos, cfg.alerts.retain, on_error=on_error)

    def _make_ingest(self) -> Source:
        cfg = self.cfg
        raw_tap = self.recorder.tap if self.recorder is not None else None
        if cfg.source == "nats":
            ingest = NATSIngest(
                cfg.nats,
                cfg.topics,
                self.codec,
                self.queue,
                self.metrics,
                partitions=self.partitions,
                warmup_seconds=self.warmup_seconds(),
                raw_tap=raw_tap,
                alerts_topic=cfg.alerts.topic,
            )
            self.registry.register(NATSCollector(ingest))
            return ingest
        if cfg.availability.enabled:
            self.integrations = Integrations(cfg, self.fleet, _unconnected)
        hooks = self.integrations
        return MQTTIngest(
            cfg.mqtt,
            cfg.topics,
            self.codec,
            self.queue,
            self.metrics,
            on_state=hooks.on_connection if hooks is not None else None,
            manual_ack=self.manual_ack,
            raw_tap=raw_tap,
            will=hooks.will() if hooks is not None else None,
        )

    def warmup_seconds(self) -> float:
        """How far back a (re)started NATS worker replays: `nats.warmup_seconds`, else per group
        a full window plus the alarm's memory (n windows to fire, resolve_m to resolve), the longest."""
        if self.cfg.nats.warmup_seconds is not None:
            return self.cfg.nats.warmup_seconds
        longest = 0.0
        for g in self.cfg.fleet():
            model = self.fleet.model(g.name)
            period = model.period_seconds if model is not None else g.stream.period_seconds
            period = period if isinstance(period, float) else 1.0
            size = model.window_size if model is not None else g.model.window_size
            stride = model.stride if model is not None else 1
            longest = max(longest, period * (size + stride * (g.alarm.n + g.alarm.resolve_m) + 1))
        return longest

    def request_stop(self, *_: object) -> None:
        self._stop.set()

    def request_reload(self, *_: object) -> None:
        self._reload.set()

    def reload_config(self) -> list[str]:
        """Re-read the config file: apply what is safe live (log level), report the rest.

        Returns the sections that changed but need a restart. A file that no longer
        validates is logged and ignored: the running config stays.
        """
        if self.config_path is None:
            return []
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("SIGHUP: %s is invalid, keeping the running config: %s", self.config_path, exc)
            return []
        if new.log_level != self.cfg.log_level:
            logging.getLogger().setLevel(new.log_level)
            log.warning("SIGHUP: log level %s -> %s", self.cfg.log_level, new.log_level)
            self.cfg.log_level = new.log_level
        old_d, new_d = self.cfg.to_dict(), new.to_dict()
        restart = sorted(k for k in new_d if k != "log_level" and new_d[k] != old_d[k])
        if restart:
            log.warning("SIGHUP: changes in %s take effect after a restart", ", ".join(restart))
        return restart

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT request a stop, SIGHUP a reload (main thread only). Install them
        before `start`: a signal that arrives while the threads start is then a clean stop."""
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGHUP, self.request_reload)

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def run_forever(self, install_signals: bool = True, on_tick: Callable[[], None] | None = None) -> int:
        """Serve until SIGTERM/SIGINT; returns the exit code."""
        if install_signals:
            self.install_signal_handlers()
        next_poll = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if self._reload.is_set():
                self._reload.clear()
                log.info("SIGHUP: reloading the model pointer and the config file")
                self.reload_config()
                self._poll_model(force=True)
                next_poll = now + self.cfg.models.poll_seconds
            elif now >= next_poll:
                self._poll_model()
                next_poll = now + self.cfg.models.poll_seconds
            if on_tick:
                on_tick()
            self._stop.wait(min(0.5, self.cfg.models.poll_seconds))
        return self.shutdown()

    def shutdown(self) -> int:
        """Stop intake, drain what was received, flush alerts, close everything."""
        deadline = time.monotonic() + self.stop_timeout
        stopping()  # tell systemd (no-op elsewhere)
        self._stop.set()
        if self.ingest is not None:
            self.ingest.stop_intake()  # no new messages; unacked QoS 1 ones stay with the broker
        self._intake_stopped.set()
        if self._scorer is not None:
            self._scorer.join(max(0.1, deadline - time.monotonic() - 1.0))
            if self._scorer.is_alive():
                log.error("scoring thread did not drain within %.1fs", self.stop_timeout)
            else:
                self.save_calibration()
                self.alarm_state.save_all()
                self.shadows.save_all()
                self.shadows.save_drift()
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:
                log.exception("closing sink %s", getattr(sink, "name", sink))
        if self.integrations is not None:  # retained offline before a clean DISCONNECT (no will then)
            self.integrations.stop(timeout=min(1.0, max(0.1, deadline - time.monotonic())))
        if self.ingest is not None:
            self.ingest.stop(timeout=max(0.1, deadline - time.monotonic()))
        if self.recorder is not None:
            self.recorder.close(timeout=max(0.1, deadline - time.monotonic()))
        if self.http is not None:
            self.http.shutdown()
        log.info("monitor stopped")
        return 0

    # ------------------------------------------------------------------ scoring thread

    def _take_batch(self, max_items: int) -> list:
        """Up to `max_items` queued messages; waits up to 0.1 s for the first, then up to
        ``scoring.max_batch_delay_seconds`` for more while fewer are there."""
        q = self.queue
        if not q.wait(0.1):
            return []
        items = q.take(max_items)
        delay = self.cfg.scoring.max_batch_delay_seconds
        if delay > 0 and len(items) < max_items:
            deadline = time.monotonic() + delay
            while len(items) < max_items:
                more = q.take(max_items - len(items))
                if more:
                    items += more
                    continue
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.0005)
        return items

    def _sensor_tick(self) -> None:
        """Once a second: the stale check (wall clock) and the last-reading gauges."""
        now = time.time()
        self.silences.refresh()  # one stat; a re-read only when the file changed
        self.runner.tick(now)
        for alert in self.alarm_state.tick():
            self._on_alert(alert)
        for group in self.fleet.names:
            pipe = self.fleet.pipeline(group)
            if pipe is not None:
                for stream, ts in pipe.last_reading_times().items():
                    if ts > -np.inf:
                        self.metrics.set_last_reading(stream, ts)
        if self.integrations is not None:
            self.integrations.tick()

    def _score_loop(self) -> None:
        batch_items = max(1, self.cfg.scoring.batch_size)
        next_tick = time.monotonic()
        while True:
            try:
                self._install_pending_model()
                self.shadows.install_pending()
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + 1.0
                    self._sensor_tick()
                    self._calibration_tick()  # idle too: the last batch's state is saved on time
                items = self._take_batch(batch_items)
                self.last_progress = time.monotonic()
                if not items:
                    if self._intake_stopped.is_set():
                        break
                    continue
                self._process(items)
                self._calibration_tick()
            except Exception:
                self.metrics.drop(DropReason.INTERNAL_ERROR, 1)
                log.exception("scoring batch failed")
        log.info("scoring thread drained and stopped")

    def _process(self, items: list) -> None:
        warm = [item for item in items if getattr(item[3], "warm", False)]
        if warm:  # NATS warm-up replays first (each stream's precede its live ones), alerts muted
            self._muted_flush(warm)
            items = [item for item in items if not getattr(item[3], "warm", False)]
            if not items:
                return
        oldest = items[0][0]
        batch: list = []
        for _, readings, rejected, _msg in items:
            if type(readings) is list:
                batch += readings
            else:  # a ReadingBlock: the pipeline reads its columns
                batch.append(readings)
            if rejected:
                self.metrics.rejected(rejected)
        # all readings of the batch at once, in arrival order, to their groups: each
        # stream's readings are vectorized where they can be, one forward pass per group
        self.fleet.push_batch(batch)
        started = time.monotonic()
        before = self.runner.windows
        self.runner.flush()
        done = time.monotonic()
        self._report_counters()
        if self.runner.windows > before:
            self.metrics.scored(self.runner.windows - before, done - started)
        self.metrics.end_to_end(done - oldest)
        if self.on_handled is not None:
            self.on_handled(items)
        self._ack_items(items)

    def _muted_flush(self, items: list) -> None:
        """Warm-up: windows, calibration and alarm state rebuilt from readings handled before
        the restart; their scores and alerts are not sent again."""
        batch: list = []
        for _, readings, _rejected, _msg in items:
            if type(readings) is list:
                batch += readings
            else:
                batch.append(readings)
        self.fleet.push_batch(batch)
        self._muted += 1
        try:
            self.runner.flush()
        finally:
            self._muted -= 1
        if self.on_handled is not None:
            self.on_handled(items)

    def _ack_items(self, items: list) -> None:
        """Ack the messages of handled queue items (manual acks only): one write for the batch."""
        if self.manual_ack and self.ingest is not None:
            self.ingest.ack_many([item[3] for item in items])

    def _report_counters(self) -> None:
        """Move the fleet's drop counters into metrics (added per batch, not per reading)."""
        fleet = self.fleet
        for group in fleet.names:
            for reason, total in fleet.group_counters(group).items():
                if reason == "clock_steps":
                    delta = total - self._reported[(group, reason)]
                    if delta:
                        self._reported[(group, reason)] = total
                        self.metrics.clock_steps.labels(group).inc(delta)
                        log.warning(
                            "group %s: %d stream(s) whose sensor clock stepped back were re-synced "
                            "(readings far older than the stream's newest; stream.clock_step_seconds)",
                            group,
                            delta,
                        )
                if reason in TALLIES:
                    continue
                delta = total - self._reported[(group, reason)]
                if delta:
                    self._reported[(group, reason)] = total
                    self.metrics.drop(reason, delta)
                    self.metrics.group_drop(group, reason, delta)
        for reason, total in fleet.counters.items():
            delta = total - self._reported[("", reason)]
            if delta:
                self._reported[("", reason)] = total
                self.metrics.drop(reason, delta)
        if fleet.new_unrouted:
            names, fleet.new_unrouted = fleet.new_unrouted, []
            self.metrics.unrouted_streams.set(len(fleet.unrouted))
            log.warning(
                "readings of %d stream(s) match no group and are dropped (counted as no_group): %s",
                len(names),
                ", ".join(names[:20]) + (" ..." if len(names) > 20 else ""),
            )

    def _on_scores(self, result: GroupResult) -> None:
        if self._muted:
            return
        scores = result.scores
        for listener in self.score_listeners:
            try:
                listener(scores)
            except Exception:
                log.exception("score listener failed")
        self.metrics.group_scored(result.group, len(scores))
        self.shadows.on_scores(result)
        fleet = self.fleet
        for stream, value in scores.last_by_stream().items():
            self.metrics.set_score(stream, value, fleet.firing(result.group, stream))
        if scores.latent_states is not None:
            self._export_states(result)
        elif self.latent_out is not None:  # a bundle without states: codes only
            self._publish_latent(result)
        if self.integrations is not None:
            self.integrations.on_scores(result)
        if self.ingest is not None and (self.cfg.alerts.scores_topic or self.cfg.alerts.denoised_topic):
            self._publish_for_integrators(result)

    def _export_states(self, result: GroupResult) -> None:
        """monitor_operating_state / monitor_latent_novelty of each stream's newest window,
        and the latent topic (rate-bounded) when configured."""
        for stream, (state, novelty) in result.scores.newest_states().items():  # one gauge set per stream
            self.metrics.set_state(stream, state + 1, novelty)
        self._publish_latent(result)

    def _publish_latent(self, result: GroupResult) -> None:
        if self.latent_out is None or result.scores.codes is None:
            return
        model = self.fleet.model(result.group)
        if model is None:
            return
        st = model.latent.states if model.latent is not None else None
        self.latent_out.send(result.scores, model.version, None if st is None else st.names)

    def _on_alert(self, alert: Alert) -> None:
        if self._muted:
            self.muted_alerts += 1
            return
        if alert.kind == "regime_change":
            self.metrics.regime_changes.labels(alert.group).inc()
            log.warning(
                "regime_change on %s (group %s): errors went %s from %.4g to %.4g since %s; re-baselined%s",
                alert.stream,
                alert.group,
                alert.detail.get("direction"),
                alert.detail.get("level_before", float("nan")),
                alert.detail.get("level_after", float("nan")),
                alert.started_at,
                f" its scaler (mean {alert.detail['scaler']['mean']}, std {alert.detail['scaler']['std']})"
                if "scaler" in alert.detail
                else " its errors",
            )
        else:
            # a sensor fault does not set the stream's anomaly alert_state gauge
            self.metrics.alert(alert.state, alert.stream if alert.kind == "anomaly" else None)
            self.metrics.alert_cause(alert.kind, alert.cause, alert.state)
            self.metrics.group_alert(alert.group, alert.state)
        if self.silences.engaged and self.silences.silenced(alert.stream, alert.state, alert.alert_id, time.time()):
            self.metrics.silenced(alert.stream, alert.kind)  # scored and recorded; not sent
            log.info("alert %s %s of %s silenced", alert.kind, alert.state, alert.stream)
            return
        for sink in self.sinks:
            try:
                sink.send(alert)
            except Exception:
                self.metrics.sink_error(getattr(sink, "name", "unknown"))
                log.exception("alert sink %s failed", getattr(sink, "name", sink))
        if self.integrations is not None:
            try:
                self.integrations.on_alert(alert)
            except Exception:
                log.exception("stream state update failed")

    def _publish_for_integrators(self, result: GroupResult) -> None:
        """Per scored window: its score, and the denoised (filtered) readings of its last frame."""
        scores = result.scores
        scores_topic = self.cfg.alerts.scores_topic
        denoised_topic = self.cfg.alerts.denoised_topic
        model = self.fleet.model(result.group)
        assert model is not None and self.integrator_publish is not None  # the scores came from it
        publish = self.integrator_publish
        channels = model.channels
        values = scores.score.tolist()
        for i, stream in enumerate(scores.streams):
            ts = scores.times[i]
            if scores_topic:
                body = json.dumps({"stream": stream, "ts": ts, "score": values[i]}).encode()
                publish(scores_topic.format(stream=stream), body, 0, False)
            if denoised_topic:
                frame = dict(zip(channels, np.asarray(scores.observed[i], dtype=float).tolist(), strict=True))
                body = json.dumps({"stream": stream, "ts": ts, **frame}).encode()
                publish(denoised_topic.format(stream=stream), body, 0, False)


def _unconnected(topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
    raise RuntimeError("not connected yet")


def _created_at(model: ScoringModel) -> float | None:
    """The bundle's created_at as Unix time, None when absent or unreadable."""
    return model.manifest.created_unix if model.manifest is not None else None
