"""The daemon's integrator-facing outputs over MQTT: availability, stream state, HA discovery.

`Integrations` is wired by `monitor.app.service.Service` (MQTT source only; the NATS
source has no MQTT connection to hang a last will on). Hooks:

* `will` before connecting, `on_connection` from paho's thread (birth on every connect);
* `on_scores` / `on_alert` on the scoring thread, `tick` once a second there too;
* `stop` on shutdown, before the client disconnects: the retained ``offline``.

Decision record: docs/decisions/0019-availability-and-home-assistant.md.
"""

from __future__ import annotations

import logging
from pathlib import Path

from monitor import __version__
from monitor.core.config import Config
from monitor.core.fleet import Fleet, GroupResult
from monitor.core.types import Alert
from monitor.io.availability import Presence, Publish, StreamStates
from monitor.io.homeassistant import STATE_FILE, Discovery

log = logging.getLogger(__name__)


class Integrations:
    def __init__(self, cfg: Config, fleet: Fleet, publish: Publish):
        self.cfg = cfg
        self.fleet = fleet
        self.publish = publish
        self.presence = Presence(cfg.availability, __version__, list(fleet.names))
        self.discovery: Discovery | None = None
        if cfg.homeassistant.enabled:
            ha = cfg.homeassistant
            path = Path(ha.state_file) if ha.state_file else Path(cfg.models.dir) / STATE_FILE
            self.discovery = Discovery(ha, cfg.availability, publish, path, on_retire=self._retired)
        self.states = StreamStates(cfg.availability, publish)
        self._faults_of: dict[str, dict[str, str]] = {}  # stream -> {channel: cause} of its open faults
        self._models: dict[str, object] = {}  # group -> the model its entities were announced for
        self._channels: dict[str, list[str]] = {}  # group -> that model's channels

    def set_publish(self, publish: Publish) -> None:
        """The connected client's publish (the client is made after this object: it needs the will)."""
        self.publish = self.states.publish = publish
        if self.discovery is not None:
            self.discovery.publish = publish

    # ------------------------------------------------------------------ presence

    def will(self) -> tuple[str, bytes, int, bool]:
        return self.presence.will()

    def on_connection(self, connected: bool, _detail: str) -> None:
        """paho's thread, on every connect: the retained birth replaces the will."""
        if connected:
            self.presence.online(self.publish)

    def stop(self, timeout: float = 1.0) -> None:
        """Graceful stop: the retained offline, sent before the client disconnects."""
        if self.discovery is not None:
            self.discovery.save()
        try:
            info = self.presence.offline(self.publish)
            wait = getattr(info, "wait_for_publish", None)
            if callable(wait):
                wait(timeout)
        except Exception as exc:  # not connected, timed out: the will is not sent on DISCONNECT
            log.warning("availability: could not publish offline: %s", exc)

    # ------------------------------------------------------------------ scoring thread

    def _faults(self, group: str, stream: str) -> dict[str, str]:
        """The stream's open sensor faults: from its sensor alerts, seeded once per stream from
        the pipeline (episodes restored at a restart send no new firing). O(1) per call."""
        faults = self._faults_of.get(stream)
        if faults is None:
            pipe = self.fleet.pipeline(group)
            sensors = getattr(pipe, "sensors", None) if pipe is not None else None
            faults = {ch: "fault" for ch in sensors.faulty(stream)} if sensors is not None else {}
            self._faults_of[stream] = faults
        return faults

    def on_scores(self, result: GroupResult) -> None:
        """Per scored batch: each stream's newest score (its last run's last row)."""
        group, fleet, states = result.group, self.fleet, self.states
        scores = result.scores
        score, times = scores.score, scores.times
        discovery = self.discovery
        channels: list[str] = []
        if discovery is not None:
            model = fleet.model(group)
            if model is not self._models.get(group):  # a (new) model: its channels may differ
                self._models[group] = model
                self._channels[group] = list(model.channels) if model is not None else []
                discovery.refresh(group)
            channels = self._channels[group]
        for stream, _start, stop in scores.runs:
            states.update(
                group,
                stream,
                firing=fleet.firing(group, stream),
                faults=self._faults(group, stream),
                score=float(score[stop - 1]),
                ts=float(times[stop - 1]),
            )
            if discovery is not None:
                discovery.touch(group, stream, channels)

    def on_alert(self, alert: Alert) -> None:
        if alert.kind not in ("anomaly", "sensor"):
            return
        faults = self._faults(alert.group, alert.stream)
        if alert.kind == "sensor" and alert.channel is not None:
            if alert.state == "firing":
                faults[alert.channel] = alert.cause or "fault"
            else:
                faults.pop(alert.channel, None)
        firing = alert.state == "firing" if alert.kind == "anomaly" else self.fleet.firing(alert.group, alert.stream)
        self.states.update(alert.group, alert.stream, firing=firing, faults=faults)
        if self.discovery is not None and alert.group in self._channels:
            self.discovery.touch(alert.group, alert.stream, self._channels[alert.group])

    def tick(self) -> None:
        self.states.tick()
        if self.discovery is not None:
            self.discovery.tick()

    # ------------------------------------------------------------------ discovery

    def _retired(self, stream: str) -> None:
        self.states.forget(stream)
        self._faults_of.pop(stream, None)
