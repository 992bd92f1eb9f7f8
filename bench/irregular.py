"""Alignment of jittered, gappy feeds: readings lost as `late`, stale frames, fresh scores.

Feeds (documented generator below, seeded): a grid of `--period` seconds, each reading's
timestamp moved by uniform jitter of +-`--jitter` periods, and `--gaps` stretches of
missing readings of 2..20 periods each (some shorter than max_gap, 5 periods, some
longer). `uni`: one channel in wide rows (what `monitor backtest` pushes). `multi`: three
channels, each with its own jitter, as single readings in timestamp order (what MQTT
delivers).

Each feed runs through the live `Pipeline` (window 24, stride 1, the default max_gap and
lateness) with a stand-in scorer (alignment is what is measured, not the model), once
per alignment rule, with the period from `stream.period_seconds: auto` as training
infers it. Reported per run:

  late     readings rejected as `late`
  stale    stale frames emitted
  fresh    share of readings after which the newest scored window ends within one
           period of the reading's timestamp (the reading got a score of its own time)
  period   the inferred period; "before" uses the previous rule (median step)

    .venv/bin/python bench/irregular.py                     # the table in docs/decisions/0006
    .venv/bin/python bench/irregular.py --jitter 0.45 --seeds 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from monitor.core.config import AlarmConfig, StreamConfig  # noqa: E402
from monitor.core.pipeline import Pipeline  # noqa: E402
from monitor.core.scoring_model import ScoringModel  # noqa: E402
from monitor.core.stream.period import infer_period_seconds  # noqa: E402
from monitor.core.types import Reading  # noqa: E402

WINDOW = 24


class _ZeroScorer:
    def errors(self, x):
        b, _, c = x.shape
        return np.zeros(b, np.float32), np.zeros((b, c), np.float32), np.zeros((b, c), np.float32)


def feed_times(rng: np.random.Generator, n: int, period: float, jitter: float, gaps: int, phase: float) -> np.ndarray:
    """`n` grid readings ``(k + phase) period``, jittered, with `gaps` missing stretches of 2..20 periods."""
    k = np.arange(n, dtype=np.float64)
    keep = np.ones(n, dtype=bool)
    for start, length in zip(rng.integers(50, n - 50, gaps), rng.integers(2, 21, gaps), strict=True):
        keep[start : start + length] = False
    t = (28_333_333 + k + phase + rng.uniform(-jitter, jitter, n)) * period
    return np.sort(t[keep])


def _model(channels: list[str], period: float, alignment: str) -> ScoringModel:
    n = len(channels)
    return ScoringModel(
        "bench", channels, period, WINDOW, 1, [], np.zeros(n), np.ones(n), 1.0, _ZeroScorer(), alignment=alignment
    )


def run(readings: list[tuple[float, int, float]], channels: list[str], period: float, alignment: str) -> dict:
    """Push readings one by one (rows: channel -1) and measure; see the module doc."""
    model = _model(channels, period, alignment)
    pipe = Pipeline(model, StreamConfig(channels=channels), AlarmConfig())
    accepted = []
    windows: list[float] = []
    for t, ch, v in readings:
        # ch < 0: a wide row, as `monitor backtest` pushes it; else one MQTT reading
        reason = pipe.push_row("s", t, np.array([v])) if ch < 0 else pipe.push_reading(Reading("s", channels[ch], t, v))
        if reason is None:
            accepted.append(t)
        if pipe.pending >= 256:
            windows.extend(pipe.flush()[0].times)
    pipe.end_of_data()
    windows.extend(pipe.flush()[0].times)
    w = np.asarray(windows, dtype=np.float64)
    a = np.asarray(accepted, dtype=np.float64)
    at = np.clip(np.searchsorted(w, a), 1, max(1, len(w) - 1))
    nearest = np.minimum(np.abs(a - w[at - 1]), np.abs(w[np.minimum(at, len(w) - 1)] - a)) if len(w) else a + np.inf
    c = pipe.counters
    fresh = int((nearest < period).sum())
    return {"late": c["late"], "stale": c["stale_frames"], "fresh": fresh / len(readings), "n": len(readings)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--period", type=float, default=60.0)
    ap.add_argument("--jitter", type=float, default=0.3, help="uniform jitter, +- this share of a period")
    ap.add_argument("--gaps", type=int, default=12)
    ap.add_argument("--n", type=int, default=2300)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    rows: dict[tuple[str, str], list[dict]] = {}
    for seed in range(args.seeds):
        for phase in (0.0, 0.5):
            rng = np.random.default_rng(seed)
            t = feed_times(rng, args.n, args.period, args.jitter, args.gaps, phase)
            uni = [(float(x), -1, float(np.sin(x / 3600.0))) for x in t]
            per_channel = [feed_times(rng, args.n, args.period, args.jitter, args.gaps, phase) for _ in range(3)]
            multi = sorted((float(x), c, float(np.sin(x / 3600.0))) for c, ts in enumerate(per_channel) for x in ts)
            for name, readings, channels, runs in (
                (f"uni {phase:g}", uni, ["v"], [t]),
                (f"multi {phase:g}", multi, ["a", "b", "c"], per_channel),
            ):
                before = float(np.median(np.concatenate([np.diff(r) for r in runs])))
                after = infer_period_seconds(runs)
                for label, period, alignment in (
                    ("before: bucket, median period", before, "bucket"),
                    ("bucket", after, "bucket"),
                    ("nearest", after, "nearest"),
                    ("interpolate", after, "interpolate"),
                ):
                    res = run(readings, channels, period, alignment)
                    res["period"] = period
                    rows.setdefault((name, label), []).append(res)
    print(
        f"period {args.period:g} s, jitter +-{args.jitter:.0%}, {args.gaps} gaps of 2..20 periods, "
        f"{args.seeds} seeds (median)"
    )
    print("feed: uni/multi and the grid phase of the readings (0: on the grid times, 0.5: between them)")
    print(f"{'feed':9} {'alignment':32} {'readings':>8} {'late':>6} {'stale':>6} {'fresh':>7} {'period s':>10}")
    for (name, label), runs_of in rows.items():
        med = {k: statistics.median(r[k] for r in runs_of) for k in ("n", "late", "stale", "fresh", "period")}
        print(
            f"{name:9} {label:32} {med['n']:8.0f} {med['late']:6.0f} {med['stale']:6.0f} "
            f"{med['fresh']:7.1%} {med['period']:10.4g}"
        )


if __name__ == "__main__":
    main()
