"""Home Assistant MQTT discovery: each stream as a device with anomaly, score and sensor entities.

Follows HA's documented single-component discovery schema
(https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery): one retained JSON
config per entity on ``<discovery_prefix>/<component>/<node_id>/<object_id>/config``
(ids of ``[a-zA-Z0-9_-]``), each with ``unique_id``, ``device`` (``identifiers``...),
``origin``, ``availability`` (the daemon's status topic, read with a
``value_template``), ``state_topic`` (the stream's retained state,
`monitor.io.availability`) and ``expire_after`` when configured. An empty retained
payload on a config topic removes the entity. The entity id is suggested with
``default_entity_id`` (HA 2025.10 deprecated ``object_id`` for it; older versions drop
unknown discovery keys).

Per stream: ``binary_sensor`` anomaly (``device_class: problem``, the state message as
attributes), ``sensor`` score (units of the threshold, 1.0 = at threshold) and one
``binary_sensor`` per channel for sensor health (``problem``, ``entity_category:
diagnostic``). Announced once when a stream is first scored (and again when its channels
change); retired, entities removed, when not scored for ``retire_after_seconds``.
The announced streams are remembered in a small JSON file, so a restart still retires a
stream that never comes back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from monitor import __version__
from monitor.core.integration_config import AvailabilityConfig, HomeAssistantConfig
from monitor.io.atomic import write_atomic

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes, int, bool], object]
STATE_FILE = "homeassistant-entities.json"
SAVE_SECONDS = 300.0  # last-seen times are written this often (and on every announce / retire)


def slug(stream: str) -> str:
    """The stream key in HA's id alphabet, lower case (``site1/pump1`` -> ``site1_pump1``)."""
    return re.sub(r"[^a-z0-9_]+", "_", stream.lower()).strip("_") or "stream"


def stream_id(node_id: str, stream: str) -> str:
    """A unique, stable id of a stream's device: the slug plus a short hash of the exact key
    (``a/b`` and ``a_b`` have the same slug, not the same id)."""
    return f"{node_id}_{slug(stream)}_{hashlib.sha1(stream.encode()).hexdigest()[:6]}"


class Discovery:
    """Announces and retires the HA entities of streams (see the module docstring).

    `seen` runs on the scoring thread when a stream is scored; `tick` once a second with
    the wall clock. `on_retire(stream)` is told when a stream is retired (its retained
    state is cleared there).
    """

    def __init__(
        self,
        cfg: HomeAssistantConfig,
        availability: AvailabilityConfig,
        publish: Publish,
        state_file: Path,
        *,
        on_retire: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.cfg = cfg
        self.availability = availability
        self.publish = publish
        self.path = Path(state_file)
        self.on_retire = on_retire
        self.clock = clock
        self.streams: dict[str, dict] = self._load()  # stream -> {group, channels, last_seen}
        self.announced = 0
        self.retired = 0
        self._next_save = clock() + SAVE_SECONDS
        self._dirty = False
        self._live: set[str] = set()  # announced by this process (config payloads current)

    # ------------------------------------------------------------------ payloads

    def configs(self, stream: str, group: str, channels: Sequence[str]) -> list[tuple[str, dict]]:
        """(topic, config) of every entity of `stream`."""
        sid = stream_id(self.cfg.node_id, stream)
        state_topic = self.availability.state_topic.format(stream=stream)
        common: dict = {
            "state_topic": state_topic,
            "availability": [
                {
                    "topic": self.availability.topic,
                    "value_template": "{{ value_json.state }}",
                    "payload_available": "online",
                    "payload_not_available": "offline",
                }
            ],
            "device": {
                "identifiers": [sid],
                "name": stream,
                "manufacturer": "monitor",
                "model": f"monitored stream (group {group})",
                "sw_version": __version__,
            },
            "origin": {"name": "monitor", "sw_version": __version__},
            "qos": self.availability.qos,
        }
        if self.cfg.expire_after_seconds > 0:
            common["expire_after"] = round(self.cfg.expire_after_seconds)
        base = slug(stream)
        out = [
            self._entity(
                "binary_sensor",
                f"{sid}_anomaly",
                f"binary_sensor.{base}_anomaly",
                common,
                name="Anomaly",
                device_class="problem",
                value_template="{{ 'ON' if value_json.anomaly else 'OFF' }}",
                json_attributes_topic=state_topic,
            ),
            self._entity(
                "sensor",
                f"{sid}_score",
                f"sensor.{base}_anomaly_score",
                common,
                name="Anomaly score",
                state_class="measurement",
                suggested_display_precision=2,
                value_template="{{ value_json.score }}",
            ),
        ]
        for ch in channels:
            chs = slug(ch)
            out.append(
                self._entity(
                    "binary_sensor",
                    f"{sid}_sensor_{chs}",
                    f"binary_sensor.{base}_sensor_{chs}",
                    common,
                    name=f"Sensor {ch}",
                    device_class="problem",
                    entity_category="diagnostic",
                    value_template="{{ 'ON' if value_json.faults.get(" + json.dumps(ch) + ") else 'OFF' }}",
                )
            )
        return out

    def _entity(self, component: str, uid: str, entity_id: str, common: dict, **options: object) -> tuple[str, dict]:
        topic = f"{self.cfg.discovery_prefix}/{component}/{self.cfg.node_id}/{uid}/config"
        return topic, {**common, **options, "unique_id": uid, "default_entity_id": entity_id}

    def topics(self, stream: str, group: str, channels: Sequence[str]) -> list[str]:
        return [t for t, _ in self.configs(stream, group, channels)]

    # ------------------------------------------------------------------ lifecycle

    def touch(self, group: str, stream: str, channels: Sequence[str]) -> None:
        """Per scored stream and batch (cheap): refresh its last-seen time, announce it if new."""
        known = self.streams.get(stream)
        if known is None or stream not in self._live or known["group"] != group:
            self.seen(group, stream, channels)
        else:
            known["last_seen"] = self.clock()

    def refresh(self, group: str) -> None:
        """A group's model changed: its streams are announced again at their next `touch`."""
        self._live -= {s for s, v in self.streams.items() if v["group"] == group}

    def seen(self, group: str, stream: str, channels: Sequence[str]) -> None:
        """A stream was scored: announce it the first time (or when its channels changed)."""
        now = self.clock()
        known = self.streams.get(stream)
        chans = list(channels)
        if known is not None and stream in self._live and known["channels"] == chans and known["group"] == group:
            known["last_seen"] = now
            return
        if known is not None:  # entities of channels (or a layout) no longer served: removed
            for topic in set(self.topics(stream, known["group"], known["channels"])) - set(
                self.topics(stream, group, chans)
            ):
                self._send(topic, b"")
        for topic, config in self.configs(stream, group, chans):
            self._send(topic, json.dumps(config, separators=(",", ":")).encode())
        self.streams[stream] = {"group": group, "channels": chans, "last_seen": now}
        self._live.add(stream)
        self.announced += 1
        log.info("home assistant: announced stream %s (%d entities)", stream, 2 + len(chans))
        self._dirty = True  # written by the next `tick` (a fleet's first batch announces thousands)

    def tick(self) -> list[str]:
        """Retire streams not scored for retire_after_seconds; returns the retired ones."""
        now = self.clock()
        idle = [s for s, v in self.streams.items() if now - float(v["last_seen"]) > self.cfg.retire_after_seconds]
        for stream in idle:
            self.retire(stream)
        if idle or self._dirty or now >= self._next_save:
            self._dirty = False
            self._next_save = now + SAVE_SECONDS
            self.save()
        return idle

    def retire(self, stream: str) -> None:
        known = self.streams.pop(stream, None)
        self._live.discard(stream)
        if known is None:
            return
        for topic in self.topics(stream, known["group"], known["channels"]):
            self._send(topic, b"")
        self.retired += 1
        log.info("home assistant: retired stream %s (not scored for %.0f s)", stream, self.cfg.retire_after_seconds)
        if self.on_retire is not None:
            self.on_retire(stream)

    def _send(self, topic: str, payload: bytes) -> None:
        try:
            self.publish(topic, payload, 1, True)
        except Exception as exc:
            log.warning("home assistant discovery publish to %s failed: %s", topic, exc)

    # ------------------------------------------------------------------ state file

    def _load(self) -> dict[str, dict]:
        try:
            data = json.loads(self.path.read_text())
            streams = data["streams"]
            return {
                str(s): {
                    "group": str(v["group"]),
                    "channels": [str(c) for c in v["channels"]],
                    "last_seen": float(v["last_seen"]),
                }
                for s, v in streams.items()
            }
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("home assistant: %s unusable, starting without it: %s", self.path, exc)
            return {}

    def save(self) -> None:
        try:
            write_atomic(self.path, json.dumps({"format_version": 1, "streams": self.streams}, indent=1) + "\n")
        except OSError as exc:
            log.warning("home assistant: cannot write %s: %s", self.path, exc)
