"""Alert sinks: where state changes go (MQTT, the log, Alertmanager, a file).

The `Sink` contract (tests/test_contracts.py runs it against every sink here):

* ``send(alert)`` accepts a firing or resolved alert and returns without blocking the
  scoring thread for long; it never raises: a failing downstream (broker, HTTP endpoint,
  disk) is counted (``failures``, and ``on_error`` when given) and logged, and the sink
  delivers again once the downstream recovers;
* ``close()`` releases what the sink holds, may be called twice, and a ``send`` after it
  does not raise (the alert is counted as dropped where the sink counts).

The Alertmanager sink posts from its own thread through a bounded queue.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol, runtime_checkable

from monitor.core.types import Alert

log = logging.getLogger(__name__)
_MQTT_ERR_NO_CONN = 4  # paho.mqtt.enums.MQTTErrorCode.MQTT_ERR_NO_CONN (not imported: sinks stay paho-free)


@runtime_checkable
class Sink(Protocol):
    """Where alert state changes go (contract in the module docstring)."""

    name: str

    def send(self, alert: Alert) -> None: ...

    def close(self) -> None: ...


def alert_json(alert: Alert) -> bytes:
    return json.dumps(alert.to_dict(), separators=(",", ":"), allow_nan=False, default=float).encode()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


class MQTTSink:
    """Publishes one JSON message per state change on `topic` (``{stream}`` filled in)."""

    name = "mqtt"

    def __init__(
        self,
        publish: Callable[[str, bytes, int, bool], object],
        topic: str,
        qos: int = 1,
        retain: bool = False,
        on_error: Callable[[], None] | None = None,
    ):
        self.publish = publish
        self.topic = topic
        self.qos = qos
        self.retain = retain
        self.on_error = on_error
        self.failures = 0

    def send(self, alert: Alert) -> None:
        topic = self.topic.format(stream=alert.stream)
        try:
            info = self.publish(topic, alert_json(alert), self.qos, self.retain)
        except Exception as exc:  # a closed client, a bad topic: count, never break the scoring thread
            self._failed(topic, f"{type(exc).__name__}: {exc}")
            return
        rc = getattr(info, "rc", 0)  # paho's MQTTMessageInfo: 0 queued or sent
        if rc not in (0, None) and not (rc == _MQTT_ERR_NO_CONN and self.qos > 0):  # QoS >= 1 waits for reconnect
            self._failed(topic, f"publish rc {rc}")

    def _failed(self, topic: str, why: str) -> None:
        self.failures += 1
        if self.on_error:
            self.on_error()
        log.error("alert publish to %s failed: %s", topic, why)

    def close(self) -> None:
        pass


class LogSink:
    """One structured log line per state change."""

    name = "log"

    def __init__(self, logger: logging.Logger | None = None):
        self.logger = logger or logging.getLogger("monitor.alerts")

    def send(self, alert: Alert) -> None:
        level = logging.WARNING if alert.state == "firing" else logging.INFO
        self.logger.log(level, "alert %s %s", alert.state, alert.stream, extra={"alert": alert.to_dict()})

    def close(self) -> None:
        pass


class AlertmanagerSink:
    """Posts alerts to Alertmanager's v2 API (``POST {url}/api/v2/alerts``) from a thread.

    Firing alerts are re-posted every `resend_seconds` while they last, as Alertmanager
    expects; a resolved alert is posted with ``endsAt``.
    """

    name = "alertmanager"

    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float = 5.0,
        queue_size: int = 1000,
        on_error: Callable[[], None] | None = None,
        resend_seconds: float = 60.0,
    ):
        self.url = url.rstrip("/") + "/api/v2/alerts"
        self.timeout = timeout_seconds
        self.on_error = on_error
        self.resend_seconds = resend_seconds
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.active: dict[str, Alert] = {}
        self.dropped = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alertmanager-sink", daemon=True)
        self._thread.start()

    @staticmethod
    def payload(alert: Alert) -> dict:
        top = ", ".join(c["channel"] for c in alert.top_channels)
        item = {
            "labels": {
                "alertname": "MonitorRegimeChange" if alert.kind == "regime_change" else "MonitorAnomaly",
                "stream": alert.stream,
                "group": alert.group,
                "severity": "warning",
                "alert_id": alert.alert_id,
            },
            "annotations": {
                "summary": f"{'Regime change' if alert.kind == 'regime_change' else 'Anomaly'} on {alert.stream}",
                "description": f"score {alert.peak_score:.2f}x threshold (model {alert.model_version}); "
                f"top channels: {top}"
                + (f"; fired in {alert.operating_state['text']}" if alert.operating_state else ""),
            },
            "startsAt": iso(alert.started_at),
        }
        if alert.kind == "sensor":  # a broken sensor, not a process anomaly: its own alertname
            labels = item["labels"]
            assert isinstance(labels, dict)
            labels.update(alertname="MonitorSensorFault", cause=alert.cause or "", channel=alert.channel or "")
            item["annotations"] = {
                "summary": f"Sensor fault ({alert.cause}) on {alert.stream} channel {alert.channel}",
                "description": f"value {alert.value} (model {alert.model_version})",
            }
        if alert.ended_at is not None:
            item["endsAt"] = iso(alert.ended_at)
        return item

    def send(self, alert: Alert) -> None:
        if self._stop.is_set():  # closed: nothing would post it
            self.dropped += 1
            if self.on_error:
                self.on_error()
            return
        try:
            self.queue.put_nowait(alert)
        except queue.Full:
            self.dropped += 1
            if self.on_error:
                self.on_error()

    def _post(self, alerts: list[Alert]) -> None:
        body = json.dumps([self.payload(a) for a in alerts]).encode()
        req = urllib.request.Request(self.url, data=body, method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                resp.read()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            self.failures += 1
            if self.on_error:
                self.on_error()
            log.warning("alertmanager post to %s failed: %s", self.url, exc)

    def _run(self) -> None:
        last_resend = time.monotonic()
        while not self._stop.is_set() or not self.queue.empty():
            try:
                alert = self.queue.get(timeout=0.5)
            except queue.Empty:
                alert = None
            if alert is not None:
                if alert.state == "firing":
                    self.active[alert.alert_id] = alert
                else:
                    self.active.pop(alert.alert_id, None)
                self._post([alert])
            if self.active and time.monotonic() - last_resend >= self.resend_seconds:
                last_resend = time.monotonic()
                self._post(list(self.active.values()))

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with contextlib.suppress(queue.Full):
            self.queue.put_nowait(None)  # wakes the thread now instead of at its next poll
        self._thread.join(timeout)


class JSONLinesSink:
    """Appends each alert as a JSON line to a file (beside the recordings, so a retrain can
    leave the alerting periods out). Write errors are counted and logged, never raised.

    The file is created (empty) at once: an empty alert log says "recorded, and nothing
    alerted", which `monitor retrain` accepts, while a missing one makes its gate refuse.
    """

    name = "file"

    def __init__(self, path: str | Path, on_error: Callable[[], None] | None = None):
        self.path = Path(path)
        self.on_error = on_error
        self.failures = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch(exist_ok=True)
        except OSError as exc:
            self._failed(exc)

    def send(self, alert: Alert) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as fh:
                fh.write(alert_json(alert) + b"\n")
        except OSError as exc:
            self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        self.failures += 1
        if self.on_error:
            self.on_error()
        log.error("cannot append alerts to %s: %s", self.path, exc)

    def close(self) -> None:
        pass


class MemorySink:
    """Keeps alerts in a list: the in-memory sink for replays and tests."""

    name = "memory"

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def send(self, alert: Alert) -> None:
        self.alerts.append(alert)

    def close(self) -> None:
        pass


_SINKS: tuple[type[Sink], ...] = (MQTTSink, LogSink, AlertmanagerSink, JSONLinesSink, MemorySink)  # mypy: all conform
