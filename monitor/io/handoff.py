"""A bounded single-producer / single-consumer hand-off, lighter than `queue.Queue`.

paho's network thread is the only producer and the scoring thread the only consumer.
`put_nowait` is a length check plus ``deque.append`` (atomic under the GIL) and sets an
Event only while the consumer is asleep; `take` drains up to N items in one call. A
full hand-off raises `queue.Full` like `queue.Queue.put_nowait`, so `MQTTIngest` counts
the drop the same way (``drops_total{reason="queue_full"}``): nothing is dropped silently.

`MQTTIngest` also accepts a plain `queue.Queue` (put_nowait / maxsize).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from typing import Any

__all__ = ["HandOff"]


class HandOff:
    def __init__(self, maxsize: int):
        if maxsize <= 0:
            raise ValueError(f"maxsize must be > 0, got {maxsize}")
        self.maxsize = int(maxsize)
        self._items: deque = deque()
        self._ready = threading.Event()
        self._sleeping = False

    def put_nowait(self, item: Any) -> None:
        """Append or raise `queue.Full`; never blocks (one producer thread)."""
        items = self._items
        if len(items) >= self.maxsize:
            raise queue.Full
        items.append(item)
        if self._sleeping:
            self._ready.set()

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def get_nowait(self) -> Any:
        try:
            return self._items.popleft()
        except IndexError:
            raise queue.Empty from None

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
        return self._items.popleft()

    def take(self, max_items: int) -> list:
        """Up to `max_items` items, oldest first, without waiting."""
        items = self._items
        n = min(len(items), max_items)
        pop = items.popleft
        return [pop() for _ in range(n)]
