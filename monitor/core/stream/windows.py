"""Sliding windows over consecutive fresh frames.

A window is `window_size` consecutive, non-stale frames; one is emitted every `stride`
frames once the buffer is full. A stale frame breaks the run: the buffer starts over.

    frames   f0 f1 f2 f3 f4 f5 (stale) f7 f8 f9 f10
    W=3,s=2  [f0 f1 f2]                               <- first full window
                   [f2 f3 f4]                         <- 2 frames later
                               reset  [f7 f8 f9]     <- run restarts after the gap

`WindowBuffer` does this one frame at a time for the live path; `window_runs` does the
same over a whole array for training. A test holds the two to the same output.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from monitor.core.types import FloatArray


class WindowBuffer:
    """Ring buffer of the last `window_size` frames, stored twice so a window is one slice."""

    __slots__ = ("_buf", "_filled", "_pos", "_since", "stride", "window_size")

    def __init__(self, window_size: int, n_channels: int, stride: int = 1, dtype: DTypeLike = np.float32):
        self.window_size = window_size
        self.stride = stride
        self._buf = np.zeros((2 * window_size, n_channels), dtype=dtype)
        self._pos = 0  # next write slot in [0, window_size)
        self._filled = 0
        self._since = 0  # frames since the last emitted window

    def push(self, values: FloatArray) -> np.ndarray | None:
        """Add a frame; return a view of the window (oldest first) when one is due."""
        w = self.window_size
        self._buf[self._pos] = values
        self._buf[self._pos + w] = values
        self._pos = (self._pos + 1) % w
        if self._filled < w:
            self._filled += 1
            if self._filled < w:
                return None
            self._since = 0
            return self._buf[self._pos : self._pos + w]
        self._since += 1
        if self._since < self.stride:
            return None
        self._since = 0
        return self._buf[self._pos : self._pos + w]

    def push_many(
        self, values: FloatArray, out: Callable[[int], np.ndarray] | None = None
    ) -> tuple[NDArray[np.integer[Any]], np.ndarray]:
        """`push` for frames (m, channels) at once, in order.

        Returns ``(index, windows)``: the positions in `values` at which `push` would
        have returned a window, and copies of those windows, shaped (k, window_size,
        channels) in the buffer's dtype. With `out` (a callable taking k and returning a
        (k, window_size, channels) array) the windows are written there, not allocated.
        The buffer ends in the same state.
        """
        values = np.asarray(values)
        m = len(values)
        w = self.window_size
        f0 = self._filled
        # frames already held, oldest first, then the new ones
        history = self._buf[self._pos + w - f0 : self._pos + w]
        seq = np.concatenate([history, values.astype(self._buf.dtype, copy=False)])
        if f0 < w:
            first = w - f0 - 1  # index of the frame that completes the first window
            since_before = None
        else:
            first = self.stride - self._since - 1
            since_before = self._since
        if first < m:
            index: NDArray[np.integer[Any]] = np.arange(first, m, self.stride)
        else:
            index = np.zeros(0, dtype=np.int64)
        if len(index):
            # the windows as a strided view of `seq` (its frames first + (f0 - w + 1) + i * stride
            # on, w of them), copied: the same values as gathering them row by row, without
            # building and reading a (k, w) index
            rs, cs = seq.strides
            k = len(index)
            view = np.ndarray(
                (k, w, seq.shape[1]),
                seq.dtype,
                buffer=seq,
                offset=(int(index[0]) + f0 - w + 1) * rs,
                strides=(rs * self.stride, rs, cs),
            )
            if out is None:
                windows = view.copy()  # (k, w, c)
            else:
                windows = out(k)
                np.copyto(windows, view)
        else:
            windows = np.zeros((0, w, seq.shape[1]), dtype=self._buf.dtype)
        # the buffer's state after m pushes
        if len(index):
            self._since = m - 1 - int(index[-1])
        elif since_before is not None:
            self._since = since_before + m
        self._filled = min(w, f0 + m)
        k = min(m, w)
        slots = (self._pos + m - k + np.arange(k)) % w
        tail = seq[len(seq) - k :]
        self._buf[slots] = tail
        self._buf[slots + w] = tail
        self._pos = (self._pos + m) % w
        return index, windows

    def reset(self) -> None:
        self._filled = 0
        self._since = 0

    @property
    def filled(self) -> int:
        return self._filled


def window_runs(
    values: FloatArray, stale: NDArray[np.bool_], window_size: int, stride: int = 1
) -> tuple[FloatArray, NDArray[np.integer[Any]]]:
    """All windows a `WindowBuffer` would emit over `values` (frames x channels).

    Returns ``(windows, end_index)``: windows shaped (n, window_size, channels) and the
    frame index each one ends at.
    """
    n, c = values.shape
    windows = []
    ends = []
    start = 0
    stale = np.asarray(stale, dtype=bool)
    bounds: list[int] = [*np.flatnonzero(stale).tolist(), n]
    for b in bounds:
        run = values[start:b]
        if len(run) >= window_size:
            view = np.lib.stride_tricks.sliding_window_view(run, window_size, axis=0)  # (m, c, w)
            picked = view[::stride].transpose(0, 2, 1)
            windows.append(picked)
            ends.append(start + window_size - 1 + np.arange(0, len(run) - window_size + 1, stride))
        start = b + 1
    if not windows:
        return np.zeros((0, window_size, c), dtype=values.dtype), np.zeros(0, dtype=np.int64)
    return np.ascontiguousarray(np.concatenate(windows)), np.concatenate(ends)


def window_ends(stale: NDArray[np.bool_], window_size: int, stride: int = 1) -> NDArray[np.int64]:
    """The frame index each window of `window_runs` ends at, without building the windows
    (eight bytes a window: a month of frames can be counted and sampled before any is cut)."""
    stale = np.asarray(stale, dtype=bool)
    n = len(stale)
    ends = []
    start = 0
    for b in [*np.flatnonzero(stale).tolist(), n]:
        if b - start >= window_size:
            ends.append(start + window_size - 1 + np.arange(0, b - start - window_size + 1, stride))
        start = b + 1
    return np.concatenate(ends).astype(np.int64) if ends else np.zeros(0, dtype=np.int64)


def windows_at(values: FloatArray, ends: NDArray[np.integer[Any]], window_size: int) -> FloatArray:
    """The windows (n, window_size, channels) of `values` ending at frames `ends`: with
    `window_ends`' indices, the rows `window_runs` gives at those positions."""
    if not len(ends):
        return np.zeros((0, window_size, values.shape[1]), dtype=values.dtype)
    rows = np.asarray(ends)[:, None] - (window_size - 1) + np.arange(window_size)
    return np.ascontiguousarray(values[rows])


def even_sample(n: int, k: int) -> NDArray[np.int64]:
    """`min(n, k)` positions spread evenly over range(n), always the first and last one."""
    if k <= 0 or n <= k:
        return np.arange(n, dtype=np.int64)
    if k == 1:
        return np.array([n - 1], dtype=np.int64)
    return np.unique(np.round(np.linspace(0, n - 1, k)).astype(np.int64))
