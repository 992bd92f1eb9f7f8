"""Detection quality against labels: confusion counts, F1, FAR, MAR, detection delay.

Pointwise and without point adjustment (the SKAB protocol): every labelled row counts on
its own. Counts add up across files, so a benchmark can micro-average.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Quality:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    delays: list[float] = field(default_factory=list)  # seconds, per detected segment
    segments: int = 0
    missed_segments: int = 0

    def __add__(self, other: Quality) -> Quality:
        return Quality(
            self.tp + other.tp,
            self.fp + other.fp,
            self.fn + other.fn,
            self.tn + other.tn,
            self.delays + other.delays,
            self.segments + other.segments,
            self.missed_segments + other.missed_segments,
        )

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        denom = self.tp + 0.5 * (self.fp + self.fn)
        return self.tp / denom if denom else 0.0

    @property
    def far(self) -> float:
        """False-alarm rate, percent: FP / (FP + TN)."""
        return 100.0 * self.fp / (self.fp + self.tn) if self.fp + self.tn else 0.0

    @property
    def mar(self) -> float:
        """Missed-alarm rate, percent: FN / (FN + TP)."""
        return 100.0 * self.fn / (self.fn + self.tp) if self.fn + self.tp else 0.0

    @property
    def mean_delay(self) -> float | None:
        return float(np.mean(self.delays)) if self.delays else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "far_percent": self.far,
            "mar_percent": self.mar,
            "segments": self.segments,
            "missed_segments": self.missed_segments,
            "mean_delay_seconds": self.mean_delay,
        }


def segments(labels: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index ranges where labels are 1."""
    lab = np.asarray(labels) > 0.5
    edges = np.diff(np.concatenate([[0], lab.astype(np.int8), [0]]))
    # padded with 0 at both ends: every rise has its fall, so the two lists pair up exactly
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def evaluate(times: np.ndarray, labels: np.ndarray, predicted: np.ndarray) -> Quality:
    """Compare 0/1 predictions with 0/1 labels row by row (NaN labels are skipped)."""
    labels = np.asarray(labels, dtype=np.float64)
    keep = ~np.isnan(labels)
    times, labels, predicted = np.asarray(times)[keep], labels[keep] > 0.5, np.asarray(predicted)[keep] > 0.5
    q = Quality(
        tp=int(np.sum(labels & predicted)),
        fp=int(np.sum(~labels & predicted)),
        fn=int(np.sum(labels & ~predicted)),
        tn=int(np.sum(~labels & ~predicted)),
    )
    for start, end in segments(labels):
        q.segments += 1
        hits = np.flatnonzero(predicted[start:end])
        if hits.size:
            q.delays.append(float(times[start + hits[0]] - times[start]))
        else:
            q.missed_segments += 1
    return q
