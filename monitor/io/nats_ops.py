"""What a NATS worker adds around `monitor.io.nats.NATSIngest`: its metrics and its alert sink.

`NATSCollector` exports, at scrape time, the ingest's per-partition counters
(`PartitionStats`): label ``partition`` only, one child per partition this worker owns, so
the cardinality is bounded by ``nats.partitions`` (at most 1024), never by streams.

`JetStreamAlertSink` replaces the plain alert publish when ``nats.alerts_stream`` is set:
each alert goes into that stream with ``Nats-Msg-Id: <alert_id>:<state>``; the server
drops a second copy with the same id within ``nats.alerts_dedupe_seconds`` (a re-send
after a crash between the alert and its batch's ack), so the stream holds each alert once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from monitor.core.types import Alert
from monitor.io.sinks import alert_json

if TYPE_CHECKING:
    from monitor.io.nats import NATSIngest

__all__ = ["METRIC_NAMES", "JetStreamAlertSink", "NATSCollector", "alert_msg_id"]

log = logging.getLogger(__name__)

# (metric, help, PartitionStats attribute, counter?)
_PER_PARTITION = (
    (
        "monitor_nats_consumer_pending",
        "Messages of the partition not yet delivered to its consumer (the lag), as of the last delivery.",
        "pending",
        False,
    ),
    (
        "monitor_nats_consumer_ack_pending",
        "Messages delivered to this worker and not yet acked.",
        "ack_pending",
        False,
    ),
    ("monitor_nats_delivered", "Live JetStream messages received, by partition.", "delivered", True),
    (
        "monitor_nats_redelivered",
        "Live messages received with a delivery count above 1 (not acked within ack_wait before).",
        "redelivered",
        True,
    ),
    ("monitor_nats_acks", "Acks sent (one per partition and handled batch: ack policy all).", "acks", True),
    ("monitor_nats_warmup_messages", "Messages replayed from the log to warm up, by partition.", "warm_messages", True),
    ("monitor_nats_warmup_readings", "Readings replayed from the log to warm up, by partition.", "warm_readings", True),
)


_ALERT_COUNTERS = (
    ("alerts_published", "Alerts stored in nats.alerts_stream (confirmed by the server)."),
    ("alerts_duplicate", "Alert re-sends the server dropped as duplicates (same Nats-Msg-Id)."),
)
# every name exported, as scraped (counters with _total)
METRIC_NAMES = tuple(name + ("_total" if counter else "") for name, _, _, counter in _PER_PARTITION) + tuple(
    f"monitor_nats_{key}_total" for key, _ in _ALERT_COUNTERS
)


class NATSCollector:
    """Per-partition NATS figures of one `NATSIngest` (register once on the daemon's registry)."""

    def __init__(self, ingest: NATSIngest):
        self.ingest = ingest

    def collect(self) -> Iterator[Metric]:
        parts = sorted(self.ingest.partition_stats.items())
        for name, help_text, attr, counter in _PER_PARTITION:
            family: GaugeMetricFamily | CounterMetricFamily = (
                CounterMetricFamily(name, help_text, labels=["partition"])
                if counter
                else GaugeMetricFamily(name, help_text, labels=["partition"])
            )
            for p, st in parts:
                value = getattr(st, attr)
                if value >= 0:  # gauges not read from the server yet are left out
                    family.add_metric([str(p)], value)
            yield family
        stats = self.ingest.stats
        for key, help_text in _ALERT_COUNTERS:
            c = CounterMetricFamily(f"monitor_nats_{key}", help_text)
            c.add_metric([], stats[key])
            yield c

    def describe(self) -> list[Metric]:
        return []  # values are the ingest's, read at scrape time


def alert_msg_id(alert: Alert) -> str:
    """The de-duplication id of an alert message: the same episode and state, the same id."""
    return f"{alert.alert_id}:{alert.state}"


class JetStreamAlertSink:
    """Alerts into ``nats.alerts_stream`` with a Nats-Msg-Id (core subscribers see them too)."""

    name = "mqtt"  # the broker alert sink's metrics label (sink_error), whichever broker

    def __init__(
        self,
        publish_alert: Callable[[str, bytes, str], None],
        topic: str,
        on_error: Callable[[], None] | None = None,
    ):
        self.publish_alert = publish_alert
        self.topic = topic
        self.on_error = on_error

    def send(self, alert: Alert) -> None:
        topic = self.topic.format(stream=alert.stream)
        try:
            self.publish_alert(topic, alert_json(alert), alert_msg_id(alert))
        except Exception as exc:  # never break the scoring thread
            if self.on_error:
                self.on_error()
            log.error("alert publish to %s failed: %s: %s", topic, type(exc).__name__, exc)

    def close(self) -> None:
        pass
