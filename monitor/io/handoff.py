"""The bounded single-producer / single-consumer hand-off of `Ingested` items.

paho's network thread is the only producer and the scoring thread the only consumer.
`put_nowait` is three length checks plus ``deque.append`` (atomic under the GIL) and sets
an Event only while the consumer is asleep; `take` drains up to N items in one call.

Bounds. Items are counted three ways: messages (``maxsize``), readings (``len(item[1])``)
and payload bytes (``len(item[3][2])``). One batched message can carry hundreds of
readings, so a bound by messages alone does not bound memory (100 000 messages of 100
readings each are gigabytes); the readings and bytes bounds do. An item that would cross
any bound raises `queue.Full` like `queue.Queue.put_nowait`, and `MQTTIngest` counts the
drop (``drops_total{reason="queue_full"}``, by readings) or, in backpressure mode, holds
the message unacked with `put_over`. An item is always accepted into an empty hand-off,
however large, so that one oversized message cannot stall the intake for good.

Thread safety without a lock: the producer only ever writes ``_in_*`` and the consumer
only ``_out_*`` (one writer each), so ``_in - _out`` is a safe over-estimate of what is
queued from the producer's side and the bounds can only err towards refusing.

`MQTTIngest` also accepts a plain `queue.Queue` (put_nowait / maxsize; messages only).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from typing import Any

__all__ = ["DEFAULT_QUEUE_BYTES", "DEFAULT_QUEUE_READINGS", "HandOff"]

DEFAULT_QUEUE_READINGS = 200_000  # about 40 MB of decoded readings (bench/overload.py)
DEFAULT_QUEUE_BYTES = 64 * 1024 * 1024  # payload bytes


class HandOff:
    def __init__(
        self,
        maxsize: int,
        max_readings: int = DEFAULT_QUEUE_READINGS,
        max_bytes: int = DEFAULT_QUEUE_BYTES,
    ):
        for name, value in (("maxsize", maxsize), ("max_readings", max_readings), ("max_bytes", max_bytes)):
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        self.maxsize = int(maxsize)
        self.max_readings = int(max_readings)
        self.max_bytes = int(max_bytes)
        self._items: deque = deque()
        self._ready = threading.Event()
        self._sleeping = False
        self._taken_event = threading.Event()  # set by the consumer after it took items
        self._in_readings = 0  # written by the producer only
        self._in_bytes = 0
        self._out_readings = 0  # written by the consumer only
        self._out_bytes = 0

    # ---------------------------------------------------------------- producer

    def put_nowait(self, item: Any) -> None:
        """Append or raise `queue.Full`; never blocks (one producer thread)."""
        items = self._items
        n = len(item[1])
        b = len(item[3][2])
        if items and (
            len(items) >= self.maxsize
            or self._in_readings + n - self._out_readings > self.max_readings
            or self._in_bytes + b - self._out_bytes > self.max_bytes
        ):
            raise queue.Full
        self._in_readings += n
        self._in_bytes += b
        items.append(item)
        if self._sleeping:
            self._ready.set()

    def put_over(self, item: Any) -> None:
        """Append past the bounds (backpressure mode: the broker's Receive Maximum bounds
        how many such unacked messages there can be)."""
        self._in_readings += len(item[1])
        self._in_bytes += len(item[3][2])
        self._items.append(item)
        if self._sleeping:
            self._ready.set()

    def over_bounds(self) -> bool:
        """At or past any bound (backpressure: time to stop reading from the broker)."""
        return (
            len(self._items) >= self.maxsize
            or self._in_readings - self._out_readings >= self.max_readings
            or self._in_bytes - self._out_bytes >= self.max_bytes
        )

    def wait_taken(self, timeout: float) -> None:
        """Producer: sleep until the consumer takes something or `timeout` passes."""
        self._taken_event.clear()
        if self.over_bounds():
            self._taken_event.wait(timeout)

    def full_reason(self) -> str:
        """Which bound is closest to full (for the drop log line)."""
        fills = [
            (len(self._items) / self.maxsize, f"{len(self._items)} of {self.maxsize} messages, mqtt.queue_size"),
            (
                self.readings() / self.max_readings,
                f"{self.readings()} of {self.max_readings} readings, mqtt.queue_readings",
            ),
            (self.bytes() / self.max_bytes, f"{self.bytes()} of {self.max_bytes} payload bytes, mqtt.queue_bytes"),
        ]
        return max(fills)[1]

    # ---------------------------------------------------------------- either side

    def qsize(self) -> int:
        return len(self._items)

    def readings(self) -> int:
        """Readings queued (an over-estimate while the consumer is mid-take)."""
        return self._in_readings - self._out_readings

    def bytes(self) -> int:
        """Payload bytes queued (as `readings`)."""
        return self._in_bytes - self._out_bytes

    def empty(self) -> bool:
        return not self._items

    # ---------------------------------------------------------------- consumer

    def _taken(self, item: Any) -> Any:
        self._out_readings += len(item[1])
        self._out_bytes += len(item[3][2])
        self._taken_event.set()
        return item

    def get_nowait(self) -> Any:
        try:
            item = self._items.popleft()
        except IndexError:
            raise queue.Empty from None
        return self._taken(item)

    def wait(self, timeout: float) -> bool:
        """Sleep until an item is there or `timeout` passes; True when one is there."""
        if self._items:
            return True
        self._ready.clear()
        self._sleeping = True
        try:
            if self._items:  # appended between the check and `_sleeping`: no set() seen
                return True
            self._ready.wait(timeout)
        finally:
            self._sleeping = False
        return bool(self._items)

    def get(self, timeout: float | None = None) -> Any:
        """Like `queue.Queue.get` with a timeout (raises `queue.Empty`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._items:
            left = 3600.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise queue.Empty
            self.wait(left)
        return self._taken(self._items.popleft())

    def take(self, max_items: int) -> list:
        """Up to `max_items` items, oldest first, without waiting."""
        items = self._items
        n = min(len(items), max_items)
        pop = items.popleft
        out = [pop() for _ in range(n)]
        readings = 0
        nbytes = 0
        for item in out:
            readings += len(item[1])
            nbytes += len(item[3][2])
        self._out_readings += readings
        self._out_bytes += nbytes
        if out:
            self._taken_event.set()
        return out
