"""Readings of one stream held as columns, for training and retraining on long recordings.

A month of 20 streams at 1 Hz is about 260 million channel values; one Python `Reading`
object each (about 280 bytes with its floats) does not fit a retrain unit's memory.
`ReadingColumns` keeps them as three numpy columns (time float64, channel index int16,
value float64: 18 bytes a value) in the order they were read, and `load_recording_columns`
fills them file by file: only one file's readings exist as Python objects at a time.

It is still a ``Sequence[Reading]`` (iterating makes `Reading` objects one by one) for
code that wants them; the training path reads the columns.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np

from monitor.core.types import Reading
from monitor.io.codec import Codec
from monitor.io.recording import RecordingStats, read_recording, recording_files

log = logging.getLogger(__name__)

__all__ = ["ReadingColumns", "load_recording_columns"]


class ReadingColumns(Sequence[Reading]):
    """Readings of one stream: `times`, `chan` (index into `names`), `values`, in read order."""

    __slots__ = ("chan", "is_sorted", "names", "stream", "times", "values")

    def __init__(
        self,
        stream: str = "",
        names: Sequence[str] = (),
        times: np.ndarray | None = None,
        chan: np.ndarray | None = None,
        values: np.ndarray | None = None,
        *,
        is_sorted: bool = False,
    ):
        self.is_sorted = is_sorted  # times known non-decreasing: slices by time are views
        self.stream = stream
        self.names = list(names)
        self.times = np.zeros(0) if times is None else np.asarray(times, dtype=np.float64)
        self.chan = np.zeros(0, dtype=np.int16) if chan is None else np.asarray(chan, dtype=np.int16)
        self.values = np.zeros(0) if values is None else np.asarray(values, dtype=np.float64)

    @classmethod
    def from_readings(cls, readings: Iterable[Reading], stream: str = "") -> ReadingColumns:
        """Columns of Reading objects (for callers and tests that build readings by hand)."""
        if isinstance(readings, ReadingColumns):
            return readings
        items = list(readings)
        index: dict[str, int] = {}
        chan = [index.setdefault(r.channel, len(index)) for r in items]
        times = np.fromiter((r.timestamp for r in items), np.float64, len(items))
        values = np.fromiter((r.value for r in items), np.float64, len(items))
        return cls(stream or (items[0].stream if items else ""), list(index), times, np.asarray(chan), values)

    def __len__(self) -> int:
        return len(self.times)

    @overload
    def __getitem__(self, i: int) -> Reading: ...
    @overload
    def __getitem__(self, i: slice) -> ReadingColumns: ...
    def __getitem__(self, i: int | slice) -> Reading | ReadingColumns:
        if isinstance(i, slice):  # views of the columns: O(len of the slice)
            return self.take(i)
        return Reading(self.stream, self.names[int(self.chan[i])], float(self.times[i]), float(self.values[i]))

    def __iter__(self) -> Iterator[Reading]:
        names, stream = self.names, self.stream
        for t, c, v in zip(self.times.tolist(), self.chan.tolist(), self.values.tolist(), strict=True):
            yield Reading(stream, names[c], t, v)

    def take(self, index: Any) -> ReadingColumns:
        """The readings at `index` (a boolean mask, integer positions or a slice), same channel table."""
        keeps_order = self.is_sorted and (isinstance(index, slice) or getattr(index, "dtype", None) == np.bool_)
        return ReadingColumns(
            self.stream, self.names, self.times[index], self.chan[index], self.values[index], is_sorted=keeps_order
        )

    def ordered(self) -> ReadingColumns:
        """Sorted by time, stably (readings of one time keep their read order, as ``sorted`` would)."""
        if self.is_sorted:
            return self
        out = self.take(np.argsort(self.times, kind="stable"))
        out.is_sorted = True
        return out

    def between(self, lo: float, hi: float) -> ReadingColumns:
        """The readings with lo <= time < hi: views of the columns when they are sorted."""
        if self.is_sorted:
            a, b = np.searchsorted(self.times, [lo, hi], side="left")
            return self.take(slice(int(a), int(b)))
        return self.take((self.times >= lo) & (self.times < hi))

    def channel_index(self, channels: Sequence[str]) -> np.ndarray:
        """Per reading its position in `channels`, -1 for a channel not in it."""
        lookup = np.array([channels.index(n) if n in channels else -1 for n in self.names] or [-1], dtype=np.int64)
        return lookup[self.chan.astype(np.int64)] if len(self) else np.zeros(0, dtype=np.int64)

    def with_values(self, values: np.ndarray) -> ReadingColumns:
        return ReadingColumns(self.stream, self.names, self.times, self.chan, values, is_sorted=self.is_sorted)


class _Growing:
    """Per-stream chunks appended file by file, joined once at the end."""

    def __init__(self, stream: str):
        self.stream = stream
        self.index: dict[str, int] = {}
        self.t: list[np.ndarray] = []
        self.c: list[np.ndarray] = []
        self.v: list[np.ndarray] = []

    def finish(self) -> ReadingColumns:
        """The joined columns, sorted by time; each field's chunks freed once joined, and no
        sorted copy when the recordings were already in time order (the usual case)."""
        t = _join(self.t)
        c = _join(self.c)
        v = _join(self.v)
        cols = ReadingColumns(self.stream, list(self.index), t, c, v)
        cols.is_sorted = bool(len(t) < 2 or np.all(t[1:] >= t[:-1]))
        return cols.ordered()


def _join(chunks: list[np.ndarray]) -> np.ndarray:
    out = np.concatenate(chunks)
    chunks.clear()
    return out


def load_recording_columns(
    paths: Sequence[str | Path], codec: Codec, stats: RecordingStats | None = None
) -> tuple[dict[str, ReadingColumns], int]:
    """Every recording under `paths` decoded by `codec` into per-stream columns (streams in
    the order first seen); also the number of readings the codec rejected."""
    stats = stats if stats is not None else RecordingStats()
    grow: dict[str, _Growing] = {}
    rejected = 0
    for path in recording_files(paths):
        # one file's readings as Python lists, then numpy: bounded by the file, not the window
        cols: dict[str, tuple[list[float], list[int], list[float]]] = {}
        for msg in read_recording(path, stats):
            readings, bad = codec.decode(msg.topic, msg.payload, msg.received_at)
            rejected += len(bad)
            for r in readings:
                g = grow.get(r.stream)
                if g is None:
                    g = grow[r.stream] = _Growing(r.stream)
                col = cols.get(r.stream)
                if col is None:
                    col = cols[r.stream] = ([], [], [])
                idx = g.index.get(r.channel)
                if idx is None:
                    idx = g.index[r.channel] = len(g.index)
                col[0].append(r.timestamp)
                col[1].append(idx)
                col[2].append(r.value)
        for stream, (t, c, v) in cols.items():
            g = grow[stream]
            g.t.append(np.asarray(t, dtype=np.float64))
            g.c.append(np.asarray(c, dtype=np.int16))
            g.v.append(np.asarray(v, dtype=np.float64))
    if rejected:
        log.warning("recordings: %d readings rejected by the codec", rejected)
    # sorted once (stably, as the frame builder would): time slices of the window, the
    # hold-out and the episodes are then views, not copies
    return {s: grow[s].finish() for s in list(grow)}, rejected
