"""Retention of recording files: oldest first, never the file being written.

`record.max_age_hours` deletes recordings last written longer ago than that;
`record.max_bytes` then deletes the oldest until the folder's recordings fit. Only
recordings (`recording_files`) are candidates: the alert log and the labels beside them
are kept. Order: by last-modified time, then by name (the recorder's names sort by time).
Deletion errors are counted and logged, never raised.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from monitor.io.recording import recording_files

log = logging.getLogger(__name__)


@dataclass
class RetentionResult:
    deleted_files: int = 0
    deleted_bytes: int = 0
    errors: int = 0


def plan_deletions(
    files: list[tuple[Path, float, int]], now: float, max_age_seconds: float, max_bytes: int, keep: set[Path]
) -> list[Path]:
    """(path, mtime, size) -> the paths to delete, oldest first (0: no limit)."""
    ordered = sorted(files, key=lambda f: (f[1], f[0].name))
    doomed: list[Path] = []
    total = sum(size for _, _, size in ordered)
    for path, mtime, size in ordered:
        if path in keep:
            continue
        too_old = max_age_seconds > 0 and mtime < now - max_age_seconds
        too_big = max_bytes > 0 and total > max_bytes
        if not (too_old or too_big):
            break  # oldest first, and the total only shrinks: no newer file is due either
        doomed.append(path)
        total -= size
    return doomed


def enforce(directory: Path, *, max_age_seconds: float, max_bytes: int, keep: set[Path], now: float) -> RetentionResult:
    """Delete what `plan_deletions` picks in `directory`."""
    res = RetentionResult()
    if max_age_seconds <= 0 and max_bytes <= 0:
        return res
    files = []
    for p in recording_files(directory):
        try:
            st = p.stat()
        except OSError:
            continue
        files.append((p, st.st_mtime, st.st_size))
    keep = {Path(k) for k in keep}
    sizes = {p: s for p, _, s in files}
    for path in plan_deletions(files, now, max_age_seconds, max_bytes, keep):
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            res.errors += 1
            log.error("retention: cannot delete %s: %s", path, exc)
            continue
        res.deleted_files += 1
        res.deleted_bytes += sizes[path]
        log.info("retention: deleted %s (%d bytes)", path, sizes[path])
    return res
