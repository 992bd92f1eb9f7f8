"""Availability for integrators: a retained birth / last-will topic and per-stream state.

* ``availability.topic`` (default ``monitor/status``), retained: ``{"state": "online",
  "version": ..., "groups": [...], "since": ...}`` published on every (re)connect, and the
  same with ``"state": "offline"`` as the MQTT last will (set before connecting, so the
  broker publishes it when the connection dies without a DISCONNECT: a crash, SIGKILL, a
  cable) and published by a graceful shutdown before it disconnects. One JSON topic rather
  than plain ``online``/``offline``: Home Assistant reads it with an availability
  ``value_template`` (``{{ value_json.state }}``), Node-RED with a JSON node, and the
  version and groups travel with it.
* ``availability.state_topic`` (default ``monitor/{stream}/state``), retained per stream:
  ``{"state": "ok"|"firing"|"sensor_fault", "score": ..., "anomaly": bool, "faults":
  {channel: cause}, ...}``. Published at once when the state or the set of faulty channels
  changes, else at most (and, while the daemon runs, at least) every
  ``availability.state_interval_seconds`` per stream: never per reading.

Everything here runs on the scoring thread (`StreamStates`) or in paho's callbacks
(`Presence.online`); publishing only queues in paho, it never blocks.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from monitor.core.integration_config import AvailabilityConfig

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes, int, bool], object]

OK = "ok"
FIRING = "firing"
SENSOR_FAULT = "sensor_fault"
STATES = (OK, FIRING, SENSOR_FAULT)
ONLINE = "online"
OFFLINE = "offline"


class Presence:
    """The birth and last-will messages of one daemon (see the module docstring)."""

    def __init__(
        self, cfg: AvailabilityConfig, version: str, groups: list[str], clock: Callable[[], float] = time.time
    ):
        self.cfg = cfg
        self.version = version
        self.groups = list(groups)
        self.clock = clock
        self.births = 0

    def payload(self, state: str) -> bytes:
        body = {"state": state, "version": self.version, "groups": self.groups}
        return json.dumps(body, separators=(",", ":")).encode()

    def will(self) -> tuple[str, bytes, int, bool]:
        """(topic, payload, qos, retain) of the last will, for paho's ``will_set``."""
        return self.cfg.topic, self.payload(OFFLINE), self.cfg.qos, True

    def online(self, publish: Publish) -> object:
        """Publish the birth message (retained): on every connect, so it replaces the will."""
        self.births += 1
        return publish(self.cfg.topic, self.payload(ONLINE), self.cfg.qos, True)

    def offline(self, publish: Publish) -> object:
        """Publish the offline message (retained): a graceful stop, before disconnecting."""
        return publish(self.cfg.topic, self.payload(OFFLINE), self.cfg.qos, True)


@dataclass
class _State:
    group: str
    state: str = OK
    faults: dict[str, str] = field(default_factory=dict)
    score: float | None = None
    ts: float | None = None
    sent_at: float = -math.inf  # monotonic
    dirty: bool = False  # a newer score than the one sent


class StreamStates:
    """Per-stream retained state messages, on change and at a bounded rate.

    `update` is called per scored batch (cheap: a dict lookup and a comparison) and per
    alert; `tick` (once a second) sends what is due. `on_new(group, stream)` runs the
    first time a stream is seen (Home Assistant discovery). `clock` is monotonic.
    """

    def __init__(
        self,
        cfg: AvailabilityConfig,
        publish: Publish,
        *,
        on_new: Callable[[str, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.cfg = cfg
        self.publish = publish
        self.on_new = on_new
        self.clock = clock
        self.interval = cfg.state_interval_seconds
        self.streams: dict[str, _State] = {}
        self.published = 0
        self.failures = 0

    def topic(self, stream: str) -> str:
        return self.cfg.state_topic.format(stream=stream)

    def update(
        self,
        group: str,
        stream: str,
        *,
        firing: bool,
        faults: Mapping[str, str],
        score: float | None = None,
        ts: float | None = None,
    ) -> None:
        st = self.streams.get(stream)
        new = st is None
        if st is None:
            st = self.streams[stream] = _State(group)
        if score is not None:
            st.score = score if math.isfinite(score) else None
            st.ts = ts
            st.dirty = True
        state = FIRING if firing else SENSOR_FAULT if faults else OK
        changed = new or state != st.state or faults != st.faults
        if changed:
            st.state, st.faults, st.group = state, dict(faults), group
        if new and self.on_new is not None:
            try:
                self.on_new(group, stream)
            except Exception:
                log.exception("announcing stream %s failed", stream)
        if changed or self.clock() - st.sent_at >= self.interval:
            self._send(stream, st)

    def tick(self) -> None:
        """Send each stream's state that is due (a newer score, or the heartbeat)."""
        now = self.clock()
        for stream, st in self.streams.items():
            if now - st.sent_at >= self.interval:
                self._send(stream, st)

    def payload(self, stream: str, st: _State) -> bytes:
        body = {
            "state": st.state,
            "score": st.score,
            "anomaly": st.state == FIRING,
            "faults": st.faults,
            "stream": stream,
            "group": st.group,
            "ts": st.ts,
            "updated_at": round(time.time(), 3),
        }
        return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()

    def _send(self, stream: str, st: _State) -> None:
        st.sent_at = self.clock()
        st.dirty = False
        try:
            self.publish(self.topic(stream), self.payload(stream, st), self.cfg.qos, True)
            self.published += 1
        except Exception as exc:  # a bad topic, a closed client: count, never break scoring
            self.failures += 1
            log.warning("state publish for %s failed: %s", stream, exc)

    def forget(self, stream: str) -> None:
        """A retired stream: clear its retained state (an empty retained payload)."""
        self.streams.pop(stream, None)
        try:
            self.publish(self.topic(stream), b"", self.cfg.qos, True)
        except Exception as exc:
            self.failures += 1
            log.warning("clearing the state of %s failed: %s", stream, exc)
