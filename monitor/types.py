"""Value types that cross module boundaries.

Times are float seconds since the Unix epoch (data time, from payloads or files) unless a
name says otherwise. Scores are in *threshold units*: 1.0 means "exactly at the
calibrated threshold", higher is more anomalous.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Sequence

import numpy as np


class Reading(NamedTuple):
    """One value of one channel of one stream at one time."""

    stream: str
    channel: str
    timestamp: float
    value: float


class RawMessage(NamedTuple):
    """An MQTT message as received (or as recorded), before decoding."""

    received_at: float  # wall-clock epoch seconds at receipt
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


class Rejected(NamedTuple):
    """Input that could not become a reading; `reason` is a short metric label."""

    reason: str
    detail: str


@dataclass(frozen=True)
class Frame:
    """All channels of one stream aligned onto one grid time (`period_seconds` apart)."""

    stream: str
    timestamp: float
    values: np.ndarray  # shape (n_channels,), float64, raw units
    stale: bool = False  # some channel had no value within max_gap_seconds


@dataclass(frozen=True)
class Score:
    """The result of scoring one window (the window ends at `timestamp`)."""

    stream: str
    timestamp: float
    score: float  # error / threshold
    raw_error: float
    channel_scores: np.ndarray  # (n_channels,) per-channel share of the score, threshold units
    observed: np.ndarray  # (n_channels,) last step of the window, raw units
    reconstructed: np.ndarray  # (n_channels,) model's reconstruction of that step, raw units


class ScoreBatch(Sequence[Score]):
    """Scores of one scored batch, stored by column; indexing builds a `Score`.

    The hot path reads the columns (`streams`, `times`, `score`...) and never builds a
    per-window object; sinks, listeners and backtests can treat it as a list of `Score`.
    """

    __slots__ = ("streams", "times", "score", "raw", "channel_scores", "observed", "reconstructed")

    def __init__(self, streams: list[str], times: list[float], score: np.ndarray, raw: np.ndarray,
                 channel_scores: np.ndarray, observed: list[np.ndarray], reconstructed: np.ndarray):
        self.streams = streams
        self.times = times
        self.score = score
        self.raw = raw
        self.channel_scores = channel_scores
        self.observed = observed
        self.reconstructed = reconstructed

    @classmethod
    def empty(cls) -> "ScoreBatch":
        z = np.zeros(0)
        return cls([], [], z, z, np.zeros((0, 0)), [], np.zeros((0, 0)))

    def __len__(self) -> int:
        return len(self.streams)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return Score(self.streams[i], self.times[i], float(self.score[i]), float(self.raw[i]),
                     self.channel_scores[i], self.observed[i], self.reconstructed[i])

    def last_by_stream(self) -> dict[str, float]:
        """The newest score of each stream in the batch."""
        return dict(zip(self.streams, self.score.tolist()))


@dataclass(frozen=True)
class Alert:
    """A change of alarm state of one stream: `state` is "firing" or "resolved"."""

    alert_id: str
    stream: str
    state: str
    started_at: float
    ended_at: float | None
    peak_score: float
    current_score: float
    threshold: float
    model_version: str
    top_channels: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "alert_id": self.alert_id,
            "stream": self.stream,
            "state": self.state,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "peak_score": self.peak_score,
            "current_score": self.current_score,
            "threshold": self.threshold,
            "model_version": self.model_version,
            "top_channels": self.top_channels,
        }
