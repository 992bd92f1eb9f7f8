"""Causal per-channel pre-filters applied to frames before windowing.

Each filter sees one frame (a vector of channel values) at a time and returns the
filtered vector; `reset()` forgets history (called when a stream goes stale). Training
runs the same objects over the training frames, so the model learns on exactly what it
will score. A filter can also erase a real spike: measure before enabling one.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from monitor.core.config import FilterConfig
from monitor.core.types import FloatArray


class Filter(Protocol):
    def __call__(self, values: FloatArray) -> FloatArray: ...

    def many(self, frames: FloatArray) -> FloatArray: ...  # __call__ for (m, C) frames in order

    def reset(self) -> None: ...


class _History:
    """The last `size` frames, oldest first once full."""

    def __init__(self, size: int):
        self.size = size
        self.buf: FloatArray | None = None
        self.count = 0

    def add(self, values: FloatArray) -> FloatArray:
        if self.buf is None:
            self.buf = np.empty((self.size, values.shape[0]))
        self.buf[self.count % self.size] = values
        self.count += 1
        return self.buf[: min(self.count, self.size)]

    def reset(self) -> None:
        self.count = 0

    def add_many(self, frames: FloatArray) -> tuple[FloatArray, int]:
        """`add` for frames (m, C) in order. Returns (the frames held before, oldest first,
        then `frames`; how many were held before), and leaves the same state as m `add`s."""
        m = len(frames)
        if self.buf is None:
            self.buf = np.empty((self.size, frames.shape[1]))
        held = min(self.count, self.size)
        if self.count <= self.size:
            before = self.buf[:held]
        else:  # the ring has wrapped: oldest at count % size
            start = self.count % self.size
            before = np.concatenate([self.buf[start:], self.buf[:start]])
        seq = np.concatenate([before, frames])
        total = self.count + m
        keep = min(self.size, total)
        self.buf[np.arange(total - keep, total) % self.size] = seq[len(seq) - keep :]
        self.count = total
        return seq, held

    def windows(self, frames: FloatArray) -> tuple[list[FloatArray], FloatArray]:
        """For each of `frames`: the window `add` would return (the last up to `size` frames,
        itself included), as (starting windows one by one, the rest as a (k, C, size) view)."""
        seq, held = self.add_many(frames)
        m, size = len(frames), self.size
        full = min(m, max(0, size - 1 - held))  # frames whose window is not yet `size` long
        short = [seq[: held + i + 1] for i in range(full)]
        if full == m:
            return short, np.empty((0, frames.shape[1], size))
        view = np.lib.stride_tricks.sliding_window_view(seq, size, axis=0)  # (len - size + 1, C, size)
        return short, view[held + full - size + 1 : held + m - size + 1]


class MedianFilter:
    """Median of the last `size` frames per channel."""

    def __init__(self, size: int):
        self.history = _History(size)

    def __call__(self, values: FloatArray) -> FloatArray:
        return np.median(self.history.add(values), axis=0)

    def many(self, frames: FloatArray) -> FloatArray:
        """`__call__` for frames (m, C) in order, the same values (median of the same sets)."""
        short, full = self.history.windows(frames)
        out = np.empty(frames.shape)
        for i, window in enumerate(short):
            out[i] = np.median(window, axis=0)
        out[len(short) :] = np.median(full, axis=-1)
        return out

    def reset(self) -> None:
        self.history.reset()


class EMAFilter:
    """Exponential moving average: y = alpha * x + (1 - alpha) * y_prev."""

    def __init__(self, alpha: float):
        self.alpha = alpha
        self.state: FloatArray | None = None

    def __call__(self, values: FloatArray) -> FloatArray:
        if self.state is None:
            self.state = values.astype(np.float64, copy=True)
        else:
            self.state = self.alpha * values + (1.0 - self.alpha) * self.state
        return self.state.copy()

    def many(self, frames: FloatArray) -> FloatArray:
        """`__call__` for frames (m, C) in order (a recursion: row by row, same arithmetic)."""
        out = np.empty(frames.shape)
        for i in range(len(frames)):
            out[i] = self(frames[i])
        return out

    def reset(self) -> None:
        self.state = None


class HampelFilter:
    """Replace a value further than n_sigmas robust deviations from the recent median."""

    MAD_TO_SIGMA = 1.4826

    def __init__(self, size: int, n_sigmas: float):
        self.history = _History(size)
        self.n_sigmas = n_sigmas

    def __call__(self, values: FloatArray) -> FloatArray:
        return self._judge(values, self.history.add(values))

    def many(self, frames: FloatArray) -> FloatArray:
        """`__call__` for frames (m, C) in order: the same medians, deviations and choices."""
        short, full = self.history.windows(frames)
        out = np.empty(frames.shape)
        for i, window in enumerate(short):
            out[i] = self._judge(frames[i], window)
        k = len(short)
        if k < len(frames):
            median = np.median(full, axis=-1)
            sigma = self.MAD_TO_SIGMA * np.median(np.abs(full - median[..., None]), axis=-1)
            values = frames[k:]
            outlier = np.abs(values - median) > self.n_sigmas * sigma
            outlier &= sigma > 0
            out[k:] = np.where(outlier, median, values)
        return out

    def _judge(self, values: FloatArray, window: FloatArray) -> FloatArray:
        median = np.median(window, axis=0)
        sigma = self.MAD_TO_SIGMA * np.median(np.abs(window - median), axis=0)
        outlier = np.abs(values - median) > self.n_sigmas * sigma
        outlier &= sigma > 0
        return np.where(outlier, median, values)

    def reset(self) -> None:
        self.history.reset()


def build_filter(cfg: FilterConfig) -> Filter:
    if cfg.type == "median":
        return MedianFilter(cfg.size)
    if cfg.type == "ema":
        return EMAFilter(cfg.alpha)
    if cfg.type == "hampel":
        return HampelFilter(cfg.size, cfg.n_sigmas)
    raise ValueError(f"unknown filter type {cfg.type!r}")


class FilterChain:
    """Filters applied in configured order; an empty chain passes frames through."""

    def __init__(self, configs: list[FilterConfig]):
        self.filters = [build_filter(c) for c in configs]

    def __call__(self, values: FloatArray) -> FloatArray:
        for f in self.filters:
            values = f(values)
        return values

    def many(self, frames: FloatArray) -> FloatArray:
        """`__call__` for frames (m, C) in order (the vectorized pipeline path)."""
        for f in self.filters:
            frames = f.many(frames)
        return frames

    def reset(self) -> None:
        for f in self.filters:
            f.reset()

    def __bool__(self) -> bool:
        return bool(self.filters)
