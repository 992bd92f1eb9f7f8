"""The pipeline's queue of due windows: which stream, when, and the observed frame of each.

Two producers fill it: the reading-by-reading path queues one `Window` tuple per due
window, the vectorized path one `Run` per stretch of a stream's frames. `columns_of`
turns the queue into the columns `Pipeline.flush` scores: runs of one stream's rows,
their times and observed frames, in queue order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias, TypeGuard

import numpy as np

from monitor.core.types import BatchItem, FloatArray, Reading


class Run:
    """Due windows of one stream from the vectorized path: their times and observed frames."""

    __slots__ = ("observed", "stream", "times")

    def __init__(self, stream: str, times: FloatArray, observed: FloatArray):
        self.stream = stream
        self.times = times
        self.observed = observed


Window: TypeAlias = tuple[str, float, FloatArray]
"""A due window from the reading-by-reading path: (stream, time, observed frame)."""


def all_readings(items: list[BatchItem]) -> TypeGuard[list[Reading]]:
    return all(type(item) is Reading for item in items)


def push_each(item: BatchItem, push: Callable[[Reading], object]) -> None:
    """`push` every reading of an item (a Reading or a block), in order."""
    if isinstance(item, Reading):
        push(item)
    else:
        for r in item:
            push(r)


def columns_of(
    entries: list[Window | Run],
) -> tuple[
    list[str] | None, list[tuple[str, int, int]] | None, list[float] | FloatArray, list[FloatArray] | FloatArray
]:
    """(streams or None, runs, times, observed) of the queued windows, in queue order.

    `entries` holds (stream, time, observed) tuples from the reading-by-reading path and
    `Run`s from the vectorized one."""
    if all(isinstance(e, tuple) for e in entries):
        streams, times, observed = (list(col) for col in zip(*entries, strict=True))
        return streams, None, times, observed
    runs: list[tuple[str, int, int]] = []
    t_parts: list[FloatArray] = []
    o_parts: list[FloatArray] = []
    row = 0
    for e in entries:
        if isinstance(e, tuple):
            stream, k = e[0], 1
            t_parts.append(np.array([e[1]], dtype=np.float64))
            o_parts.append(np.asarray(e[2], dtype=np.float64).reshape(1, -1))
        else:
            stream, k = e.stream, len(e.times)
            t_parts.append(e.times)
            o_parts.append(e.observed)
        if runs and runs[-1][0] == stream:
            runs[-1] = (stream, runs[-1][1], row + k)
        else:
            runs.append((stream, row, row + k))
        row += k
    return None, runs, np.concatenate(t_parts), np.concatenate(o_parts)
