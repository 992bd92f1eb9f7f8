"""NAB-style scoring of binary per-row alerts, and a windowed-statistics reference detector.

The scorer follows the Numenta Anomaly Benchmark's rules (Lavin & Ahmad 2015, "Evaluating
Real-time Anomaly Detection Algorithms", and NAB's `sweeper.py`), standard profile
(A_TP 1, A_FP -0.11, A_FN -1):

* every labelled stretch is one window; the first alerting row inside it earns
  `A_TP * sigma(p)`, where p runs from -1 at the window's first row to 0 after its last
  and sigma(p) = 2 / (1 + exp(5 p)) - 1 (about 0.99 at the start, 0 at the end): early
  detection is worth more; further alerting rows inside the window earn nothing;
* a window without an alerting row costs `A_FN`;
* **every** alerting row outside a window costs `A_FP` times |sigma(p)|, p being its
  distance after the previous window's end in window lengths (an alert right after a
  window costs little, one far from any window the full 0.11); rows before the first
  window cost the full A_FP.

`nab_windows` builds NAB's own windows from the label onsets (10 % of the series split
over its anomalies, centred on each onset): wider than a bench's labelled stretches, and
starting before the onset, as NAB's do.

Normalized score = 100 (S - S_null) / (S_perfect - S_null): the null detector (never
alerts) scores 0, a detector alerting on each window's first row and nowhere else 100.
A negative figure is worse than never alerting.

`rolling_z` is the "plain windowed-statistics detector" of issue 9: alert where the value
lies more than `z` standard deviations from the mean of the previous `history` rows.
"""

from __future__ import annotations

import math

import numpy as np

A_TP, A_FP, A_FN = 1.0, -0.11, -1.0


def _sigma(p: float) -> float:
    return 2.0 / (1.0 + math.exp(5.0 * p)) - 1.0


def segments(labels: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True rows."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], labels.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def nab_windows(labels: np.ndarray) -> np.ndarray:
    """NAB's own window convention over a series (bool per row): each labelled stretch's
    first row is the anomaly, and its window spans 10 % of the series divided by the number
    of anomalies, centred on that row (overlaps merge)."""
    labels = np.asarray(labels, dtype=bool)
    starts = [s for s, _ in segments(labels)]
    out = np.zeros(len(labels), dtype=bool)
    if starts:
        half = max(1, int(0.1 * len(labels) / len(starts)) // 2)
        for s in starts:
            out[max(0, s - half) : s + half] = True
    return out


def raw_score(alert: np.ndarray, labels: np.ndarray) -> float:
    """The standard-profile score of per-row alerts (bool) against labelled windows (bool)."""
    alert = np.asarray(alert, dtype=bool)
    windows = segments(np.asarray(labels, dtype=bool))
    score = 0.0
    prev_end: int | None = None
    prev_len = 1
    w = 0
    for i in np.flatnonzero(alert).tolist():
        while w < len(windows) and windows[w][1] <= i:  # windows wholly before row i
            prev_end, prev_len = windows[w][1], windows[w][1] - windows[w][0]
            w += 1
        if w < len(windows) and windows[w][0] <= i:
            continue  # inside window w: its first hit is counted below
        if prev_end is None:
            score += A_FP
        else:
            score += A_FP * abs(_sigma((i - prev_end + 1) / prev_len))
    for start, end in windows:
        hits = np.flatnonzero(alert[start:end])
        if hits.size:
            score += A_TP * _sigma(-(end - start - int(hits[0])) / (end - start))
        else:
            score += A_FN
    return score


def scores(alert: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    """(S, S_null, S_perfect) of one series: sum them over series to pool a suite."""
    labels = np.asarray(labels, dtype=bool)
    windows = segments(labels)
    perfect = np.zeros(len(labels), dtype=bool)
    perfect[[s for s, _ in windows]] = True
    return raw_score(alert, labels), A_FN * len(windows), raw_score(perfect, labels)


def normalized(s: float, s_null: float, s_perfect: float) -> float:
    """100 (S - S_null) / (S_perfect - S_null); NaN without labelled windows."""
    return 100.0 * (s - s_null) / (s_perfect - s_null) if s_perfect > s_null else float("nan")


def rolling_z(values: np.ndarray, history: int = 144, z: float = 4.0) -> np.ndarray:
    """Per row: |value - mean(previous `history` rows)| > z * their std (False while
    fewer rows exist). NaN values never alert."""
    v = np.asarray(values, dtype=np.float64)
    out = np.zeros(len(v), dtype=bool)
    if len(v) <= history:
        return out
    c1 = np.concatenate([[0.0], np.cumsum(np.nan_to_num(v))])
    c2 = np.concatenate([[0.0], np.cumsum(np.nan_to_num(v) ** 2)])
    idx = np.arange(history, len(v))
    mean = (c1[idx] - c1[idx - history]) / history
    var = np.maximum((c2[idx] - c2[idx - history]) / history - mean**2, 1e-12)
    with np.errstate(invalid="ignore"):
        out[history:] = np.abs(v[history:] - mean) > z * np.sqrt(var)
    return out
