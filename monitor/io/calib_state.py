"""Calibrator state on disk: one JSON file per group, written atomically.

``<group's models dir>/state/calibration.json`` (``models.dir/state/`` without `groups:`).
A write goes to a temporary file in the same directory, is flushed and fsynced, then
renamed over the old file (`os.replace`, atomic on POSIX): a crash mid-write leaves the
old state, never half a file. Reading a missing file gives None; an unreadable or
malformed one raises `StateError` (the daemon warns, counts and starts fresh).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from monitor.core.config import format_partitions
from monitor.io.atomic import write_atomic

STATE_DIR = "state"  # = monitor.core.model.registry.STATE: the registry never lists or prunes it
STATE_FILE = "calibration.json"


class StateError(ValueError):
    """A calibration state file exists but cannot be used."""


def state_path(group_models_dir: Path, owner: str | None = None) -> Path:
    """The state file; `owner` names a worker's share of the streams (``p0-3``: NATS
    partitions 0 to 3), so workers sharing one models dir never overwrite each other."""
    name = STATE_FILE if not owner else f"calibration-{owner}.json"
    return Path(group_models_dir) / STATE_DIR / name


def partitions_owner(partitions: tuple[int, ...] | list[int]) -> str:
    """``p0-3_6``: the compact name of a set of partitions (ranges joined by ``_``)."""
    return "p" + format_partitions(partitions).replace(",", "_")


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write `state` to `path` atomically (temp file + fsync + rename)."""
    write_atomic(path, json.dumps(state, separators=(",", ":"), allow_nan=True), mode=None)


def load_state(path: Path) -> dict[str, Any] | None:
    """The state at `path`; None when there is none; `StateError` when it is unusable."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StateError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise StateError(f"{path} does not hold a JSON object")
    return data
