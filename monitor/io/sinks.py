"""Alert sinks: where state changes go (MQTT, the log, Alertmanager, a file).

The `Sink` contract (tests/test_contracts.py runs it against every sink here):

* ``send(alert)`` accepts a firing or resolved alert and returns without blocking the
  scoring thread for long; it never raises: a failing downstream (broker, HTTP endpoint,
  disk) is counted (``failures``, and ``on_error`` when given) and logged, and the sink
  delivers again once the downstream recovers (a sink that retries may deliver what
  failed then, once and in order);
* ``close()`` releases what the sink holds, may be called twice, and a ``send`` after it
  does not raise (the alert is counted as dropped where the sink counts).

The Alertmanager sink (`monitor.io.alertmanager`, re-exported here) posts from one thread
per URL through bounded queues, with retries and backoff.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol, runtime_checkable

from monitor.core.types import Alert
from monitor.io.alertmanager import AlertmanagerSink

__all__ = ["AlertmanagerSink", "JSONLinesSink", "LogSink", "MQTTSink", "MemorySink", "Sink", "alert_json", "iso"]

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
