"""Non-stationary synthetic suite: online calibration off (before) vs on (after).

    .venv/bin/python bench/shifts.py            # all cases, ~2-4 min on 2 shared cores
    .venv/bin/python bench/shifts.py --cases level_shift short --json out.json
    .venv/bin/python bench/shifts.py --before errors --cases level_shift shift_burst variance_change

Protocol (the issue's): one configuration for every case, `configs/univariate.yaml`
(dense AE, window 24, quantile 0.995 x 1.2, k 2 of 3, resolve 6); train on the first 15 %
of the rows (at most 750; the short series: the first 170 rows, the issue's failing case),
then stream the whole series through the live pipeline (`run_backtest`) and score the
rest. Each case trains one model; *before* and *after* backtest that same model:

  before  `calibration.online.enabled: false`, `alarm.end_at: resolve` (main before this change)
          (`--before errors`: online calibration that re-baselines its error distribution
          only, `calibration.online.rebaseline_scaler: false`)
  after   the new defaults: online per-stream calibration (scaler re-baselined at a regime
          change whose inputs moved), `alarm.end_at: last_hot`

Per case: detected (an alert row inside the labelled stretch), delay (rows from its start
to the first alert row), false-alarm episodes per 10 000 normal rows (alert stretches
that touch no label), the alerting share of normal rows, the p99 of normal-time
scores in threshold units (the comparability bar: [0.5, 2] for every series), the same
over the normal rows whose window holds no labelled row (p99win: a 24-row window holding
a burst is hot for 23 rows after it; on the 250-row series those are 23 of its 70 normal
test rows, so its p99norm is the burst's own score), and the
alarm tail: alerting rows after a labelled stretch ends, in the alert run overlapping it.

Generators (all seeded, 60 s period unless stated; `noise` = N(0, 1) draws):

  level_shift     sin(2 pi i / 144) + 0.2 noise; at 60 % the level steps up by 2 for good
                  (label: the first 60 rows after the step; the rest is the new normal)
  variance_change same base; at 60 % the noise sd goes 0.2 -> 0.8 for good (label: 60 rows)
  trend_change    same base; at 60 % a slope of 0.004 per row starts (label: 300 rows)
  daily           10-min period, 30 days: a day/night profile (high 08:00-18:00) + 0.1 noise;
                  on day 25 the night from 00:00 to 06:00 runs the daytime level (label)
                  while every value stays inside the normal range
  jitter_gaps     sin + 0.2 noise sampled at 60 s +- 30 % jitter with 10 gaps of 5-20
                  periods (`stream.alignment: interpolate`, period auto); a +3 burst of 15
                  rows at 70 % (label)
  short           250 rows of sin + 0.2 noise (train 170), a +2.5 burst of 10 rows at row 200
  short_long      1200 rows of the same (train 180: 15 %, the issue's 169/186-row cases), +2.5
                  bursts of 10 rows at rows 400 and 900
  excursion       same base; at 60 % the noise sd goes 0.2 -> ~0.63 for 400 rows, then back
                  (label: the 400 rows): a long fault that ends, so a re-baseline inside it
                  meets the old regime again
  level_excursion same base; the level steps up by 1.5 for 400 rows, then back (label: the 400)
  shift_burst     level_shift, then a +1.5 burst of 15 rows at 85 % (label: both stretches):
                  sensitivity in the new regime
  variance_burst  variance_change, then the same burst at 85 %
  random_walk, square, heavy_tail, sawtooth  comparability-only series without labels:
                  a random walk (sd 0.05 steps), a square wave (period 50 rows) + 0.1 noise,
                  Student-t(2) noise, a sawtooth (period 97 rows) + 0.05 noise
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import nab  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from nab import segments  # noqa: E402

from monitor.app.backtest import run_backtest  # noqa: E402
from monitor.app.training import StreamData, train_bundle  # noqa: E402
from monitor.core.config import Config, load_config  # noqa: E402
from monitor.core.model.bundle import load_bundle  # noqa: E402
from monitor.core.scoring_model import ScoringModel  # noqa: E402

START = 1_700_006_400.0  # a UTC midnight
Series = tuple[np.ndarray, np.ndarray, np.ndarray]  # times, values, labels


def _base(n: int, rng: np.random.Generator, sd: float = 0.2) -> np.ndarray:
    return np.sin(2 * np.pi * np.arange(n) / 144.0) + sd * rng.standard_normal(n)


def _grid(n: int, period: float = 60.0) -> np.ndarray:
    return START + period * np.arange(n, dtype=np.float64)


def level_shift(seed: int, n: int = 4000) -> Series:
    rng = np.random.default_rng(seed)
    v, lab, s = _base(n, rng), np.zeros(n), int(0.6 * n)
    v[s:] += 2.0
    lab[s : s + 60] = 1
    return _grid(n), v, lab


def variance_change(seed: int, n: int = 4000) -> Series:
    rng = np.random.default_rng(seed)
    v, lab, s = _base(n, rng), np.zeros(n), int(0.6 * n)
    v[s:] = np.sin(2 * np.pi * np.arange(s, n) / 144.0) + 0.8 * rng.standard_normal(n - s)
    lab[s : s + 60] = 1
    return _grid(n), v, lab


def trend_change(seed: int, n: int = 4000) -> Series:
    rng = np.random.default_rng(seed)
    v, lab, s = _base(n, rng), np.zeros(n), int(0.6 * n)
    v[s:] += 0.004 * np.arange(n - s)
    lab[s : s + 300] = 1
    return _grid(n), v, lab


def daily(seed: int, days: int = 30) -> Series:
    rng = np.random.default_rng(seed)
    per_day = 144
    n = days * per_day
    t = _grid(n, 600.0)
    hour = ((t - START) % 86400.0) / 3600.0
    day = (hour >= 8) & (hour < 18)
    v = np.where(day, 1.0, 0.0) + 0.1 * rng.standard_normal(n)
    lab = np.zeros(n)
    a = 25 * per_day
    b = a + 36  # 00:00-06:00 of day 25
    v[a:b] = 1.0 + 0.1 * rng.standard_normal(b - a)
    lab[a:b] = 1
    return t, v, lab


def jitter_gaps(seed: int, n: int = 4000) -> Series:
    rng = np.random.default_rng(seed)
    t = _grid(n) + rng.uniform(-18.0, 18.0, n)
    keep = np.ones(n, dtype=bool)
    for g in rng.integers(200, n - 200, size=10):
        keep[g : g + int(rng.integers(5, 21))] = False
    v, lab, s = _base(n, rng), np.zeros(n), int(0.7 * n)
    keep[s - 30 : s + 45] = True  # no gap over the fault
    v[s : s + 15] += 3.0
    lab[s : s + 15] = 1
    return t[keep], v[keep], lab[keep]


def short(seed: int, n: int = 250) -> Series:
    rng = np.random.default_rng(seed)
    v, lab = _base(n, rng), np.zeros(n)
    v[200:210] += 2.5
    lab[200:210] = 1
    return _grid(n), v, lab


def short_long(seed: int, n: int = 1200) -> Series:
    rng = np.random.default_rng(seed)
    v, lab = _base(n, rng), np.zeros(n)
    for a in (400, 900):
        v[a : a + 10] += 2.5
        lab[a : a + 10] = 1
    return _grid(n), v, lab


def excursion(seed: int, n: int = 4000) -> Series:
    """A long temporary fault: the noise sd goes 0.2 -> 0.8 for 400 rows, then back."""
    rng = np.random.default_rng(seed)
    v, lab, s = _base(n, rng), np.zeros(n), int(0.6 * n)
    v[s : s + 400] += 0.6 * rng.standard_normal(400)
    lab[s : s + 400] = 1
    return _grid(n), v, lab


def level_excursion(seed: int, n: int = 4000) -> Series:
    """The level steps up by 1.5 for 400 rows, then back."""
    rng = np.random.default_rng(seed)
    v, lab, s = _base(n, rng), np.zeros(n), int(0.6 * n)
    v[s : s + 400] += 1.5
    lab[s : s + 400] = 1
    return _grid(n), v, lab


def _burst(series: Series) -> Series:
    t, v, lab = series
    b = int(0.85 * len(t))
    v[b : b + 15] += 1.5
    lab[b : b + 15] = 1
    return t, v, lab


def shift_burst(seed: int, n: int = 4000) -> Series:
    return _burst(level_shift(seed, n))


def variance_burst(seed: int, n: int = 4000) -> Series:
    return _burst(variance_change(seed, n))


def random_walk(seed: int, n: int = 4000) -> Series:
    rng = np.random.default_rng(seed)
    return _grid(n), np.cumsum(0.05 * rng.standard_normal(n)), np.zeros(n)


def square(seed: int, n: int = 4000) -> Series:
    rng = np.random.default_rng(seed)
    return _grid(n), np.where((np.arange(n) // 25) % 2 == 0, 1.0, -1.0) + 0.1 * rng.standard_normal(n), np.zeros(n)


def heavy_tail(seed: int, n: int = 4000) -> Series:
    rng = np.random.default_rng(seed)
    return _grid(n), rng.standard_t(2, size=n), np.zeros(n)


def sawtooth(seed: int, n: int = 4000) -> Series:
    rng = np.random.default_rng(seed)
    return _grid(n), (np.arange(n) % 97) / 97.0 + 0.05 * rng.standard_normal(n), np.zeros(n)


CASES = {
    "level_shift": level_shift,
    "variance_change": variance_change,
    "trend_change": trend_change,
    "daily": daily,
    "jitter_gaps": jitter_gaps,
    "short": short,
    "short_long": short_long,
    "excursion": excursion,
    "level_excursion": level_excursion,
    "shift_burst": shift_burst,
    "variance_burst": variance_burst,
    "random_walk": random_walk,
    "square": square,
    "heavy_tail": heavy_tail,
    "sawtooth": sawtooth,
}


def variant(cfg: Config, name: str) -> Config:
    """`offline` (online calibration off), `errors` (on, errors re-baselined only), `after`."""
    after = name != "offline"
    online = dataclasses.replace(cfg.calibration.online, enabled=after, rebaseline_scaler=name == "after")
    return dataclasses.replace(
        cfg,
        calibration=dataclasses.replace(cfg.calibration, online=online),
        alarm=dataclasses.replace(cfg.alarm, end_at="last_hot" if after else "resolve"),
    )


def measure(alert: np.ndarray, score: np.ndarray, labels: np.ndarray, test: slice, window: int = 24) -> dict:
    a, s, lab = alert[test].astype(bool), score[test], labels[test].astype(bool)
    normal = ~lab
    # rows whose window holds a labelled row (the w - 1 rows after each labelled stretch)
    # are not normal-time scores: a window holding a burst is hot (p99win leaves them out)
    held = np.convolve(labels.astype(float), np.ones(window))[: len(labels)][test] > 0
    fa = [(i, j) for i, j in segments(a) if not lab[i:j].any()]
    out: dict = {
        "fa_per_10k": 1e4 * len(fa) / max(int(normal.sum()), 1),
        "fa_rows_pct": 100.0 * float(a[normal].mean()) if normal.any() else 0.0,
        "p99_normal": float(np.nanquantile(s[normal], 0.99)) if normal.any() else float("nan"),
        "p99_window_normal": float(np.nanquantile(s[~held], 0.99)) if (~held).any() else float("nan"),
    }
    # alarm tail: alerting rows after a labelled stretch ends, in the alert run that
    # overlaps it (a window of w rows stays hot up to w - 1 rows after a short burst)
    tail = 0
    for i, j in segments(a):
        if lab[i:j].any():
            last = i + int(np.flatnonzero(lab[i:j])[-1])
            tail += j - 1 - last
    out["tail_rows"] = tail
    out["nab"] = nab.scores(a, lab)  # (S, S_null, S_perfect), bench/nab.py
    # the same with NAB's own windows (from the onsets over the whole series, then the test rows)
    out["nab_w"] = nab.scores(a, nab.nab_windows(labels)[test])
    if lab.any():
        first = int(np.flatnonzero(lab)[0])
        hits = np.flatnonzero(a & lab)
        out["detected"] = bool(hits.size)
        out["delay_rows"] = int(hits[0] - first) if hits.size else None
        out["segments_hit"] = [bool(a[i:j].any()) for i, j in segments(lab)]  # each labelled stretch
    return out


def run_case(name: str, seed: int, before: str = "offline") -> dict:
    base = load_config(ROOT / "configs" / "univariate.yaml", environ={})
    if name == "jitter_gaps":
        base = dataclasses.replace(base, stream=dataclasses.replace(base.stream, alignment="interpolate"))
    t, v, lab = CASES[name](seed)
    n = len(t)
    train = 170 if name == "short" else min(int(0.15 * n), 750)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        sd = StreamData(base.data.stream, ["value"], t[:train], v[:train, None])
        outcome = train_bundle([sd], variant(base, "offline"), Path(tmp), write_plots=False)
        model = ScoringModel.from_bundle(load_bundle(outcome.bundle_path))
    row: dict = {"case": name, "rows": n, "train_rows": train, "train_s": time.perf_counter() - started}
    for label, name in (("before", before), ("after", "after")):
        res = run_backtest(variant(base, name), t, v[:, None], ["value"], model, labels=lab, train_rows=train)
        row[label] = measure(res.alert, res.score, lab, slice(train, n), base.model.window_size)
        row[label]["regime_changes"] = sum(1 for a in res.alerts if a.kind == "regime_change")
    # the reference "plain windowed-statistics detector": rolling z-score of the value
    row["zref"] = measure(nab.rolling_z(v), np.zeros(n), lab, slice(train, n), base.model.window_size)
    return row


def fmt(m: dict) -> str:
    det = "" if "detected" not in m else "".join("y" if h else "n" for h in m["segments_hit"])
    delay = "" if m.get("delay_rows") is None else str(m["delay_rows"])
    tail = "" if "detected" not in m else str(m["tail_rows"])
    rc = m.get("regime_changes", "")
    scores = [nab.normalized(*m[k]) if k in m else float("nan") for k in ("nab", "nab_w")]
    shown = ["" if np.isnan(x) else f"{x:.0f}" for x in scores]
    return (
        f"{det:>3} {delay:>5} {m['fa_per_10k']:8.1f} {m['fa_rows_pct']:7.1f} {m['p99_normal']:8.2f} "
        f"{m['p99_window_normal']:7.2f} {tail:>4} {rc:>2} {shown[0]:>5} {shown[1]:>5}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--before", choices=["offline", "errors"], default="offline")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print(
        f"# .venv/bin/python bench/shifts.py --seed {args.seed} --before {args.before} --cases {' '.join(args.cases)}"
    )
    head = "det delay  FA/10k  FArow%  p99norm  p99win tail rc   NAB  NABw"
    print(f"{'case':16s} {'rows':>5} | before: {head} | after: {head}")
    rows = []
    for name in args.cases:
        row = run_case(name, args.seed, args.before)
        rows.append(row)
        print(f"{name:16s} {row['rows']:5d} | before: {fmt(row['before'])} | after:  {fmt(row['after'])}", flush=True)
    p99 = [r["after"]["p99_normal"] for r in rows]
    inside = all(0.5 <= p <= 2.0 for p in p99)
    print(
        f"\ncomparability (after): p99 of normal scores in [{min(p99):.2f}, {max(p99):.2f}] -> "
        f"{'all in [0.5, 2]' if inside else 'NOT all in [0.5, 2]'}"
    )
    before = [r["before"]["p99_normal"] for r in rows]
    print(f"comparability (before): [{min(before):.2f}, {max(before):.2f}]")
    win = [r["after"]["p99_window_normal"] for r in rows]
    print(f"comparability (after, windows holding no labelled row): [{min(win):.2f}, {max(win):.2f}]")
    for key, what in (("nab", "the labelled stretches"), ("nab_w", "NAB's windows")):
        for side in ("before", "after", "zref"):
            got = [r[side][key] for r in rows if "detected" in r[side]]
            if not got:
                continue
            zs = " ".join(f"{nab.normalized(*g):.0f}" for g in got)
            pooled = nab.normalized(*np.sum(got, axis=0))
            print(f"NAB standard profile on {what}, pooled ({side}): {pooled:.1f} (per case {zs})")
    print("(0: never alerting; 100: each window's first row only; zref: rolling z-score, 144 rows, |z| > 4)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
