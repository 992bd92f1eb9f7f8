"""Every metric of the daemon, defined in one place against an injected registry.

`Metrics(registry)` builds the metric families (prefix ``monitor_``, base units,
``_total`` counters) and binds the label children of fixed label sets once, so a hot
path does one ``child.inc(n)``. Values that are cheap to read (queue depth, active
streams) are computed at scrape time through callbacks. Per-stream gauges have bounded
cardinality: only the first `max_stream_labels` streams get a label; the others are
counted in ``monitor_stream_labels_dropped_total`` and not exported.

No ``*_created`` series: prometheus_client would export one per counter, histogram and
label child (a third of all samples), and nothing reads them; `Metrics` turns them off
with `disable_created_metrics` (a process-wide switch of the library). The registry also
carries the process collector (``process_*``: CPU, resident memory, open files, start
time; Linux only).

The HTTP server that exposes them (with ``/healthz`` and ``/readyz``) is `monitor.io.http`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import platform
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import version as _distribution_version

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    disable_created_metrics,
)

from monitor.core.types import DROP_REASONS, REJECT_REASONS, Rejected

__all__ = [
    "ALERT_STATES",
    "DROP_REASONS",
    "MODEL_LOAD_RESULTS",
    "REJECT_REASONS",
    "Metrics",
]

log = logging.getLogger(__name__)

ALERT_STATES = ("firing", "resolved")
MODEL_LOAD_RESULTS = ("ok", "rejected")
SINK_NAMES = ("mqtt", "log", "alertmanager")

BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
SCORING_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
END_TO_END_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _package_version() -> str:
    try:
        return _distribution_version("monitor")
    except Exception:
        return "unknown"


class Metrics:
    """The daemon's metric families on `registry` (never the global one).

    Thread-safe: prometheus-client children are; the per-stream label table takes a
    lock only when a stream is admitted or forgotten.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        max_stream_labels: int = 1000,
        reject_reasons: Iterable[str] = REJECT_REASONS,
        drop_reasons: Iterable[str] = DROP_REASONS,
        version: str | None = None,
        groups: Iterable[str] = ("default",),
    ):
        if max_stream_labels < 0:
            raise ValueError(f"max_stream_labels must be >= 0, got {max_stream_labels}")
        self.registry = registry
        self.max_stream_labels = int(max_stream_labels)
        r = registry
        disable_created_metrics()  # process-wide in prometheus_client; read at every scrape
        ProcessCollector(registry=r)  # process_* (Linux: /proc/self); nothing elsewhere

        # ------------------------------------------------------------- ingest
        # Counted per message in paho's thread: the ingest keeps plain ints and they are
        # added in at scrape time (`add_received_source`), so the hot path takes no lock.
        # `.inc()` on these still works (e.g. other producers); both are exported summed.
        self.messages_received = Counter(
            "monitor_messages_received_total", "MQTT messages received (before decoding).", registry=None
        )
        self.readings_received = Counter(
            "monitor_readings_received_total", "Readings decoded from received messages.", registry=None
        )
        self._received_sources: list[Callable[[], tuple[int, int]]] = []
        r.register(_ReceivedCounters(self))
        self.readings_rejected = Counter(
            "monitor_readings_rejected_total",
            "Input that could not become a reading, by reason.",
            ["reason"],
            registry=r,
        )
        self.drops = Counter(
            "monitor_drops_total", "Decoded readings dropped before scoring, by reason.", ["reason"], registry=r
        )
        self.queue_depth = Gauge("monitor_queue_depth", "Items waiting in the ingest hand-off queue.", registry=r)
        self.queue_readings = Gauge(
            "monitor_queue_readings", "Readings waiting in the ingest hand-off queue.", registry=r
        )
        self.queue_bytes = Gauge(
            "monitor_queue_payload_bytes", "Payload bytes waiting in the ingest hand-off queue.", registry=r
        )
        self.backpressure_held = Counter(
            "monitor_backpressure_held_total",
            "Messages queued past the hand-off bounds and held unacked (mqtt.overload: backpressure).",
            registry=r,
        )
        self.streams_active = Gauge("monitor_streams_active", "Streams with state in the pipeline.", registry=r)
        # label children bound once: the hot path is one dict lookup and one inc()
        self.rejected_children = {reason: self.readings_rejected.labels(reason) for reason in reject_reasons}
        self.drop_children = {reason: self.drops.labels(reason) for reason in drop_reasons}
        self._label_lock = threading.Lock()

        # ------------------------------------------------------------- scoring
        self.windows_scored = Counter("monitor_windows_scored_total", "Windows scored by the model.", registry=r)
        self.scoring_batch_size = Histogram(
            "monitor_scoring_batch_size", "Windows per scoring batch.", buckets=BATCH_SIZE_BUCKETS, registry=r
        )
        self.scoring_latency = Histogram(
            "monitor_scoring_latency_seconds",
            "Time to score one batch of windows.",
            buckets=SCORING_SECONDS_BUCKETS,
            registry=r,
        )
        self.end_to_end_latency = Histogram(
            "monitor_end_to_end_latency_seconds",
            "Time from receiving a message to scoring the window it completed.",
            buckets=END_TO_END_SECONDS_BUCKETS,
            registry=r,
        )

        # ------------------------------------------------------------- per stream (bounded)
        self.anomaly_score = Gauge(
            "monitor_anomaly_score",
            "Latest anomaly score per stream, in threshold units (1.0 = at threshold).",
            ["stream"],
            registry=r,
        )
        self.alert_state = Gauge(
            "monitor_alert_state", "Alarm state per stream: 1 firing, 0 not firing.", ["stream"], registry=r
        )
        self.last_reading = Gauge(
            "monitor_stream_last_reading_timestamp_seconds",
            "Data time of each stream's newest reading (any channel), Unix seconds.",
            ["stream"],
            registry=r,
        )
        self.stream_labels_dropped = Counter(
            "monitor_stream_labels_dropped_total",
            "Streams not exported with their own label because max_stream_labels was reached.",
            registry=r,
        )
        self.operating_state = Gauge(
            "monitor_operating_state",
            "Operating state of each stream's latest window (1..k, the bundle's k-means states; decision 0020).",
            ["stream"],
            registry=r,
        )
        self.latent_novelty = Gauge(
            "monitor_latent_novelty",
            "Distance of each stream's latest window code to its nearest state centroid, in units of the "
            "training 99th percentile (1.0). Measured only: no alert decision uses it.",
            ["stream"],
            registry=r,
        )
        self.effective_threshold = Gauge(
            "monitor_effective_threshold",
            "Raw error at which a stream scores 1.0 now (its online calibration and alert budget).",
            ["stream"],
            registry=r,
        )
        self.budget_use = Gauge(
            "monitor_alert_budget_use_ratio",
            "Alert onsets of a stream over the last week (one-week memory) divided by alarm.budget.",
            ["stream"],
            registry=r,
        )
        self.regime_changes = Counter(
            "monitor_regime_changes_total",
            "Sustained level/variance changes after which a stream re-baselined, by group.",
            ["group"],
            registry=r,
        )
        self.integrator_shed = Counter(
            "monitor_integrator_publishes_shed_total",
            "Score, denoised, latent and stream-state messages not published because the broker "
            "connection was behind (alerts.integrator_max_unsent): alerts go first.",
            registry=r,
        )
        self.clock_steps = Counter(
            "monitor_clock_steps_total",
            "Streams re-synced after their sensor clock stepped back (stream.clock_step_seconds), by group.",
            ["group"],
            registry=r,
        )
        self.calibration_state_errors = Counter(
            "monitor_calibration_state_errors_total",
            "Calibration state files that could not be read or written (a fresh start or a kept old file).",
            ["op"],
            registry=r,
        )
        self.alarm_state_errors = Counter(
            "monitor_alarm_state_errors_total",
            "Alarm state files that could not be read or written (a fresh start or a kept old file).",
            ["op"],
            registry=r,
        )
        self.alerts_silenced = Counter(
            "monitor_alerts_silenced_total",
            "Alerts held back from every sink by a silence (stream: within the label cap, else _other).",
            ["stream", "kind"],
            registry=r,
        )
        self.silence_file_errors = Counter(
            "monitor_silence_file_errors_total",
            "Reads of the silences file that failed (unreadable or malformed; the silences in force are kept).",
            registry=r,
        )
        self._streams: dict[str, tuple] = {}  # stream -> (score child, state child, last reading child)
        self._unlabelled: set[str] = set()
        self._state_children: dict[str, tuple] = {}  # stream -> (operating state, novelty) children

        # ------------------------------------------------------------- alerts and model
        self.alerts = Counter("monitor_alerts_total", "Alert state changes, by state.", ["state"], registry=r)
        self.recording_deleted_files = Counter(
            "monitor_recording_deleted_files_total", "Recording files deleted by retention.", registry=r
        )
        self.recording_deleted_bytes = Counter(
            "monitor_recording_deleted_bytes_total", "Bytes of recording files deleted by retention.", registry=r
        )
        self.alert_children = {state: self.alerts.labels(state) for state in ALERT_STATES}
        self.alert_causes = Counter(
            "monitor_alert_causes_total",
            "Alert state changes by kind (anomaly, sensor), cause (sensor alerts: stale, stuck, "
            "out_of_range, rate; empty for anomaly alerts) and state.",
            ["kind", "cause", "state"],
            registry=r,
        )
        self.sink_errors = Counter(
            "monitor_sink_errors_total", "Alert deliveries that failed, by sink.", ["sink"], registry=r
        )
        self.sink_error_children = {sink: self.sink_errors.labels(sink) for sink in SINK_NAMES}
        self.model_info = Gauge(
            "monitor_model_info", "The model bundle serving now (always 1).", ["version"], registry=r
        )
        self.model_load_timestamp = Gauge(
            "monitor_model_load_timestamp_seconds", "When the serving model was loaded (Unix time).", registry=r
        )
        self.model_loads = Counter(
            "monitor_model_loads_total", "Model bundle load attempts, by result.", ["result"], registry=r
        )
        self.model_load_children = {res: self.model_loads.labels(res) for res in MODEL_LOAD_RESULTS}
        self.model_load_duration = Gauge(
            "monitor_model_load_duration_seconds", "How long the last model load and test scoring took.", registry=r
        )
        # ------------------------------------------------------------- per group (the config's groups: bounded)
        self.groups = list(dict.fromkeys(groups))
        self._serving: dict[str, str] = {}  # group -> version serving
        self.group_model_info = Gauge(
            "monitor_group_model_info",
            "The model bundle serving each group (always 1).",
            ["group", "version"],
            registry=r,
        )
        self.group_model_load_timestamp = Gauge(
            "monitor_group_model_load_timestamp_seconds",
            "When each group's model was loaded (Unix time).",
            ["group"],
            registry=r,
        )
        self.group_model_age = Gauge(
            "monitor_group_model_age_seconds",
            "Age of each group's serving model: now minus the bundle's created_at.",
            ["group"],
            registry=r,
        )
        self.group_ready = Gauge(
            "monitor_group_ready", "1 while the group has a model to score with, else 0.", ["group"], registry=r
        )
        self.group_windows_scored = Counter(
            "monitor_group_windows_scored_total", "Windows scored, by group.", ["group"], registry=r
        )
        self.group_alerts = Counter(
            "monitor_group_alerts_total", "Alert state changes, by group and state.", ["group", "state"], registry=r
        )
        self.group_drops = Counter(
            "monitor_group_drops_total",
            "Readings of a group's streams dropped, by group and reason.",
            ["group", "reason"],
            registry=r,
        )
        self.unrouted_streams = Gauge(
            "monitor_unrouted_streams", "Distinct streams that matched no group (counted up to a cap).", registry=r
        )
        drop_list = list(self.drop_children)
        self.group_windows_children = {g: self.group_windows_scored.labels(g) for g in self.groups}
        self.group_alert_children = {
            (g, st): self.group_alerts.labels(g, st) for g in self.groups for st in ALERT_STATES
        }
        self.group_drop_children = {(g, rsn): self.group_drops.labels(g, rsn) for g in self.groups for rsn in drop_list}
        self._created: dict[str, float] = {}
        for g in self.groups:
            self.group_ready.labels(g).set(0)
            self.group_model_age.labels(g).set_function(functools.partial(self._age, g))

        # ------------------------------------------------------------- MQTT and build
        self.mqtt_connected = Gauge("monitor_mqtt_connected", "1 while connected to the MQTT broker.", registry=r)
        self.mqtt_reconnects = Counter(
            "monitor_mqtt_reconnects_total", "Successful MQTT connections after the first one.", registry=r
        )
        self.mqtt_fast_path_failures = Counter(
            "monitor_mqtt_fast_path_failures_total",
            "Unexpected exceptions in the MQTT fast path; each switches that client to plain paho for good.",
            registry=r,
        )
        self.mqtt_takeovers = Counter(
            "monitor_mqtt_takeovers_total",
            "Times the broker closed our session because another client connected with our client id.",
            registry=r,
        )
        self.build_info = Info("monitor_build", "Version of the running daemon.", registry=r)
        self.build_info.info(
            {
                "version": version or _package_version(),
                "python": platform.python_version(),
            }
        )

    # ----------------------------------------------------------------- ingest helpers

    def rejected(self, rejects: Iterable[Rejected]) -> None:
        """Count `Rejected` values (e.g. one queue item's) by reason."""
        children = self.rejected_children
        for rej in rejects:
            child = children.get(rej.reason)
            if child is None:
                child = self._child(children, self.readings_rejected, rej.reason)
            child.inc()

    def add_rejected(self, counts: Mapping[str, int]) -> None:
        """Add per-reason reject counts (a batch's tally)."""
        for reason, n in counts.items():
            if n:
                child = self.rejected_children.get(reason)
                if child is None:
                    child = self._child(self.rejected_children, self.readings_rejected, reason)
                child.inc(n)

    def drop(self, reason: str, n: int = 1) -> None:
        """Count `n` decoded readings dropped before scoring, under `reason`."""
        if n:
            child = self.drop_children.get(reason)
            if child is None:
                child = self._child(self.drop_children, self.drops, reason)
            child.inc(n)

    def add_received_source(self, source: Callable[[], tuple[int, int]]) -> None:
        """Add ``source() -> (messages, readings)``, running totals read at scrape time, to
        ``monitor_messages_received_total`` / ``monitor_readings_received_total``.

        For a producer that counts in plain ints on its hot path (`MQTTIngest`); the
        totals must only ever grow.
        """
        with self._label_lock:
            self._received_sources = [*self._received_sources, source]

    def received_totals(self) -> tuple[float, float]:
        """(messages, readings) received: the counters plus every source."""
        messages = readings = 0.0
        for source in self._received_sources:
            m, n = source()
            messages += m
            readings += n
        return messages, readings

    def set_callbacks(
        self,
        queue_depth: Callable[[], float] | None = None,
        streams_active: Callable[[], float] | None = None,
        queue_readings: Callable[[], float] | None = None,
        queue_bytes: Callable[[], float] | None = None,
    ) -> None:
        """Read the queue depth / active stream count at scrape time (e.g. ``queue.qsize``)."""
        if queue_depth is not None:
            self.queue_depth.set_function(queue_depth)
        if queue_readings is not None:
            self.queue_readings.set_function(queue_readings)
        if queue_bytes is not None:
            self.queue_bytes.set_function(queue_bytes)
        if streams_active is not None:
            self.streams_active.set_function(streams_active)

    def _child(self, children: dict, family, label: str):
        with self._label_lock:
            child = children.get(label)
            if child is None:
                child = children[label] = family.labels(label)
        return child

    # ----------------------------------------------------------------- scoring helpers

    def scored(self, n_windows: int, seconds: float) -> None:
        """One scored batch: its size, how long it took, and the windows it scored."""
        self.scoring_batch_size.observe(n_windows)
        self.scoring_latency.observe(seconds)
        self.windows_scored.inc(n_windows)

    def end_to_end(self, seconds: float) -> None:
        """Receive (monotonic) -> scored, for one batch or reading."""
        self.end_to_end_latency.observe(seconds)

    def set_score(self, stream: str, score: float | None = None, firing: bool | None = None) -> bool:
        """Export a stream's latest score and/or alarm state.

        Returns False when the stream is beyond `max_stream_labels` (not exported).
        """
        children = self._streams.get(stream)
        if children is None:
            children = self._admit(stream)
            if children is None:
                return False
        if score is not None:
            children[0].set(score)
        if firing is not None:
            children[1].set(1 if firing else 0)
        return True

    def silenced(self, stream: str, kind: str) -> None:
        """Count an alert held back by a silence (bounded: a stream beyond the label cap is _other)."""
        self.alerts_silenced.labels(stream if stream in self._streams else "_other", kind).inc()

    def set_calibration(self, stream: str, threshold: float | None, budget_use: float | None) -> bool:
        """Export a stream's effective threshold and alert-budget use (within the label cap)."""
        if stream not in self._streams and self._admit(stream) is None:
            return False
        if threshold is not None:
            self.effective_threshold.labels(stream).set(threshold)
        if budget_use is not None:
            self.budget_use.labels(stream).set(budget_use)
        return True

    def set_state(self, stream: str, state: int, novelty: float) -> bool:
        """Export a stream's operating state (1..k) and novelty; False beyond `max_stream_labels`."""
        children = self._state_children.get(stream)
        if children is None:
            if stream not in self._streams and self._admit(stream) is None:
                return False
            children = self._state_children[stream] = (
                self.operating_state.labels(stream),
                self.latent_novelty.labels(stream),
            )
        children[0].set(state)
        children[1].set(novelty)
        return True

    def set_last_reading(self, stream: str, timestamp: float) -> bool:
        """Export a stream's newest reading time; False beyond `max_stream_labels`."""
        children = self._streams.get(stream)
        if children is None:
            children = self._admit(stream)
            if children is None:
                return False
        children[2].set(timestamp)
        return True

    def alert_cause(self, kind: str, cause: str | None, state: str) -> None:
        """Count one alert state change by kind and cause (bounded: the kinds and causes are fixed)."""
        self.alert_causes.labels(kind, cause or "", state).inc()

    def forget_stream(self, stream: str) -> None:
        """Remove a stream's labelled series (the stream was evicted); frees its slot."""
        with self._label_lock:
            self._unlabelled.discard(stream)
            self._state_children.pop(stream, None)
            if self._streams.pop(stream, None) is None:
                return
            for gauge in (
                self.anomaly_score,
                self.alert_state,
                self.effective_threshold,
                self.budget_use,
                self.last_reading,
                self.operating_state,
                self.latent_novelty,
            ):
                with contextlib.suppress(KeyError):
                    gauge.remove(stream)

    @property
    def labelled_streams(self) -> int:
        return len(self._streams)

    def _admit(self, stream: str) -> tuple | None:
        with self._label_lock:
            children = self._streams.get(stream)
            if children is not None:
                return children
            if len(self._streams) >= self.max_stream_labels:
                if stream not in self._unlabelled:
                    self._unlabelled.add(stream)
                    self.stream_labels_dropped.inc()
                return None
            self._unlabelled.discard(stream)
            children = (
                self.anomaly_score.labels(stream),
                self.alert_state.labels(stream),
                self.last_reading.labels(stream),
            )
            self._streams[stream] = children
            return children

    # ----------------------------------------------------------------- alerts, model, MQTT

    def alert(self, state: str, stream: str | None = None) -> None:
        """Count one alert state change; with `stream`, also set its alert_state gauge."""
        child = self.alert_children.get(state)
        if child is None:
            child = self._child(self.alert_children, self.alerts, state)
        child.inc()
        if stream is not None:
            self.set_score(stream, firing=(state == "firing"))

    def recordings_deleted(self, files: int, size: int) -> None:
        self.recording_deleted_files.inc(files)
        self.recording_deleted_bytes.inc(size)

    def sink_error(self, sink: str) -> None:
        """An alert sink failed to deliver."""
        child = self.sink_error_children.get(sink)
        if child is None:
            child = self._child(self.sink_error_children, self.sink_errors, sink)
        child.inc()

    def model_load(
        self, ok: bool, seconds: float | None = None, version: str | None = None, at: float | None = None
    ) -> None:
        """A bundle load attempt. ok: `version` now serves (model_info is replaced, not
        accumulated); not ok: counted as rejected, the old model keeps serving."""
        if seconds is not None:
            self.model_load_duration.set(seconds)
        if not ok:
            self.model_load_children["rejected"].inc()
            return
        with self._label_lock:
            self.model_info.clear()
            self.model_info.labels(version or "unknown").set(1)
        self.model_load_timestamp.set(time.time() if at is None else at)
        self.model_load_children["ok"].inc()

    # ----------------------------------------------------------------- per group

    def group_model(self, group: str, version: str, created_at: float | None = None, at: float | None = None) -> None:
        """`version` now serves `group`: its info, load time, age and readiness; the
        fleet-wide ``monitor_model_info`` lists every version serving some group."""
        with self._label_lock:
            old = self._serving.get(group)
            if old is not None and old != version:
                with contextlib.suppress(KeyError):
                    self.group_model_info.remove(group, old)
            self._serving[group] = version
            self.group_model_info.labels(group, version).set(1)
            self.model_info.clear()
            for v in sorted(set(self._serving.values())):
                self.model_info.labels(v).set(1)
            if created_at is not None:
                self._created[group] = created_at
        self.group_model_load_timestamp.labels(group).set(time.time() if at is None else at)
        self.group_ready.labels(group).set(1)

    def _age(self, group: str) -> float:
        created = self._created.get(group)
        return time.time() - created if created is not None else float("nan")

    def group_scored(self, group: str, n_windows: int) -> None:
        child = self.group_windows_children.get(group)
        if child is not None:
            child.inc(n_windows)

    def group_alert(self, group: str, state: str) -> None:
        child = self.group_alert_children.get((group, state))
        if child is not None:
            child.inc()

    def group_drop(self, group: str, reason: str, n: int) -> None:
        child = self.group_drop_children.get((group, reason))
        if child is not None and n:
            child.inc(n)

    def set_mqtt_connected(self, connected: bool) -> None:
        self.mqtt_connected.set(1 if connected else 0)


class _ReceivedCounters:
    """Exports `Metrics.messages_received` / `readings_received` plus the plain-int totals
    of the registered sources (see `Metrics.add_received_source`), read at scrape time."""

    def __init__(self, metrics: Metrics):
        self._metrics = metrics

    def describe(self):
        m = self._metrics
        return [*m.messages_received.describe(), *m.readings_received.describe()]

    def collect(self):
        m = self._metrics
        extra = m.received_totals()
        for counter, add in zip((m.messages_received, m.readings_received), extra, strict=True):
            for family in counter.collect():
                if add:
                    family.samples = [
                        s._replace(value=s.value + add) if s.name.endswith("_total") else s for s in family.samples
                    ]
                yield family
