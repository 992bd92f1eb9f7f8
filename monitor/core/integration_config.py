"""Config sections for what integrators consume: availability, Home Assistant, Alertmanager.

Kept out of `monitor.core.config` (which imports them into `Config`) so that file does not
grow; they validate themselves the same way (`ConfigError` naming the dotted key).
Decision record: docs/decisions/0019-availability-and-home-assistant.md.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from monitor.core.config_base import ConfigError
from monitor.core.config_base import secret_str as _secret_str

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_HA_ID = re.compile(r"[a-zA-Z0-9_-]+")
RESERVED_LABELS = frozenset({"alertname", "stream", "alert_id", "source"})


def _topic(key: str, value: str, *, stream: bool) -> None:
    if not value or "#" in value or "+" in value:
        raise ConfigError(key, f"must be a topic to publish on (no wildcards), got {value!r}")
    if stream and "{stream}" not in value:
        raise ConfigError(key, f"must contain {{stream}}, got {value!r}")


@dataclass
class AvailabilityConfig:
    """A retained birth / last-will topic and a retained state topic per stream (MQTT source).

    `topic` carries ``{"state": "online"|"offline", "version": ..., "groups": [...]}``: the
    broker publishes the offline one as our last will when the connection dies without a
    DISCONNECT (a crash, SIGKILL, a cable). `state_topic` carries each stream's state
    (``ok``, ``firing`` or ``sensor_fault``, plus the score), at once on a change and
    otherwise at most every `state_interval_seconds` while the stream is scored.
    """

    enabled: bool = True
    topic: str = "monitor/status"
    state_topic: str = "monitor/{stream}/state"
    state_interval_seconds: float = 10.0
    qos: int = 1

    def __post_init__(self) -> None:
        _topic("availability.topic", self.topic, stream=False)
        _topic("availability.state_topic", self.state_topic, stream=True)
        if not self.state_interval_seconds > 0:
            raise ConfigError(
                "availability.state_interval_seconds", f"must be > 0, got {self.state_interval_seconds!r}"
            )
        if self.qos not in (0, 1):
            raise ConfigError("availability.qos", f"must be 0 or 1, got {self.qos!r}")


@dataclass
class HomeAssistantConfig:
    """Home Assistant MQTT discovery (needs `availability.enabled`).

    Per stream: a ``binary_sensor`` (anomaly), a ``sensor`` (score) and one ``binary_sensor``
    per channel (sensor health), announced once when the stream is first scored. A stream
    not scored for `retire_after_seconds` is retired: its entities are removed (empty
    retained config payloads). `expire_after_seconds` (0: off) tells HA to show the
    entities unavailable when no state came for that long (a wedged daemon still connected);
    it must exceed `availability.state_interval_seconds`. `state_file` (default
    ``<models.dir>/homeassistant-entities.json``) remembers what was announced, so a
    restart still retires streams that never come back and channels a new model dropped.
    """

    enabled: bool = False
    discovery_prefix: str = "homeassistant"
    node_id: str = "monitor"
    retire_after_seconds: float = 7 * 86400.0
    expire_after_seconds: float = 0.0
    state_file: str | None = None

    def __post_init__(self) -> None:
        if not _HA_ID.fullmatch(self.node_id):
            raise ConfigError("homeassistant.node_id", f"must match [a-zA-Z0-9_-]+ (HA's rule), got {self.node_id!r}")
        _topic("homeassistant.discovery_prefix", self.discovery_prefix, stream=False)
        if self.discovery_prefix.endswith("/"):
            raise ConfigError("homeassistant.discovery_prefix", "must not end with '/'")
        if not self.retire_after_seconds > 0:
            raise ConfigError("homeassistant.retire_after_seconds", f"must be > 0, got {self.retire_after_seconds!r}")
        if self.expire_after_seconds < 0:
            raise ConfigError(
                "homeassistant.expire_after_seconds", f"must be >= 0 (0: off), got {self.expire_after_seconds!r}"
            )


@dataclass
class AlertmanagerConfig:
    """The Alertmanager sink: every alert goes to every URL (Alertmanager runs as an HA
    pair or cluster and deduplicates; posting to one member only loses alerts when it is
    down). Failed posts are retried with exponential backoff from `retry_initial_seconds`
    to `retry_max_seconds`, at most `max_attempts` times, in one thread per URL, so a dead
    URL neither delays the other URLs nor the scoring thread. `labels` are added to every
    alert (not: alertname, stream, alert_id, source). Basic auth: `username` with
    `password` / `password_file`; or `bearer_token` / `bearer_token_file` (secrets).
    """

    urls: list[str] = field(default_factory=list)
    labels: dict[str, Any] = field(default_factory=dict)
    timeout_seconds: float = 5.0
    max_attempts: int = 5
    retry_initial_seconds: float = 0.5
    retry_max_seconds: float = 30.0
    resend_seconds: float = 60.0
    queue_size: int = 1000
    username: str | None = None
    password: str | None = field(default=None, repr=False, metadata={"secret": True})
    bearer_token: str | None = field(default=None, repr=False, metadata={"secret": True})

    def __post_init__(self) -> None:
        self.password = _secret_str("alertmanager.password", self.password)
        self.bearer_token = _secret_str("alertmanager.bearer_token", self.bearer_token)
        for i, url in enumerate(self.urls):
            key = f"alertmanager.urls[{i}]"
            parts = urlsplit(url)
            if parts.username is not None or parts.password is not None:
                # never quote it: the userinfo is a credential
                raise ConfigError(
                    key, "must not carry credentials (user:password@); use alertmanager.username and password_file"
                )
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(key, f"must be an http(s) URL of an Alertmanager, got {url!r}")
        if len(set(self.urls)) != len(self.urls):
            raise ConfigError("alertmanager.urls", "lists the same URL twice")
        if not isinstance(self.labels, dict):
            raise ConfigError("alertmanager.labels", f"expected a mapping of label -> value, got {self.labels!r}")
        for name, value in self.labels.items():
            key = f"alertmanager.labels.{name}"
            if not isinstance(name, str) or not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
                raise ConfigError(key, "a label name must match [a-zA-Z_][a-zA-Z0-9_]* (not __*)")
            if name in RESERVED_LABELS:
                raise ConfigError(key, f"is set by the sink itself; reserved: {', '.join(sorted(RESERVED_LABELS))}")
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise ConfigError(key, f"expected a string, got {value!r}")
            self.labels[name] = str(value)
        for name in ("timeout_seconds", "retry_initial_seconds", "retry_max_seconds", "resend_seconds"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"alertmanager.{name}", f"must be > 0, got {v!r}")
        if self.retry_max_seconds < self.retry_initial_seconds:
            raise ConfigError("alertmanager.retry_max_seconds", "must be >= alertmanager.retry_initial_seconds")
        if self.max_attempts < 1:
            raise ConfigError("alertmanager.max_attempts", f"must be >= 1, got {self.max_attempts!r}")
        if self.queue_size < 1:
            raise ConfigError("alertmanager.queue_size", f"must be >= 1, got {self.queue_size!r}")
        if self.password and not self.username:
            raise ConfigError("alertmanager.username", "a password was given without a username")
        if self.bearer_token and self.password:
            raise ConfigError("alertmanager.bearer_token", "basic auth (username/password) or a bearer token, not both")
