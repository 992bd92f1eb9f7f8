"""Shadow scoring's cost on the live path: the serving model alone vs the serving model with a
shadow candidate, against the candidate's own forward pass, in one run.

Pure-pipeline level (no broker): 20 streams of the 5-channel synthetic pump, pushed as wide
rows into one `Pipeline`; every `--batch` due windows are flushed (the daemon's scoring
step). Per round and variant, CPU seconds of the process (`time.process_time`, torch on one
thread) over the same readings:

  plain     the serving model only
  shadow    the same plus a shadow candidate (another bundle: its own weights and scaler,
            so the re-standardization runs too) scoring every flushed batch
  forward   the candidate's forward pass alone (`scorer.errors`) on the batches the shadow
            variant scored: what the issue allows shadow to add

The claim checked: (shadow - plain) / forward, median over rounds, is about 1 (the extra
is the candidate's forward pass, plus its re-standardization and its alarm).

    .venv/bin/python bench/shadow.py            # ~1 min on 2 cores
    .venv/bin/python bench/shadow.py --quick
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from monitor.app.training import StreamData, train_bundle  # noqa: E402
from monitor.core.config import AlarmConfig, StreamConfig  # noqa: E402
from monitor.core.model.bundle import load_bundle  # noqa: E402
from monitor.core.pipeline import Pipeline, ScoringModel  # noqa: E402
from monitor.core.shadow import Shadow, ShadowSettings  # noqa: E402
from monitor.core.synthetic import CHANNELS, pump  # noqa: E402
from tests.daemon_support import MODEL_YAML, config_from, load_yaml  # noqa: E402


def train(out: Path, seed: int) -> ScoringModel:
    cfg = config_from(load_yaml(MODEL_YAML) | {"stream": {"channels": list(CHANNELS), "period_seconds": 1.0}})
    t, v, _ = pump(2400, seed=seed, steps_per_hour=0)
    res = train_bundle([StreamData("s", list(CHANNELS), t, v)], cfg, out / str(seed), write_plots=False)
    return ScoringModel.from_bundle(load_bundle(res.bundle_path))


def run(model: ScoringModel, rows: tuple, streams: int, batch: int, shadow: ScoringModel | None) -> tuple[float, list]:
    """CPU seconds to push and score every row; the flushed window batches (for `forward`)."""
    pipe = Pipeline(model, StreamConfig(channels=list(CHANNELS), period_seconds=1.0), AlarmConfig(k=3, n=5))
    if shadow is not None:
        pipe.shadow = Shadow(shadow, model, AlarmConfig(k=3, n=5), ShadowSettings(seconds=1e9))
    t, v = rows
    names = [f"site/p{i}" for i in range(streams)]
    kept: list = []
    started = time.process_time()
    for i in range(len(t)):
        for s in names:
            pipe.push_row(s, float(t[i]), v[i])
        if pipe.pending >= batch:
            if shadow is not None and len(kept) < 64:
                kept.append(pipe._x[: pipe.pending].copy())
            pipe.flush()
    pipe.flush()
    return time.process_time() - started, kept


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=600, help="time steps per stream")
    p.add_argument("--streams", type=int, default=20)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    if a.quick:
        a.rows, a.repeats = 300, 3
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        serving, candidate = train(Path(tmp), 11), train(Path(tmp), 12)
    t, v, _ = pump(a.rows, seed=21, steps_per_hour=0)
    ratios, plain_s, shadow_s, fwd_s = [], [], [], []
    for _ in range(a.repeats):
        plain, _ = run(serving, (t, v), a.streams, a.batch, None)
        with_shadow, kept = run(serving, (t, v), a.streams, a.batch, candidate)
        # the forward pass alone, over as many windows as the shadow scored (kept batches scaled up)
        started = time.process_time()
        for x in kept:
            candidate.scorer.errors(x)
        kept_windows = sum(len(x) for x in kept)
        windows = a.rows * a.streams - a.streams * (serving.window_size - 1)
        forward = (time.process_time() - started) * windows / max(1, kept_windows)
        plain_s.append(plain)
        shadow_s.append(with_shadow)
        fwd_s.append(forward)
        ratios.append((with_shadow - plain) / forward)
    med = statistics.median
    print(f"command: .venv/bin/python bench/shadow.py --rows {a.rows} --streams {a.streams} --repeats {a.repeats}")
    print(f"windows per run: {a.rows * a.streams - a.streams * (serving.window_size - 1)}, batch {a.batch}")
    print(f"plain   {med(plain_s):.3f} s CPU (median of {a.repeats})")
    print(f"shadow  {med(shadow_s):.3f} s CPU (x{med(s / q for s, q in zip(shadow_s, plain_s, strict=True)):.2f})")
    print(f"forward {med(fwd_s):.3f} s CPU (the candidate's forward pass alone)")
    print(f"(shadow - plain) / forward = {med(ratios):.2f} (median over rounds; rounds {np.round(ratios, 2).tolist()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
