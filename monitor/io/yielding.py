"""Integrator publishes that give way to alerts on the shared broker connection.

Alerts, per-window scores (`alerts.scores_topic`), denoised frames, latent codes and the
retained stream-state topics all leave through the one MQTT client, in the order they
were handed to it. When the broker reads slower than the daemon scores (a slow link, a
stalled broker, backpressure), the client's outgoing queue grows and an alert waits
behind every score message queued before it: the fault matrix measured 7.3 s.

`YieldingPublisher` wraps the publish function for everything but alerts (decision
0024). It keeps the handles of its own messages that the client has not written yet
(paho's public ``MQTTMessageInfo.is_published``) and, once `max_unsent` are waiting,
sheds further integrator messages instead of queueing them, counting each. An alert is
then never behind more than `max_unsent` integrator messages, the client's memory stays
bounded, and nothing is lost silently. Handles the client will never write (messages
dropped with a connection) age out after `stale_seconds`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

Publish = Callable[[str, bytes, int, bool], Any]


class YieldingPublisher:
    """``publish(topic, payload, qos, retain)`` that sheds once `max_unsent` of its own wait."""

    def __init__(
        self,
        publish: Publish,
        max_unsent: int = 256,
        *,
        on_shed: Callable[[], None] | None = None,
        stale_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if max_unsent < 1:
            raise ValueError("max_unsent must be at least 1")
        self._publish = publish
        self.max_unsent = int(max_unsent)
        self.on_shed = on_shed
        self.stale_seconds = float(stale_seconds)
        self._clock = clock
        self._unsent: deque[tuple[Any, float]] = deque()
        self.shed = 0

    def unsent(self) -> int:
        """Integrator messages handed to the client and not yet written (after pruning)."""
        self._prune(self._clock())
        return len(self._unsent)

    def _prune(self, now: float) -> None:
        unsent = self._unsent
        while unsent:
            info, at = unsent[0]
            if info.is_published() or now - at > self.stale_seconds:
                unsent.popleft()
            else:
                break

    def __call__(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> Any:
        now = self._clock()
        self._prune(now)
        if len(self._unsent) >= self.max_unsent:
            self.shed += 1
            if self.on_shed is not None:
                self.on_shed()
            return None
        info = self._publish(topic, payload, qos, retain)
        if getattr(info, "rc", 1) == 0 and not info.is_published():  # queued in the client
            self._unsent.append((info, now))
        return info
