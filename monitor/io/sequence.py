"""Sequence numbers in payloads: gaps counted, so broker-side loss becomes visible.

A broker that drops messages (Mosquitto's ``max_queued_messages`` per client, 1 000 by
default, "Outgoing messages are being dropped") tells the client nothing. A sender that
numbers its messages lets us see it: with ``topics[].sequence_field`` set, the codec
hands each message's number to a `SequenceTracker`, per stream:

- the next number: fine;
- a jump ahead by k: k - 1 messages missing (``monitor_sequence_missing_total``);
- the same or a slightly older number (within `REORDER_WINDOW`): a redelivery or a late
  message (QoS 1 after a reconnect), ignored;
- much older: the sender restarted its counter (``monitor_sequence_restarts_total``);
  tracking starts again from it.

Counts are plain ints mutated on the decoding thread and read at scrape time
(`SequenceCollector`), so the hot path takes no lock.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily

__all__ = ["REORDER_WINDOW", "SequenceCollector", "SequenceTracker"]

REORDER_WINDOW = 1000  # an older number within this many of the newest is late, not a restart


class SequenceTracker:
    """The newest sequence number per stream, and the gaps and restarts seen."""

    __slots__ = ("_last", "_max_streams", "missing", "restarts")

    def __init__(self, max_streams: int = 100_000):
        self._last: dict[str, int] = {}
        self._max_streams = max(1, int(max_streams))
        self.missing = 0  # messages never seen between two numbers
        self.restarts = 0  # numbers that went far back

    def see(self, stream: str, seq: int) -> None:
        last = self._last.get(stream)
        if last is None:
            if len(self._last) >= self._max_streams:
                self._last.clear()  # bounded: a flood of streams cannot grow memory
            self._last[stream] = seq
        elif seq > last:
            self.missing += seq - last - 1
            self._last[stream] = seq
        elif last - seq > REORDER_WINDOW:
            self.restarts += 1
            self._last[stream] = seq

    def forget(self, stream: str) -> None:
        self._last.pop(stream, None)


class SequenceCollector:
    """Exports a tracker's counts: ``monitor_sequence_missing_total`` and ``..._restarts_total``."""

    def __init__(self, tracker: SequenceTracker):
        self._tracker = tracker

    def describe(self) -> list[CounterMetricFamily]:
        return list(self._families(0, 0))

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield from self._families(self._tracker.missing, self._tracker.restarts)

    @staticmethod
    def _families(missing: int, restarts: int) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "monitor_sequence_missing",
            "Messages missing between sequence numbers (topics[].sequence_field): lost upstream or at the broker.",
            value=missing,
        )
        yield CounterMetricFamily(
            "monitor_sequence_restarts",
            "Sequence numbers that went back by more than 1000: the sender restarted its counter.",
            value=restarts,
        )
