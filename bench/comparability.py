"""Comparability bar: p99 of normal-time scores, in threshold units, across very different series.

    .venv/bin/python bench/comparability.py             # 14 series, ~3 min on 2 shared cores
    .venv/bin/python bench/comparability.py --series tiny_gauss spiky --json out.json

The promise (README, issue 9): one alert rule fits every stream, because a score of 1.0
means the same tail probability on every stream. The bar: on every series below, the 99th
percentile of the scores of its normal (here: all) test rows lies within [0.5, 2].

Protocol: `configs/univariate.yaml` as it is (online calibration on, its defaults), one
model per series trained on the first 600 of its 4000 rows (15 %, the `bench/shifts.py`
rule), the whole series streamed through the live pipeline (`run_backtest`), p99 taken
over the 3400 rows after training. *prior* is the same model with online calibration
off (raw error over the offline threshold: what the bar was before issue 9), for contrast;
*errors* is online calibration without the scaler re-baseline (`rebaseline_scaler: false`).

Generators (seeded; 60 s period; `n` = N(0, 1) draws; `s(p)` = sin(2 pi i / p)):

  tiny_gauss     1e-3 * (s(144) + 0.2 n)                     scale 1e-3
  huge_gauss     5e4 + 1e4 * (s(144) + 0.2 n)                scale 1e4 with an offset
  uniform        s(144) + U(-0.5, 0.5)                       light (bounded) noise
  laplace        s(144) + Laplace(0, 0.2)                    exponential tails
  student_t      100 * t(2)                                  heavy tails, no signal
  lognormal      exp(0.5 n) * (2 + s(144))                   multiplicative, skewed
  random_walk    10 * cumsum(0.05 n)                         non-stationary level
  ar1            AR(1), phi 0.97, innovations 0.1            slow, strongly autocorrelated
  spiky          0.1 n + a spike of +-U(2, 4) on 0.2 % of rows   rare isolated spikes
  quantized      round(3 s(144) + 0.3 n)                     integer steps (a coarse ADC)
  square         sign(s(50)) + 0.1 n                         abrupt level flips
  sawtooth       (i mod 97) / 97 + 0.05 n                    ramps and drops
  daily          10-min period: 1.0 08:00-18:00, 0.0 else, + 0.1 n; plus a 1e-2 trend
  on_off         0 (+0.01 n) or 5 + 0.5 n in runs of 20-200 rows (an intermittent machine)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from monitor.app.backtest import run_backtest  # noqa: E402
from monitor.app.training import StreamData, train_bundle  # noqa: E402
from monitor.core.config import Config, load_config  # noqa: E402
from monitor.core.model.bundle import load_bundle  # noqa: E402
from monitor.core.scoring_model import ScoringModel  # noqa: E402

START = 1_700_006_400.0  # a UTC midnight
N = 4000
TRAIN = 600
LOW, HIGH = 0.5, 2.0


def _s(p: float, n: int = N) -> np.ndarray:
    return np.sin(2 * np.pi * np.arange(n) / p)


def _on_off(rng: np.random.Generator) -> np.ndarray:
    v, i, on = np.empty(N), 0, False
    while i < N:
        m = int(rng.integers(20, 201))
        j = min(N, i + m)
        v[i:j] = 5.0 + 0.5 * rng.standard_normal(j - i) if on else 0.01 * rng.standard_normal(j - i)
        i, on = j, not on
    return v


def _spiky(rng: np.random.Generator) -> np.ndarray:
    v = 0.1 * rng.standard_normal(N)
    hit = rng.random(N) < 0.002
    v[hit] += rng.choice([-1.0, 1.0], int(hit.sum())) * rng.uniform(2.0, 4.0, int(hit.sum()))
    return v


def _ar1(rng: np.random.Generator) -> np.ndarray:
    e, v = 0.1 * rng.standard_normal(N), np.zeros(N)
    for i in range(1, N):
        v[i] = 0.97 * v[i - 1] + e[i]
    return v


def _daily(rng: np.random.Generator) -> np.ndarray:
    hour = ((600.0 * np.arange(N)) % 86400.0) / 3600.0
    return np.where((hour >= 8) & (hour < 18), 1.0, 0.0) + 0.1 * rng.standard_normal(N) + 1e-2 * np.arange(N) / 144


SERIES: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "tiny_gauss": lambda r: 1e-3 * (_s(144) + 0.2 * r.standard_normal(N)),
    "huge_gauss": lambda r: 5e4 + 1e4 * (_s(144) + 0.2 * r.standard_normal(N)),
    "uniform": lambda r: _s(144) + r.uniform(-0.5, 0.5, N),
    "laplace": lambda r: _s(144) + r.laplace(0.0, 0.2, N),
    "student_t": lambda r: 100.0 * r.standard_t(2, N),
    "lognormal": lambda r: np.exp(0.5 * r.standard_normal(N)) * (2.0 + _s(144)),
    "random_walk": lambda r: 10.0 * np.cumsum(0.05 * r.standard_normal(N)),
    "ar1": _ar1,
    "spiky": _spiky,
    "quantized": lambda r: np.round(3.0 * _s(144) + 0.3 * r.standard_normal(N)),
    "square": lambda r: np.sign(_s(50) + 1e-9) + 0.1 * r.standard_normal(N),
    "sawtooth": lambda r: (np.arange(N) % 97) / 97.0 + 0.05 * r.standard_normal(N),
    "daily": _daily,
    "on_off": _on_off,
}


def series(name: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(times, values) of one generator."""
    period = 600.0 if name == "daily" else 60.0
    return START + period * np.arange(N, dtype=np.float64), SERIES[name](np.random.default_rng(seed))


def online(cfg: Config, on: bool, scaler: bool = True) -> Config:
    """Online calibration on/off; `scaler`: re-baseline the scaler at regime changes (the default)."""
    oc = dataclasses.replace(cfg.calibration.online, enabled=on, rebaseline_scaler=scaler)
    cal = dataclasses.replace(cfg.calibration, online=oc)
    return dataclasses.replace(cfg, calibration=cal)


def p99_scores(name: str, seed: int, cfg: Config) -> dict:
    """Train on the first TRAIN rows, stream everything; p99 of the test rows' scores."""
    t, v = series(name, seed)
    with tempfile.TemporaryDirectory() as tmp:
        sd = StreamData(cfg.data.stream, ["value"], t[:TRAIN], v[:TRAIN, None])
        outcome = train_bundle([sd], online(cfg, False), Path(tmp), write_plots=False)
        model = ScoringModel.from_bundle(load_bundle(outcome.bundle_path))
    out: dict = {"series": name}
    for label, on, scaler in (("online", True, True), ("errors", True, False), ("prior", False, False)):
        res = run_backtest(online(cfg, on, scaler), t, v[:, None], ["value"], model, train_rows=TRAIN)
        s = np.asarray(res.score[TRAIN:], dtype=np.float64)
        out[label] = float(np.nanquantile(s, 0.99))
        out[f"{label}_alert_pct"] = 100.0 * float(np.mean(np.asarray(res.alert[TRAIN:], dtype=bool)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", nargs="*", default=list(SERIES), choices=list(SERIES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", default=str(ROOT / "configs" / "univariate.yaml"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cfg = load_config(args.config, environ={})
    print(f"# .venv/bin/python bench/comparability.py --seed {args.seed} --series {' '.join(args.series)}")
    print(
        f"{'series':12s} {'p99 online':>10s} {'alert%':>7s} | {'p99 errors':>10s} {'alert%':>7s} | "
        f"{'p99 prior':>10s} {'alert%':>7s}"
    )
    rows = []
    for name in args.series:
        r = p99_scores(name, args.seed, cfg)
        rows.append(r)
        flag = "" if LOW <= r["online"] <= HIGH else "  <- outside"
        print(
            f"{name:12s} {r['online']:10.2f} {r['online_alert_pct']:7.2f} | {r['errors']:10.2f} "
            f"{r['errors_alert_pct']:7.2f} | {r['prior']:10.2f} "
            f"{r['prior_alert_pct']:7.2f}{flag}",
            flush=True,
        )
    on = [r["online"] for r in rows]
    pr = [r["prior"] for r in rows]
    ok = all(LOW <= p <= HIGH for p in on)
    print(f"\nonline: p99 in [{min(on):.2f}, {max(on):.2f}] -> {'all' if ok else 'NOT all'} in [{LOW}, {HIGH}]")
    er = [r["errors"] for r in rows]
    print(f"errors only (rebaseline_scaler: false): p99 in [{min(er):.2f}, {max(er):.2f}]")
    print(f"prior:  p99 in [{min(pr):.2f}, {max(pr):.2f}]")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
