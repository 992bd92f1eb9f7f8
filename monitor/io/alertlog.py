"""Where the alert log lives, and the operators' labels beside it.

One name everywhere: the alert log is ``alerts.ndjson`` (`ALERTS_FILE`) in the
recordings folder. The daemon appends to it when recording is on, ``monitor replay
--offline --alerts-out recordings/alerts.ndjson`` writes it, and ``monitor retrain
--data recordings/`` reads it from there. ``.ndjson`` so that a recordings folder
listing (`recording_files`) never mistakes it for a recording. The old name
``alerts.jsonl`` is still found (with a warning) and skipped by folder listings too.

Labels (``monitor label ALERT_ID --confirmed | --false-alarm [--note TEXT]``) are kept in
``alert-labels.json`` (`LABELS_FILE`) in the same folder as the alert log, rewritten
atomically (temp file, fsync, rename) on every change::

    {"format": "monitor-alert-labels", "version": 1,
     "labels": {"<alert_id>": {"label": "confirmed" | "false_alarm", "note": "...",
                               "labelled_at": "2026-12-02T16:00:00+00:00",
                               "stream": "site1/pump1", "started_at": 1.7e9, "ended_at": 1.7e9}}}

A later label of the same alert replaces the earlier one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from monitor.io.atomic import write_atomic
from monitor.io.recording import ALERTS_FILE, LEGACY_ALERTS_FILES

log = logging.getLogger(__name__)

LABELS_FILE = "alert-labels.json"
LABELS_FORMAT = "monitor-alert-labels"
LABELS = ("confirmed", "false_alarm")

__all__ = [
    "ALERTS_FILE",
    "LABELS",
    "LABELS_FILE",
    "LEGACY_ALERTS_FILES",
    "find_alert_log",
    "read_labels",
    "write_label",
]


def find_alert_log(folder: Path) -> Path | None:
    """The alert log in `folder`: ``alerts.ndjson``, else an old-named one (warned about)."""
    folder = Path(folder)
    path = folder / ALERTS_FILE
    if path.is_file():
        return path
    for name in LEGACY_ALERTS_FILES:
        old = folder / name
        if old.is_file():
            log.warning(
                "using the alert log %s under its old name; rename it to %s (the name the daemon, replay and "
                "retrain share)",
                old,
                ALERTS_FILE,
            )
            return old
    return None


def alert_log_folders(data_paths: Iterable[str | Path]) -> list[Path]:
    """Folders an alert log is looked for in: each data folder, and each data file's folder."""
    out: list[Path] = []
    for p in data_paths:
        p = Path(p)
        folder = p if p.is_dir() else p.parent
        if folder not in out:
            out.append(folder)
    return out


def labels_path(alert_log: Path) -> Path:
    return Path(alert_log).parent / LABELS_FILE


def read_labels(path: Path) -> dict[str, dict[str, Any]]:
    """alert_id -> label entry; {} when the file does not exist. ValueError when it is not a labels file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); fix or remove it") from None
    if not isinstance(obj, dict) or obj.get("format") != LABELS_FORMAT or not isinstance(obj.get("labels"), dict):
        raise ValueError(f"{path} is not a {LABELS_FORMAT} file")
    out: dict[str, dict[str, Any]] = {}
    for alert_id, entry in obj["labels"].items():
        if isinstance(entry, dict) and entry.get("label") in LABELS:
            out[str(alert_id)] = entry
        else:
            log.warning("%s: ignoring a malformed label for %s", path, alert_id)
    return out


def write_label(
    path: Path, alert_id: str, label: str, *, note: str | None = None, alert: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Set the label of `alert_id` (atomically rewriting the file); returns the entry."""
    if label not in LABELS:
        raise ValueError(f"label must be one of {', '.join(LABELS)}, got {label!r}")
    path = Path(path)
    labels = read_labels(path)
    entry: dict[str, Any] = {"label": label, "labelled_at": datetime.now(timezone.utc).isoformat()}
    if note:
        entry["note"] = note
    for key in ("stream", "started_at", "ended_at", "group"):
        if alert and alert.get(key) is not None:
            entry[key] = alert[key]
    labels[alert_id] = entry
    body = json.dumps({"format": LABELS_FORMAT, "version": 1, "labels": labels}, indent=2, sort_keys=True) + "\n"
    write_atomic(path, body)
    return entry
