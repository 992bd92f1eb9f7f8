"""Silences (maintenance windows): alerts of a stream not sent for a while.

File: ``<models.dir>/state/silences.json``, written by ``monitor silence`` (atomically)
and re-read by the daemon when its mtime changes (one ``stat`` a second)::

    {"version": 1, "silences": [
      {"id": "3f2a9c1d", "stream": "site1/pump1", "until": 1767225600.0,
       "reason": "pump swap", "created_at": 1767218400.0}]}

`stream` is a stream key or an `fnmatch` pattern (``site1/*``); `until` is epoch seconds.
A silenced stream is still scored, calibrated and recorded; only its alerts stay away
from every sink (MQTT, log, file, Alertmanager), counted in
``monitor_alerts_silenced_total{stream,kind}``. A ``resolved`` alert is silenced when
its ``firing`` was (a receiver never sees half an episode). Expired silences are ignored.
A file that cannot be read or parsed is logged and counted
(``monitor_silence_file_errors_total``); the daemon keeps the silences it had.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import time
from dataclasses import asdict, dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from monitor.io.atomic import write_atomic

log = logging.getLogger("monitor.silences")

SILENCES_FILE = "silences.json"
_ID_MAX = 4096  # silenced firing alert ids remembered, for their resolved alerts


class SilenceFileError(ValueError):
    """A silences file that cannot be used."""


@dataclass(frozen=True)
class Silence:
    id: str
    stream: str
    until: float
    reason: str
    created_at: float

    def active(self, now: float) -> bool:
        return now < self.until

    def matches(self, stream: str) -> bool:
        return stream == self.stream or fnmatchcase(stream, self.stream)


def silences_path(models_dir: str | Path) -> Path:
    return Path(models_dir) / "state" / SILENCES_FILE


def parse(text: str, where: str) -> list[Silence]:
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise SilenceFileError(f"{where}: not JSON: {exc}") from None
    if not isinstance(obj, dict) or obj.get("version") != 1 or not isinstance(obj.get("silences"), list):
        raise SilenceFileError(f'{where}: expected {{"version": 1, "silences": [...]}}')
    out: list[Silence] = []
    for i, item in enumerate(obj["silences"]):
        if not isinstance(item, dict):
            raise SilenceFileError(f"{where}: silences[{i}] is not an object")
        sid, stream, reason = item.get("id"), item.get("stream"), item.get("reason", "")
        until: Any = item.get("until")
        created: Any = item.get("created_at", 0.0)
        if not isinstance(sid, str) or not sid or not isinstance(stream, str) or not stream:
            raise SilenceFileError(f"{where}: silences[{i}] needs a non-empty id and stream")
        if not isinstance(reason, str):
            raise SilenceFileError(f"{where}: silences[{i}].reason must be text")
        for key, v in (("until", until), ("created_at", created)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise SilenceFileError(f"{where}: silences[{i}].{key} must be epoch seconds, got {v!r}")
        out.append(Silence(sid, stream, float(until), reason, float(created)))
    return out


def load(path: Path) -> list[Silence]:
    """The silences in `path` (none when it does not exist); SilenceFileError when unusable."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise SilenceFileError(f"cannot read {path}: {exc}") from None
    return parse(text, str(path))


def save(path: Path, silences: list[Silence]) -> None:
    body = {"version": 1, "silences": [asdict(s) for s in silences]}
    write_atomic(path, json.dumps(body, indent=2) + "\n")


def add(path: Path, stream: str, seconds: float, reason: str, now: float | None = None) -> Silence:
    """Add a silence of `stream` for `seconds` from `now`; expired ones are dropped from the file."""
    now = time.time() if now is None else now
    kept = [s for s in load(path) if s.active(now)]
    silence = Silence(secrets.token_hex(4), stream, now + seconds, reason, now)
    save(path, [*kept, silence])
    return silence


def clear(path: Path, silence_id: str) -> bool:
    """Remove silence `silence_id`; False when there is none of that id."""
    current = load(path)
    kept = [s for s in current if s.id != silence_id]
    if len(kept) == len(current):
        return False
    save(path, kept)
    return True


def parse_duration(text: str) -> float:
    """Seconds of ``90s``, ``15m``, ``2h``, ``1d`` (or a bare number of seconds)."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    t = text.strip().lower()
    scale = units.get(t[-1:])
    number = t[:-1] if scale is not None else t
    try:
        value = float(number) * (scale or 1.0)
    except ValueError:
        raise ValueError(f"--for: expected a duration like 90s, 15m, 2h or 1d, got {text!r}") from None
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"--for: must be a positive duration, got {text!r}")
    return value


class SilenceWatch:
    """The daemon's view of the silences file: re-read when its mtime changes."""

    def __init__(self, path: Path, on_error: Any = None):
        self.path = path
        self.on_error = on_error  # called with no arguments on an unusable file
        self.silences: list[Silence] = []
        self._mtime: int | None = None
        self._silenced_ids: dict[str, None] = {}  # firing alerts silenced (ordered, bounded)

    def refresh(self) -> None:
        try:
            mtime: int | None = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            mtime = None
        except OSError:
            mtime = -1
        if mtime == self._mtime:
            return
        self._mtime = mtime
        try:
            self.silences = load(self.path) if mtime is not None else []
        except SilenceFileError as exc:
            if self.on_error is not None:
                self.on_error()
            log.warning("silences file unusable, keeping the %d silence(s) in force: %s", len(self.silences), exc)
            return
        log.info("silences: %d in the file", len(self.silences))

    @property
    def engaged(self) -> bool:
        """Any silence in the file, or a silenced episode still open (cheap per alert)."""
        return bool(self.silences or self._silenced_ids)

    def silenced(self, stream: str, state: str, alert_id: str, now: float) -> bool:
        """Whether an alert of `stream` is held back now (a resolved one: if its firing was)."""
        if state == "resolved" and alert_id in self._silenced_ids:
            del self._silenced_ids[alert_id]
            return True
        if not any(s.active(now) and s.matches(stream) for s in self.silences):
            return False
        if state == "firing":
            self._silenced_ids[alert_id] = None
            while len(self._silenced_ids) > _ID_MAX:
                del self._silenced_ids[next(iter(self._silenced_ids))]
        return state != "resolved"  # a resolved alert whose firing went out goes out too
