"""`monitor_model_drift` (PSI of the newest raw errors vs the calibration deciles) on
normal and on genuinely drifted synthetic feeds, through the live scoring path.

A small model is trained as the daemon tests train theirs (pump seed 11, 2 400 rows at
1 Hz, dense DAE window 16); then feeds of other seeds are scored by the `Runner` (the
daemon's pipeline) and a `DriftTracker` is read after every batch of 256 rows, as the
daemon exports it. Printed per feed: the tracker's value at 215 windows (what the old
200-window minimum let it report) and, once the ring holds its 2 048 windows, the median
and maximum over the feed. Normal feeds must stay under the `MonitorModelDrift` level
(0.25); drifted ones (a sensor bias, a gain change, more noise) should exceed it.

    OMP_NUM_THREADS=1 .venv/bin/python bench/drift_psi.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor.app.training import StreamData, train_bundle  # noqa: E402
from monitor.core.config import load_config  # noqa: E402
from monitor.core.drift import DEFAULT_WINDOW, DriftTracker  # noqa: E402
from monitor.core.fleet import Fleet  # noqa: E402
from monitor.core.model.bundle import load_bundle  # noqa: E402
from monitor.core.pipeline import ScoringModel  # noqa: E402
from monitor.core.runner import Runner  # noqa: E402
from monitor.core.synthetic import CHANNELS, pump  # noqa: E402

CONFIG = """
stream: {period_seconds: 1.0, max_gap_seconds: 5}
model: {architecture: dense, window_size: 16, hidden: [32], code_size: 6, epochs: 15, patience: 4, seed: 1}
calibration: {method: quantile, quantile: 0.999, factor: 1.5, holdout_fraction: 0.25}
"""
LEVEL = 0.25  # deploy/prometheus/monitor.rules.yml MonitorModelDrift


def feeds(start: float, steps: float) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Normal feeds of the training regime (`steps` load steps per hour), then drifted ones."""
    out = []
    for seed in (21, 22, 23, 24):
        t, v, _ = pump(6000, seed=seed, steps_per_hour=steps, start_time=start)
        out.append((f"normal seed {seed}", t, v))
    t, v, _ = pump(6000, seed=31, steps_per_hour=steps, start_time=start)
    noise = np.random.default_rng(5).normal(0, 0.01, len(t))
    for name, col, change in (
        ("flow sensor bias +3 %", 0, lambda x: x * 1.03),
        ("pressure gain x1.05", 1, lambda x: x * 1.05),
        ("vibration noise x3", 3, lambda x: x + noise),
    ):
        d = v.copy()
        d[:, col] = change(v[:, col])
        out.append((f"drifted: {name}", t, d))
    if steps == 0:  # load steps the model never saw in training: a regime change reads as drift
        t, v, _ = pump(6000, seed=21, steps_per_hour=4, start_time=start)
        out.append(("unseen regime: 4 load steps/h", t, v))
    return out


def drift_of(model, cfg, edges, ft: np.ndarray, fv: np.ndarray) -> tuple[float, float, float]:
    """(value at 215 windows, median and max once the ring is full) over one feed."""
    early = DriftTracker(edges, min_windows=1)
    full = DriftTracker(edges)
    at215: list[float] = []
    values: list[float] = []

    def scored(r) -> None:
        early.update(r.scores.raw)
        full.update(r.scores.raw)
        if not at215 and early.filled >= 215:
            at215.append(early.value())

    runner = Runner(Fleet.single(model, cfg.fleet()[0]), on_scores=scored)
    for i in range(len(ft)):
        runner.push_row("site1/pump1", float(ft[i]), fv[i])
        if (i + 1) % 256 == 0:
            runner.flush()
            if np.isfinite(full.value()):
                values.append(full.value())
    runner.finish()
    return at215[0], float(np.median(values)), float(np.max(values))


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        cfg_path = Path(tmp) / "monitor.yaml"
        cfg_path.write_text(CONFIG)
        cfg = load_config(cfg_path, environ={})
        print("command: OMP_NUM_THREADS=1 .venv/bin/python bench/drift_psi.py")
        print(f"ring {DEFAULT_WINDOW} windows, rule level {LEVEL}")
        print(f"{'model / feed':46s} {'at 215':>7s} {'full med':>8s} {'full max':>8s}")
        for steps, rows in ((0.0, 2400), (4.0, 4 * 3600)):
            t, v, _ = pump(rows, seed=11, steps_per_hour=steps)
            data = [StreamData("site1/pump1", list(CHANNELS), t, v)]
            out = train_bundle(data, cfg, Path(tmp) / f"m{steps:g}", write_plots=False)
            model = ScoringModel.from_bundle(load_bundle(out.bundle_path))
            edges = json.loads((out.bundle_path / "manifest.json").read_text())["threshold"]["error_quantiles"]
            print(f"model trained on {rows} rows with {steps:g} load steps/h:")
            for name, ft, fv in feeds(float(t[-1] + 100), steps):
                at215, med, top = drift_of(model, cfg, edges, ft, fv)
                print(f"  {name:44s} {at215:7.3f} {med:8.3f} {top:8.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
