"""The latent topic: each stream's newest window code, at a bounded rate (decision 0020).

For integrators who train their own downstream models on the encoder's features. At most
one message per stream per `every_seconds` (monotonic clock, injected), the newest window
of the batch that is due; the payload names the model version, since codes of another
model are another coordinate system.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from monitor.core.types import ScoreBatch


class LatentPublisher:
    """Publishes ``{"stream", "ts", "model_version", "code": [...], "state", "novelty"}``."""

    def __init__(
        self,
        publish: Callable[[str, bytes, int, bool], object],
        topic: str,
        every_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.publish = publish
        self.topic = topic
        self.every_seconds = float(every_seconds)
        self.clock = clock
        self._last: dict[str, float] = {}  # stream -> monotonic time of its last message
        self.sent = 0

    def send(self, scores: ScoreBatch, model_version: str, state_names: list[str] | None = None) -> int:
        """Publish the newest code of each stream in `scores` that is due; returns how many."""
        codes = scores.codes
        if codes is None or not len(scores):
            return 0
        now = self.clock()
        newest: dict[str, int] = {stream: stop - 1 for stream, _, stop in scores.runs}
        due = [s for s in newest if (last := self._last.get(s)) is None or now - last >= self.every_seconds]
        if not due:
            return 0
        states = scores.newest_states()
        n = 0
        for stream in due:
            row = newest[stream]
            self._last[stream] = now
            body: dict[str, object] = {
                "stream": stream,
                "ts": float(scores.times[row]),
                "model_version": model_version,
                "code": [float(v) for v in codes[row]],
            }
            if stream in states:
                i, novelty = states[stream]
                body["state"] = i + 1
                if state_names is not None:
                    body["state_name"] = state_names[i]
                body["novelty"] = novelty
            self.publish(self.topic.format(stream=stream), json.dumps(body).encode(), 0, False)
            n += 1
        self.sent += n
        return n

    def forget(self, stream: str) -> None:
        """Drop an evicted stream's rate state."""
        self._last.pop(stream, None)
