"""Which recording files `monitor retrain` reads: the data window, thinned when it is long.

Reading is what grows with the window (per-stream columns, 18 bytes a channel value, and
filtered frames, 49 bytes a frame: about 0.7 MiB a stream-hour at 1 Hz and 5 channels),
while the training set does not (`model.max_train_windows` and
`model.max_calibration_windows` windows spread evenly over the data). So a window longer
than ``max_read_hours`` is read thinned, by whole files, before any is opened:

* files last written in the newest ``max_read_hours / 2`` are all read: they hold the
  gate's held-out slice (the newest 20 % of what is read) and the calibration windows;
* of the older files of each folder, one in ``k`` is read, counting back from the newest,
  ``k = ceil(older span / (max_read_hours / 2))``: about as many hours again, spread
  evenly over the rest of the window (the training windows then come from all of it);
* a file that may hold part of a past alert episode (confirmed or unlabelled, the spans
  the gate replays) is always read.

Time and memory then follow ``max_read_hours`` (and the episodes), not the window. A
window within ``max_read_hours`` is read in full, as before. Thinning works on whole
files (the recorder rotates hourly by default); one file holding the whole window is
read in full. The gaps between read files are gaps like any other: the assembler emits
one stale frame and no window spans one.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from monitor.io.recording import SUFFIXES, recording_files

__all__ = ["ReadPlan", "plan_reads"]

_SLACK = 60.0  # seconds: a file's data was received before its last write, give or take


@dataclass
class ReadPlan:
    """The files to read, and what was left unread and why."""

    paths: list[str] = field(default_factory=list)
    skipped: int = 0  # last written before the window
    thinned: int = 0  # in the window, older part, not one of the one-in-k
    every: int = 1  # k: one older file in k read (1: all)
    for_episodes: int = 0  # older files read only because a past episode may be in them

    def info(self, max_age_hours: float, max_read_hours: float) -> dict:
        """The verdict's ``window``."""
        return {
            "max_age_hours": max_age_hours,
            "files_read": len(self.paths),
            "files_skipped": self.skipped,
            "max_read_hours": max_read_hours,
            "files_thinned": self.thinned,
            "read_every": self.every,
            "files_for_episodes": self.for_episodes,
        }


@dataclass
class _Entry:
    path: str
    mtime: float | None  # None: not a recording (CSV), or unreadable: always read
    after: float = -math.inf  # the previous recording of its folder was last written then


def _entries(paths: Sequence[str]) -> list[_Entry]:
    entries: list[_Entry] = []
    for p in paths:
        path = Path(p)
        files = recording_files(path) if path.is_dir() else [path]
        for f in files:
            recorded = path.is_dir() or f.name.endswith(SUFFIXES)
            try:
                entries.append(_Entry(str(f), f.stat().st_mtime if recorded else None))
            except OSError:
                entries.append(_Entry(str(f), None))  # let the loader report it
    by_folder: dict[str, list[_Entry]] = {}
    for e in entries:
        if e.mtime is not None:
            by_folder.setdefault(str(Path(e.path).parent), []).append(e)
    for group in by_folder.values():
        group.sort(key=lambda e: e.mtime or 0.0)
        for prev, e in itertools.pairwise(group):
            e.after = prev.mtime or -math.inf
    return entries


def plan_reads(
    paths: Sequence[str],
    max_age_hours: float,
    max_read_hours: float = 0.0,
    episodes: Sequence[tuple[float, float]] = (),
) -> ReadPlan:
    """--data with folders expanded, recordings last written more than `max_age_hours` (+ a
    minute) before the newest one left out unread, and a window longer than
    `max_read_hours` thinned (module doc); `episodes`: (start, end) spans, in Unix seconds,
    whose files must be read. CSV files are always read. With neither bound, `paths` as given."""
    if max_age_hours <= 0 and max_read_hours <= 0:
        return ReadPlan(list(paths))
    entries = _entries(paths)
    times = [e.mtime for e in entries if e.mtime is not None]
    if not times:
        return ReadPlan([e.path for e in entries])
    newest = max(times)
    start = newest - max_age_hours * 3600.0 - _SLACK if max_age_hours > 0 else -math.inf
    in_window = [e for e in entries if e.mtime is None or e.mtime >= start]
    plan = ReadPlan(skipped=len(entries) - len(in_window))
    recorded = [e for e in in_window if e.mtime is not None]
    oldest = min((e.mtime for e in recorded if e.mtime is not None), default=newest)
    span_hours = (newest - max(oldest, start)) / 3600.0
    read = {id(e) for e in in_window}
    if max_read_hours > 0 and span_hours > max_read_hours:
        recent_cut = newest - max_read_hours / 2 * 3600.0
        older_hours = (recent_cut - max(oldest, start)) / 3600.0
        plan.every = max(1, math.ceil(older_hours / (max_read_hours / 2)))
        by_folder: dict[str, list[_Entry]] = {}
        for e in recorded:
            if (e.mtime or 0.0) < recent_cut:
                by_folder.setdefault(str(Path(e.path).parent), []).append(e)
        for group in by_folder.values():
            group.sort(key=lambda e: -(e.mtime or 0.0))  # newest first: the one-in-k starts next to the recent part
            for i, e in enumerate(group):
                if i % plan.every == 0:
                    continue
                if any(_overlaps(e, lo, hi) for lo, hi in episodes):
                    plan.for_episodes += 1
                    continue
                read.discard(id(e))
                plan.thinned += 1
    if max_age_hours <= 0 and not plan.thinned:
        plan.paths = list(paths)  # nothing left out: the folders as given, as without a bound
    else:
        plan.paths = [e.path for e in in_window if id(e) in read]
    return plan


def _overlaps(e: _Entry, lo: float, hi: float) -> bool:
    """Whether file `e` may hold data of lo..hi: it holds what was received after the
    previous file of its folder was last written and before its own last write."""
    return e.after - _SLACK <= hi and lo <= (e.mtime or 0.0) + _SLACK
