"""A physically plausible synthetic pump, for tests, examples and the demo.

Load follows a slow daily-like rhythm plus occasional set-point steps; flow, pressure,
motor current, vibration and temperature follow the load with their own physics and
noise, so channels are correlated. A fault breaks the relations between channels
without necessarily leaving any single channel's normal range.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from monitor.core.types import FloatArray

CHANNELS = ["flow", "pressure", "current", "vibration", "temperature"]


@dataclass
class Fault:
    start: int  # row index
    end: int  # row index (exclusive)
    kind: str = "cavitation"  # cavitation | bearing | sensor_stuck


def pump(
    n_rows: int,
    *,
    period_seconds: float = 1.0,
    start_time: float = 1_700_000_000.0,
    seed: int = 0,
    faults: list[Fault] | None = None,
    cycle_seconds: float = 300.0,
    steps_per_hour: float = 4.0,
    step_bound: float | None = None,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Return (times (N,), values (N, 5) in CHANNELS order, labels (N,) 0/1).

    The load takes `steps_per_hour` steps of +-0.08 at random times: a random walk, so
    the regime wanders without bound. With `step_bound`, a step that would take the walk
    beyond +-`step_bound` goes the other way (a reflected walk: the regime wanders, but
    over many steps it keeps visiting the same levels, a stationary slow process)."""
    rng = np.random.default_rng(seed)
    t = start_time + period_seconds * np.arange(n_rows, dtype=np.float64)
    phase = 2 * np.pi * (t - start_time) / cycle_seconds
    steps = np.zeros(n_rows)
    n_steps = int(steps_per_hour * n_rows * period_seconds / 3600.0)
    if step_bound is None:
        for s in rng.integers(0, max(n_rows, 1), size=n_steps):
            steps[s:] += rng.choice([-0.08, 0.08])
    else:
        level = 0.0
        for s in np.sort(rng.integers(0, max(n_rows, 1), size=n_steps)):
            step = float(rng.choice([-0.08, 0.08]))
            if abs(level + step) > step_bound + 1e-9:
                step = -step
            level += step
            steps[s:] += step
    load = np.clip(0.7 + 0.2 * np.sin(phase) + 0.05 * np.sin(3.1 * phase + 1.0) + steps, 0.3, 1.0)
    flow = 120.0 * load + rng.normal(0, 1.0, n_rows)
    pressure = 2.0 + 3.0 * load**2 + rng.normal(0, 0.05, n_rows)
    current = 1.0 + 4.0 * load + rng.normal(0, 0.05, n_rows)
    vibration = 0.20 + 0.10 * load + rng.normal(0, 0.005, n_rows)
    temperature = np.empty(n_rows)
    temp = 40.0 + 20.0 * load[0]
    for i in range(n_rows):  # first-order lag towards the load's equilibrium temperature
        temp += (40.0 + 20.0 * load[i] - temp) * (period_seconds / 120.0)
        temperature[i] = temp
    temperature += rng.normal(0, 0.05, n_rows)
    values = np.column_stack([flow, pressure, current, vibration, temperature])
    labels = np.zeros(n_rows)
    for f in faults or []:
        sl = slice(f.start, f.end)
        ramp = np.minimum(1.0, np.arange(f.end - f.start) / max(1.0, 20.0 / period_seconds))
        if f.kind == "cavitation":  # flow and pressure collapse while current stays
            values[sl, 0] -= 25.0 * ramp
            values[sl, 1] -= 0.8 * ramp
            values[sl, 3] += 0.05 * ramp * (1 + rng.normal(0, 0.3, f.end - f.start))
        elif f.kind == "bearing":  # vibration and temperature rise at constant load
            values[sl, 3] += 0.08 * ramp
            values[sl, 4] += 6.0 * ramp
        elif f.kind == "sensor_stuck":  # pressure reading freezes
            values[sl, 1] = values[f.start, 1]
        else:
            raise ValueError(f"unknown fault kind {f.kind!r}")
        labels[sl] = 1.0
    return t, values, labels


def write_csv(
    path: str | os.PathLike[str],
    times: FloatArray,
    values: FloatArray,
    labels: FloatArray | None = None,
    channels: list[str] = CHANNELS,
) -> None:
    """Write a wide CSV: timestamp (epoch seconds), one column per channel[, anomaly]."""
    with open(path, "w") as fh:
        fh.write(",".join(["timestamp", *channels] + (["anomaly"] if labels is not None else [])) + "\n")
        for i in range(len(times)):
            cells = [f"{times[i]:.3f}"] + [f"{v:.6g}" for v in values[i]]
            if labels is not None:
                cells.append(str(int(labels[i])))
            fh.write(",".join(cells) + "\n")
