"""The `Source` interface: where readings come from.

A source decodes what it receives into `Ingested` items (readings plus rejects, see
`monitor.io.mqtt`) and hands them to a bounded queue (`IngestQueue`) that the scoring
thread drains. The contract (tests/test_contracts.py runs it against every implementation):

* ``start()`` begins delivery in the background and returns; every item it receives
  arrives in the queue, in the order received, and is counted in ``stats["messages"]``
  and ``stats["readings"]``;
* a full queue never blocks the source's client and never loses an item silently: the
  item is dropped and counted (``stats["dropped_messages"]``, ``stats["dropped_readings"]``:
  MQTT, whose broker does not keep it), or held in the broker's log and delivered once
  the queue has room (NATS JetStream: nothing to drop, both counts stay 0);
* ``stop()`` returns within its timeout, nothing is delivered after it returns, it may be
  called twice or before ``start()``, and ``start()`` after ``stop()`` delivers again.

The service also needs: ``connected`` and ``last_error`` (health), ``stop_intake()``
(hand nothing more on, before draining), ``publish()`` (alerts and scores on the broker)
and ``ack_many()`` (ack what the scoring thread handled: at-least-once).

Implementations: `monitor.io.mqtt.MQTTIngest` (with its fast reader or plain paho) and
`monitor.io.nats.NATSIngest` (JetStream partitions, docs/scaling.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

__all__ = ["Source"]


@runtime_checkable
class Source(Protocol):
    """Delivers `Ingested` items into a bounded queue between `start` and `stop`."""

    name: str
    stats: dict[str, int]  # at least: messages, readings, dropped_messages, dropped_readings
    last_error: str | None  # why it is not connected, for /readyz; None when fine

    @property
    def connected(self) -> bool: ...

    @property
    def subscribed(self) -> bool:
        """Receiving: subscriptions (MQTT) or consumers (NATS) in place."""
        ...

    def start(self) -> None:
        """Begin delivering in the background; returns at once."""
        ...

    def stop(self, timeout: float = 5.0) -> None:
        """Stop delivering within `timeout` seconds; idempotent."""
        ...

    def stop_intake(self) -> None:
        """Hand nothing more on; what was received and not handled is not acked."""
        ...

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> object: ...

    def ack_many(self, msgs: Iterable[Any]) -> None:
        """Ack the messages of handled items (their `Ingested.message`)."""
        ...
