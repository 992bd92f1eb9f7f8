"""The `Source` interface: where readings come from.

A source decodes what it receives into `Ingested` items (readings plus rejects, see
`monitor.io.mqtt`) and hands them to a bounded queue (`IngestQueue`) that the scoring
thread drains. The contract (tests/test_contracts.py runs it against every implementation):

* ``start()`` begins delivery in the background and returns; every item it receives
  arrives in the queue, in the order received, and is counted in ``stats["messages"]``
  and ``stats["readings"]``;
* a full queue never blocks the source: the item is dropped and counted
  (``stats["dropped_messages"]``, ``stats["dropped_readings"]``), never lost silently;
* ``stop()`` returns within its timeout, nothing is delivered after it returns, it may be
  called twice or before ``start()``, and ``start()`` after ``stop()`` delivers again.

Implementations: `monitor.io.mqtt.MQTTIngest` (with its fast reader or plain paho). The
NATS JetStream source of the scale-out plan goes behind the same interface.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["Source"]


@runtime_checkable
class Source(Protocol):
    """Delivers `Ingested` items into a bounded queue between `start` and `stop`."""

    name: str
    stats: dict[str, int]  # at least: messages, readings, dropped_messages, dropped_readings

    def start(self) -> None:
        """Begin delivering in the background; returns at once."""
        ...

    def stop(self, timeout: float = 5.0) -> None:
        """Stop delivering within `timeout` seconds; idempotent."""
        ...
