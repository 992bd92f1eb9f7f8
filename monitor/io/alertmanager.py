"""The Alertmanager sink: posts alerts to every configured Alertmanager, retrying with backoff.

Alertmanager runs as an HA pair (or cluster) whose members gossip and deduplicate
notifications; a client must post every alert to *every* member (Prometheus does the
same), since a member that is down would otherwise lose it. So each URL gets its own
thread and bounded queue: a dead or slow URL neither delays the others nor the scoring
thread, whose `send` only enqueues.

Per URL: alerts waiting to be posted are kept by alert id (the latest state wins, so a
``resolved`` replaces its ``firing``) and posted as one batch. A post that fails for a
reason worth retrying (no connection, a timeout, HTTP 5xx or 429) is retried after
``retry_initial_seconds``, doubling up to ``retry_max_seconds``, at most ``max_attempts``
times; then the batch is dropped and counted. Other HTTP errors (400: a payload it will
never accept) are not retried. Firing alerts are re-posted every ``resend_seconds`` while
they last, as Alertmanager expects (it resolves an alert nobody re-posts after its
``resolve_timeout``), which also re-delivers them after a long outage.

Secrets (basic-auth password, bearer token) go into the Authorization header only; log
lines name the URL, which the config refuses to carry credentials in.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone

from monitor.core.types import Alert

log = logging.getLogger(__name__)

API_PATH = "/api/v2/alerts"
SOURCE_LABEL = "monitor"  # label source="monitor": what the shipped inhibit rule matches on


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def alerts_url(url: str) -> str:
    """``http://am:9093`` or ``http://am:9093/api/v2/alerts`` -> the v2 alerts endpoint."""
    url = url.rstrip("/")
    return url if url.endswith(API_PATH) else url + API_PATH


def payload(alert: Alert, labels: Mapping[str, str] | None = None) -> dict:
    """One alert in Alertmanager's v2 API form."""
    top = ", ".join(c["channel"] for c in alert.top_channels)
    regime = alert.kind == "regime_change"
    item: dict = {
        "labels": {
            "severity": "warning",
            **(labels or {}),
            "alertname": "MonitorRegimeChange" if regime else "MonitorAnomaly",
            "stream": alert.stream,
            "group": alert.group,
            "alert_id": alert.alert_id,
            "source": SOURCE_LABEL,
        },
        "annotations": {
            "summary": f"{'Regime change' if regime else 'Anomaly'} on {alert.stream}",
            "description": f"score {alert.peak_score:.2f}x threshold (model {alert.model_version}); "
            f"top channels: {top}" + (f"; fired in {alert.operating_state['text']}" if alert.operating_state else ""),
        },
        "startsAt": iso(alert.started_at),
    }
    if alert.kind == "sensor":  # a broken sensor, not a process anomaly: its own alertname
        item["labels"].update(alertname="MonitorSensorFault", cause=alert.cause or "", channel=alert.channel or "")
        item["annotations"] = {
            "summary": f"Sensor fault ({alert.cause}) on {alert.stream} channel {alert.channel}",
            "description": f"value {alert.value} (model {alert.model_version})",
        }
    if alert.ended_at is not None:
        item["endsAt"] = iso(alert.ended_at)
    return item


class _Retryable(Exception):
    pass


class _Target:
    """One Alertmanager URL: its queue, its thread, its pending batch and backoff."""

    def __init__(self, sink: AlertmanagerSink, url: str):
        self.sink = sink
        self.url = alerts_url(url)
        self.queue: queue.Queue[Alert] = queue.Queue(maxsize=sink.queue_size)
        self.pending: dict[str, Alert] = {}
        self.active: dict[str, Alert] = {}
        self.held: Alert | None = None  # the next state of a pending alert (see _drain)
        self.attempts = 0
        self.next_try = 0.0
        self.posted = 0  # alerts delivered (2xx)
        self.failures = 0  # failed posts
        self.dropped = 0  # alerts given up on (queue full, attempts exhausted, closed)
        self.thread = threading.Thread(target=self._run, name=f"alertmanager-{url}", daemon=True)

    def _add(self, alert: Alert) -> None:
        self.pending[alert.alert_id] = alert
        if alert.state == "firing":
            self.active[alert.alert_id] = alert
        else:
            self.active.pop(alert.alert_id, None)

    def _drain(self, first: Alert | None) -> None:
        """Queued alerts into the pending batch. A second state of an alert already pending
        and not yet tried is held back: the batch goes first, so Alertmanager sees each
        change in order. While retrying (a backlog), the latest state replaces the older."""
        item = first
        while self.held is None:
            if item is not None:
                if item.alert_id in self.pending and self.attempts == 0:
                    self.held = item
                    return
                self._add(item)
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                return

    def _run(self) -> None:
        sink = self.sink
        last_resend = time.monotonic()
        while True:
            if self.held is not None and (not self.pending or self.attempts > 0):
                held, self.held = self.held, None
                self._add(held)
            now = time.monotonic()
            wait = 0.5
            if self.pending:
                wait = min(wait, max(0.0, self.next_try - now))
            stopping = sink._stop.is_set()
            first = None
            if self.held is None:
                with contextlib.suppress(queue.Empty):
                    first = self.queue.get(timeout=min(0.05, max(0.01, wait)) if stopping else max(0.01, wait))
                self._drain(first)
            now = time.monotonic()
            if not self.pending and self.active and now - last_resend >= sink.resend_seconds:
                last_resend = now
                self.pending.update(self.active)
            if self.pending and now >= self.next_try:
                self._attempt()
            elif self.held is not None:
                time.sleep(min(0.05, max(0.0, self.next_try - now)))
            if stopping and self.held is None and self.queue.empty() and (not self.pending or now >= sink._deadline):
                if self.pending:
                    self.dropped += len(self.pending)
                    sink._error()
                return
            if stopping and now >= sink._deadline:
                lost = len(self.pending) + (self.held is not None) + self.queue.qsize()
                if lost:
                    self.dropped += lost
                    sink._error()
                return

    def _attempt(self) -> None:
        sink = self.sink
        batch = list(self.pending.values())
        try:
            self._post(batch)
        except _Retryable as exc:
            self.failures += 1
            self.attempts += 1
            sink._error()
            if self.attempts >= sink.max_attempts:
                log.error(
                    "alertmanager %s: %d alert(s) dropped after %d attempts: %s",
                    self.url,
                    len(batch),
                    self.attempts,
                    exc,
                )
                self.dropped += len(batch)
                self.pending.clear()
                self.attempts = 0
                return
            delay = min(sink.retry_max_seconds, sink.retry_initial_seconds * 2 ** (self.attempts - 1))
            self.next_try = time.monotonic() + delay
            log.warning("alertmanager %s: post failed (%s); retry %d in %.1f s", self.url, exc, self.attempts, delay)
            return
        except ValueError as exc:  # refused for good (HTTP 4xx): retrying sends the same thing
            self.failures += 1
            self.dropped += len(batch)
            sink._error()
            log.error("alertmanager %s refused %d alert(s), not retried: %s", self.url, len(batch), exc)
        else:
            self.posted += len(batch)
        self.pending.clear()
        self.attempts = 0
        self.next_try = 0.0

    def _post(self, alerts: Sequence[Alert]) -> None:
        sink = self.sink
        body = json.dumps([payload(a, sink.labels) for a in alerts], allow_nan=False, default=float).encode()
        req = urllib.request.Request(self.url, data=body, method="POST", headers=sink._headers)
        try:
            with urllib.request.urlopen(req, timeout=sink.timeout) as resp:
                resp.read()
        except urllib.error.HTTPError as exc:
            if exc.code >= 500 or exc.code == 429:
                raise _Retryable(f"HTTP {exc.code}") from None
            raise ValueError(f"HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise _Retryable(str(getattr(exc, "reason", exc))) from None


class AlertmanagerSink:
    """Posts alerts to Alertmanager's v2 API at every URL (module docstring)."""

    name = "alertmanager"

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        timeout_seconds: float = 5.0,
        queue_size: int = 1000,
        on_error: Callable[[], None] | None = None,
        resend_seconds: float = 60.0,
        labels: Mapping[str, str] | None = None,
        max_attempts: int = 5,
        retry_initial_seconds: float = 0.5,
        retry_max_seconds: float = 30.0,
        username: str | None = None,
        password: str | None = None,
        bearer_token: str | None = None,
    ):
        url_list = [urls] if isinstance(urls, str) else list(urls)
        if not url_list:
            raise ValueError("AlertmanagerSink needs at least one URL")
        self.timeout = timeout_seconds
        self.queue_size = queue_size
        self.on_error = on_error
        self.resend_seconds = resend_seconds
        self.labels = dict(labels or {})
        self.max_attempts = max(1, int(max_attempts))
        self.retry_initial_seconds = retry_initial_seconds
        self.retry_max_seconds = max(retry_max_seconds, retry_initial_seconds)
        self._headers = {"Content-Type": "application/json"}
        if username:
            token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        elif bearer_token:
            self._headers["Authorization"] = f"Bearer {bearer_token}"
        self._stop = threading.Event()
        self._deadline = 0.0
        self.targets = [_Target(self, u) for u in url_list]
        for t in self.targets:
            t.thread.start()

    @property
    def url(self) -> str:
        return self.targets[0].url

    @property
    def failures(self) -> int:
        return sum(t.failures for t in self.targets)

    @property
    def dropped(self) -> int:
        return sum(t.dropped for t in self.targets)

    def _error(self) -> None:
        if self.on_error is not None:
            with contextlib.suppress(Exception):
                self.on_error()

    def send(self, alert: Alert) -> None:
        """Enqueue for every URL; never blocks (a full queue drops, counted, for that URL)."""
        for t in self.targets:
            if self._stop.is_set():
                t.dropped += 1
                self._error()
                continue
            try:
                t.queue.put_nowait(alert)
            except queue.Full:
                t.dropped += 1
                self._error()

    def close(self, timeout: float = 5.0) -> None:
        """Post what is queued (one more try each, within `timeout`), then stop the threads."""
        if not self._stop.is_set():
            self._deadline = time.monotonic() + timeout
            self._stop.set()
        for t in self.targets:
            t.thread.join(max(0.1, self._deadline - time.monotonic()))
