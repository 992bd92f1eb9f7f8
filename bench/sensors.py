"""Sensor health on the synthetic pump: stuck-sensor detection delay, false sensor alarms, cost.

Limits are learned (`learn_limits`) on 3000 clean rows (seed 1). Then, through the live
`Pipeline` (FrameBlocks of 50 rows, a flush after each, a stand-in scorer: the sensor
stage is what is measured):

  delay   per seed and channel, the channel freezes at its value at a random row after
          row 500; samples (1 Hz) from the freeze to the stuck alert's start. Median and
          max over `--seeds` x 5 channels; "missed" counts freezes never reported.
  false   sensor alerts (firing) per 10 000 rows of clean data, `--clean-rows` rows per seed.
  cost    rows/s through the pipeline with the sensor stage, as a ratio to the same run
          without it (median of 5 repeats); then the same with a real model trained in
          this run (dense, W=16, the tests' small model), on clean rows and on rows with
          one channel stuck from the start (masked scoring at work on every window).

Two configurations in the same invocation: "learned" (a bundle with sensor_limits.json:
noise floor, ranges) and the baseline "identical only" (an old bundle: no learned limits,
stuck = `identical_samples` equal values in a row).

    .venv/bin/python bench/sensors.py
    .venv/bin/python bench/sensors.py --seeds 20 --clean-rows 50000
    .venv/bin/python bench/sensors.py --no-model    # skip the real-model cost (no torch)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from monitor.core.config import AlarmConfig, SensorsConfig, StreamConfig  # noqa: E402
from monitor.core.pipeline import Pipeline  # noqa: E402
from monitor.core.scoring_model import ScoringModel  # noqa: E402
from monitor.core.sensor_health import SensorLimits, learn_limits  # noqa: E402
from monitor.core.synthetic import CHANNELS, pump  # noqa: E402
from monitor.core.types import Alert, FrameBlock  # noqa: E402

STREAM = "site1/pump1"
CHUNK = 50


class _ZeroScorer:
    def errors(self, x):
        b, _, c = x.shape
        return np.zeros(b, np.float32), np.zeros((b, c), np.float32), np.zeros((b, c), np.float32)


def model(limits: SensorLimits | None) -> ScoringModel:
    c = len(CHANNELS)
    return ScoringModel(
        "bench", list(CHANNELS), 1.0, 16, 1, [], np.zeros(c), np.ones(c), 1e9, _ZeroScorer(), sensor_limits=limits
    )


def run(
    limits: SensorLimits | None,
    sensors: SensorsConfig | None,
    t: np.ndarray,
    v: np.ndarray,
    scoring: ScoringModel | None = None,
) -> list[Alert]:
    m = scoring if scoring is not None else model(limits)
    pipe = Pipeline(m, StreamConfig(period_seconds=1.0), AlarmConfig(), sensors=sensors)
    alerts: list[Alert] = []
    names = tuple(CHANNELS)
    for i in range(0, len(t), CHUNK):
        pipe.push_batch([FrameBlock(STREAM, names, t[i : i + CHUNK], v[i : i + CHUNK])])
        alerts += pipe.flush()[1]
    return [a for a in alerts if a.kind == "sensor"]


def delays(limits: SensorLimits | None, cfg: SensorsConfig, seeds: int) -> tuple[list[float], int]:
    out: list[float] = []
    missed = 0
    for seed in range(seeds):
        rng = np.random.default_rng(100 + seed)
        t, v, _ = pump(2000, seed=100 + seed)
        for c, name in enumerate(CHANNELS):
            s = int(rng.integers(500, 1500))
            w = v.copy()
            w[s:, c] = w[s, c]
            hits = [
                a for a in run(limits, cfg, t, w) if a.state == "firing" and a.cause == "stuck" and a.channel == name
            ]
            if hits:
                out.append(hits[0].started_at - t[s])
            else:
                missed += 1
    return out, missed


def false_alarms(limits: SensorLimits | None, cfg: SensorsConfig, seeds: int, rows: int) -> tuple[int, int]:
    n = total = 0
    for seed in range(seeds):
        t, v, _ = pump(rows, seed=500 + seed)
        n += sum(a.state == "firing" for a in run(limits, cfg, t, v))
        total += rows
    return n, total


def throughput(
    limits: SensorLimits | None,
    cfg: SensorsConfig | None,
    rows: int,
    scoring: ScoringModel | None = None,
    stuck: bool = False,
) -> float:
    t, v, _ = pump(rows, seed=900)
    if stuck:
        v[:, 1] = v[0, 1]  # pressure frozen from the first row: masked on (nearly) every window
    times = []
    for _ in range(5):
        started = time.perf_counter()
        run(limits, cfg, t, v, scoring)
        times.append(time.perf_counter() - started)
    return rows / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--clean-rows", type=int, default=20_000)
    ap.add_argument("--no-model", action="store_true", help="skip the cost with a real model")
    args = ap.parse_args()
    cfg = SensorsConfig()
    t, v, _ = pump(3000, seed=1)
    limits = learn_limits([(t, v, np.ones(len(t), dtype=bool))], CHANNELS, cfg)
    print(f"{'config':<16} {'delay median':>12} {'delay max':>9} {'missed':>7} {'false / 10k rows':>17}")
    for name, lim in (("learned", limits), ("identical only", None)):
        d, missed = delays(lim, cfg, args.seeds)
        n, total = false_alarms(lim, cfg, args.seeds, args.clean_rows)
        med = f"{statistics.median(d):.0f}" if d else "-"
        mx = f"{max(d):.0f}" if d else "-"
        print(f"{name:<16} {med:>12} {mx:>9} {missed:>4}/{len(d) + missed:<3} {n * 10_000 / total:>16.2f}")
    base = throughput(limits, None, 20_000)
    with_sensors = throughput(limits, cfg, 20_000)
    print(
        f"pipeline rows/s: {base:,.0f} without the sensor stage, {with_sensors:,.0f} with it "
        f"(ratio {with_sensors / base:.2f})"
    )
    if not args.no_model:
        real = trained_model()
        rows = 5_000
        base = throughput(None, None, rows, real)
        on = throughput(None, cfg, rows, real)
        masked = throughput(None, cfg, rows, real, stuck=True)
        print(
            f"real model rows/s: {base:,.0f} without the sensor stage, {on:,.0f} with it (ratio {on / base:.2f}), "
            f"{masked:,.0f} with one channel stuck and masked (ratio {masked / base:.2f})"
        )


def trained_model() -> ScoringModel:
    """The tests' small model (dense, W=16, 15 epochs), trained here on 2400 clean rows."""
    import tempfile  # noqa: PLC0415

    import torch  # noqa: PLC0415
    import yaml  # noqa: PLC0415

    from monitor.app.training import StreamData, train_bundle  # noqa: PLC0415
    from monitor.core.config import load_config  # noqa: PLC0415
    from monitor.core.model.bundle import load_bundle  # noqa: PLC0415

    torch.set_num_threads(1)
    raw = {
        "stream": {"period_seconds": 1.0, "max_gap_seconds": 5},
        "model": {
            "architecture": "dense",
            "window_size": 16,
            "hidden": [32],
            "code_size": 6,
            "epochs": 15,
            "patience": 4,
            "seed": 1,
        },
        "calibration": {"method": "quantile", "quantile": 0.999, "factor": 1.5, "holdout_fraction": 0.25},
    }
    t, v, _ = pump(2400, seed=11, steps_per_hour=0)
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "c.yaml").write_text(yaml.safe_dump(raw))
        cfg = load_config(Path(d) / "c.yaml", environ={})
        out = train_bundle([StreamData(STREAM, list(CHANNELS), t, v)], cfg, Path(d), write_plots=False)
        return ScoringModel.from_bundle(load_bundle(out.bundle_path))


if __name__ == "__main__":
    main()
