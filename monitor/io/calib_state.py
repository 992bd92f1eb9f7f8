"""Calibrator state on disk: one JSON file per group, written atomically.

``<group's models dir>/state/calibration.json`` (``models.dir/state/`` without `groups:`).
A write goes to a temporary file in the same directory, is flushed and fsynced, then
renamed over the old file (`os.replace`, atomic on POSIX): a crash mid-write leaves the
old state, never half a file. Reading a missing file gives None; an unreadable or
malformed one raises `StateError` (the daemon warns, counts and starts fresh).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

STATE_DIR = "state"
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
    ps = sorted(set(partitions))
    parts: list[str] = []
    i = 0
    while i < len(ps):
        j = i
        while j + 1 < len(ps) and ps[j + 1] == ps[j] + 1:
            j += 1
        parts.append(str(ps[i]) if i == j else f"{ps[i]}-{ps[j]}")
        i = j + 1
    return "p" + "_".join(parts)


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write `state` to `path` atomically (temp file + fsync + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".calibration-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(state, fh, separators=(",", ":"), allow_nan=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
