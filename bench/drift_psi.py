"""`monitor_model_drift` on normal and on genuinely drifted synthetic feeds, through the
live scoring path: the old statistic (the newest 2 048 raw errors against the hold-out's
deciles) beside the current one (`DriftTracker`: per-chunk counts over 4.6-5.1 h of
windows against the deciles of the whole training span; decision 0021, second addendum).

Three small models are trained as the daemon tests train theirs (dense DAE window 16, 1 Hz):
  stationary   pump seed 11, 2 400 rows, no load steps;
  wandering    8 h with 4 load steps/h, the walk reflected at +-0.16 (the regime wanders
               on a quarter-hour scale but keeps visiting the same levels);
  random walk  4 h with 4 load steps/h, unbounded (the regime goes where training never was).
Feeds of other seeds of the model's own regime (20 000 rows) are scored by the `Runner`
(the daemon's pipeline); every 256 rows both statistics are read, as the daemon exports
them. Printed per feed: median and maximum over the feed of each (old: from 2 048 windows
on; new: from `MIN_WINDOWS` on), and the new statistic with the hold-out deciles (what an
older bundle gets). Then onset feeds: 16 384 normal rows, then the change; the minutes
(at 1 Hz) from the onset until each statistic first exceeds the rule's level.
Normal feeds must stay under the `MonitorModelDrift` level (0.25); drifted ones
(a sensor bias, a gain change, more noise) should exceed it.

    OMP_NUM_THREADS=1 .venv/bin/python bench/drift_psi.py
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor.app.training import StreamData, train_bundle  # noqa: E402
from monitor.core.config import load_config  # noqa: E402
from monitor.core.drift import HORIZON, MIN_WINDOWS, psi, tracker_for  # noqa: E402
from monitor.core.fleet import Fleet  # noqa: E402
from monitor.core.model.bundle import load_bundle  # noqa: E402
from monitor.core.runner import Runner  # noqa: E402
from monitor.core.scoring_model import ScoringModel  # noqa: E402
from monitor.core.synthetic import CHANNELS, pump  # noqa: E402

CONFIG = """
stream: {period_seconds: 1.0, max_gap_seconds: 5}
model: {architecture: dense, window_size: 16, hidden: [32], code_size: 6, epochs: 15, patience: 4, seed: 1}
calibration: {method: quantile, quantile: 0.999, factor: 1.5, holdout_fraction: 0.25}
"""
LEVEL = 0.25  # deploy/prometheus/rules/monitor.rules.yml MonitorModelDrift
OLD_RING = 2048  # the statistic before: the newest 2 048 errors, NaN until that many
FEED_ROWS = 20_000
ONSET = HORIZON  # onset feeds: this many normal rows first
ONSET_ROWS = ONSET + 14_000
MODELS = (  # name, training rows, load steps/h, step bound
    ("stationary (2 400 rows, no load steps)", 2400, 0.0, None),
    ("wandering (8 h, 4 load steps/h, walk within +-0.16)", 8 * 3600, 4.0, 0.16),
    ("random walk (4 h, 4 load steps/h, unbounded)", 4 * 3600, 4.0, None),
)
CHANGES: tuple[tuple[str, int, Callable[[np.ndarray, np.ndarray], np.ndarray]], ...] = (
    ("flow sensor bias +3 %", 0, lambda x, n: x * 1.03),
    ("pressure gain x1.05", 1, lambda x, n: x * 1.05),
    ("vibration noise x3", 3, lambda x, n: x + n),
)


def drift_of(model, cfg, refs, ft: np.ndarray, fv: np.ndarray) -> dict[str, list[float]]:
    """Per 256 rows: the old statistic, the new one, the new one on the hold-out deciles."""
    hold, span = refs
    errors: list[np.ndarray] = []
    new, new_hold = tracker_for(span, 1.0), tracker_for(hold, 1.0)  # the daemon's, at 1 Hz
    out: dict[str, list[float]] = {"old": [], "new": [], "new_hold": [], "errors": []}

    def scored(r) -> None:
        errors.append(np.asarray(r.scores.raw, dtype=np.float64))
        out["errors"].extend(errors[-1].tolist())
        new.add(r.scores.raw)  # as the daemon: queued on the scoring path, binned at export
        new_hold.add(r.scores.raw)

    runner = Runner(Fleet.single(model, cfg.fleet()[0]), on_scores=scored)
    ring = np.empty(0)
    for i in range(len(ft)):
        runner.push_row("site1/pump1", float(ft[i]), fv[i])
        if (i + 1) % 256 == 0:
            runner.flush()
            if errors:
                ring = np.concatenate([ring, *errors])[-OLD_RING:]
                errors.clear()
            shares = np.bincount(np.searchsorted(hold, ring, side="right"), minlength=len(hold) + 1) / max(1, ring.size)
            out["old"].append(
                psi(np.full(len(hold) + 1, 1 / (len(hold) + 1)), shares) if ring.size >= OLD_RING else math.nan
            )
            out["new"].append(new.value())
            out["new_hold"].append(new_hold.value())
    runner.finish()
    return out


def med_max(values: list[float]) -> str:
    v = np.asarray(values)
    v = v[np.isfinite(v)]
    return f"{np.median(v):6.3f} {np.max(v):6.3f}" if v.size else f"{'NaN':>6s} {'NaN':>6s}"


def minutes_to_exceed(values: list[float]) -> str:
    at = ONSET // 256  # the first reading after the onset
    for j, x in enumerate(values[at:]):
        if np.isfinite(x) and x > LEVEL:
            return f"{((at + j + 1) * 256 - ONSET) / 60:6.0f}"
    return f"{'never':>6s}"


def run_model(cfg, tmp: Path, m: int, title: str, rows: int, steps: float, bound: float | None) -> None:
    t, v, _ = pump(rows, seed=11, steps_per_hour=steps, step_bound=bound)
    data = [StreamData("site1/pump1", list(CHANNELS), t, v)]
    out = train_bundle(data, cfg, tmp / f"m{m}", write_plots=False)
    model = ScoringModel.from_bundle(load_bundle(out.bundle_path))
    th = json.loads((out.bundle_path / "manifest.json").read_text())["threshold"]
    refs = (th["error_quantiles"], th["drift_quantiles"])
    print(f"model {title}:")
    start = float(t[-1] + 100)

    def feed(seed: int, n: int, s: float = steps) -> tuple[np.ndarray, np.ndarray]:
        ft, fv, _ = pump(n, seed=seed, steps_per_hour=s, step_bound=bound, start_time=start)
        return ft, fv

    def show(name: str, ft: np.ndarray, fv: np.ndarray) -> None:
        r = drift_of(model, cfg, refs, ft, fv)
        hold_max = med_max(r["new_hold"]).split()[1]
        above = 100.0 * float(np.mean(np.asarray(r["errors"]) > th["threshold"]))
        print(f"  {name:44s} {med_max(r['old'])} {med_max(r['new'])} {hold_max:>8s} {above:8.2f}", flush=True)

    for seed in (21, 22, 23, 24):
        show(f"normal seed {seed}", *feed(seed, FEED_ROWS))
    ft, fv = feed(31, FEED_ROWS)
    noise = np.random.default_rng(5).normal(0, 0.01, len(ft))
    for name, col, change in CHANGES:
        d = fv.copy()
        d[:, col] = change(fv[:, col], noise)
        show(f"drifted: {name}", ft, d)
    if steps == 0:  # load steps the model never saw in training: a regime change reads as drift
        show("unseen regime: 4 load steps/h", *feed(21, FEED_ROWS, 4.0))
    ft, fv = feed(32, ONSET_ROWS)
    noise = np.random.default_rng(6).normal(0, 0.01, len(ft))
    for name, col, change in CHANGES:
        d = fv.copy()
        d[ONSET:, col] = change(fv[ONSET:, col], noise[ONSET:])
        r = drift_of(model, cfg, refs, ft, d)
        print(
            f"  onset: {name:37s} minutes to > {LEVEL}: old {minutes_to_exceed(r['old'])}, "
            f"new {minutes_to_exceed(r['new'])}",
            flush=True,
        )


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        cfg_path = Path(tmp) / "monitor.yaml"
        cfg_path.write_text(CONFIG)
        cfg = load_config(cfg_path, environ={})
        print("command: OMP_NUM_THREADS=1 .venv/bin/python bench/drift_psi.py")
        print(
            f"old: ring {OLD_RING}, hold-out deciles; new: {HORIZON}+ windows (NaN under {MIN_WINDOWS}), span deciles"
        )
        print(f"rule level {LEVEL}; feeds {FEED_ROWS} rows, onset feeds {ONSET} normal rows then the change")
        print("hold-out max: the new summary on the hold-out deciles; > thr %: windows above the alert threshold")
        print(
            f"{'model / feed':46s} {'old med':>6s} {'max':>6s} {'new med':>6s} {'max':>6s}"
            f" {'hold max':>8s} {'> thr %':>8s}"
        )
        for m, (title, rows, steps, bound) in enumerate(MODELS):
            run_model(cfg, Path(tmp), m, title, rows, steps, bound)
    return 0


if __name__ == "__main__":
    sys.exit(main())
