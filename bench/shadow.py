"""Shadow scoring's cost on the live path: the serving model alone vs the serving model with a
shadow candidate, against the candidate's own forward pass, in one run.

Pure-pipeline level (no broker): 20 streams of the 5-channel synthetic pump, pushed as wide
rows into one `Pipeline`; every `--batch` due windows are flushed (the daemon's scoring
step). Per round and variant, CPU seconds of the process (`time.process_time`, torch on one
thread) over the same readings:

  plain     the serving model only
  shadow    the same plus a shadow candidate (another bundle: its own weights and scaler,
            so the re-standardization runs too) scoring every flushed batch, with what the
            daemon reads from it (every second, `ShadowManager.after_batch`) and one
            report (`summary`) at the end
  forward   the candidate's forward pass (`scorer.errors`) inside the shadow run, timed
            around each call: what the issue allows shadow to add
  replayed  the same forward passes again afterwards on copies of the batches (warm
            caches, nothing interleaved): a lower bound, printed for comparison

The claim checked: (shadow - plain) / forward, median over rounds (1.0 would be the
forward pass and nothing else; the rest is the re-standardization, the candidate's
alarm and histograms).

    .venv/bin/python bench/shadow.py            # ~1 min on 2 cores
    .venv/bin/python bench/shadow.py --quick
"""

from __future__ import annotations

import argparse
import dataclasses
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

try:  # how often the daemon looks at its shadows
    from monitor.app.shadowing import CHECK_SECONDS
except ImportError:  # before that setting (checkouts before issue 11's shadow-cost work): after every batch
    CHECK_SECONDS = 0.0


def train(out: Path, seed: int) -> ScoringModel:
    cfg = config_from(load_yaml(MODEL_YAML) | {"stream": {"channels": list(CHANNELS), "period_seconds": 1.0}})
    t, v, _ = pump(2400, seed=seed, steps_per_hour=0)
    res = train_bundle([StreamData("s", list(CHANNELS), t, v)], cfg, out / str(seed), write_plots=False)
    return ScoringModel.from_bundle(load_bundle(res.bundle_path))


def run(model: ScoringModel, rows: tuple, streams: int, batch: int, shadow: ScoringModel | None) -> tuple:
    """(CPU seconds to push and score every row, some flushed batches, the shadow's forward seconds)."""
    pipe = Pipeline(model, StreamConfig(channels=list(CHANNELS), period_seconds=1.0), AlarmConfig(k=3, n=5))
    timer = _Timed(shadow.scorer) if shadow is not None else None
    if shadow is not None:
        pipe.shadow = Shadow(
            dataclasses.replace(shadow, scorer=timer), model, AlarmConfig(k=3, n=5), ShadowSettings(1e9)
        )
    t, v = rows
    names = [f"site/p{i}" for i in range(streams)]
    kept: list = []
    next_read = 0.0
    copied = 0.0
    started = time.process_time()
    for i in range(len(t)):
        for s in names:
            pipe.push_row(s, float(t[i]), v[i])
        if pipe.pending >= batch:
            if shadow is not None and len(kept) < 64:  # for the replay; not the live path's time
                copying = time.process_time()
                kept.append(pipe._x[: pipe.pending].copy())
                copied += time.process_time() - copying
            pipe.flush()
            if pipe.shadow is not None and time.monotonic() >= next_read:  # as ShadowManager.after_batch
                _daemon_reads(pipe.shadow)
                next_read = time.monotonic() + CHECK_SECONDS
    pipe.flush()
    if pipe.shadow is not None:
        _daemon_reads(pipe.shadow)
        pipe.shadow.summary()  # what the daemon's report writes every few seconds (bins queued scores)
    return time.process_time() - started - copied, kept, (timer.seconds if timer is not None else 0.0)


def _daemon_reads(sh: Shadow) -> tuple:
    """What `ShadowManager.after_batch` reads from the shadow (every CHECK_SECONDS)."""
    return sh.windows, sh.episodes, sh.last_max, sh.live_episodes, sh.elapsed_seconds, sh.due()


class _Timed:
    """A scorer that counts the CPU seconds of its `errors` calls."""

    def __init__(self, scorer):
        self.scorer, self.seconds = scorer, 0.0

    def errors(self, x):
        started = time.process_time()
        out = self.scorer.errors(x)
        self.seconds += time.process_time() - started
        return out


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
    ratios, plain_s, shadow_s, fwd_s, replay_s = [], [], [], [], []
    for _ in range(a.repeats):
        plain, _, _ = run(serving, (t, v), a.streams, a.batch, None)
        with_shadow, kept, in_run = run(serving, (t, v), a.streams, a.batch, candidate)
        # the forward pass alone, over as many windows as the shadow scored (kept batches scaled up)
        started = time.process_time()
        for x in kept:
            candidate.scorer.errors(x)
        kept_windows = sum(len(x) for x in kept)
        windows = a.rows * a.streams - a.streams * (serving.window_size - 1)
        replay_s.append((time.process_time() - started) * windows / max(1, kept_windows))
        plain_s.append(plain)
        shadow_s.append(with_shadow)
        fwd_s.append(in_run)
        ratios.append((with_shadow - plain) / in_run)
    med = statistics.median
    print(f"command: .venv/bin/python bench/shadow.py --rows {a.rows} --streams {a.streams} --repeats {a.repeats}")
    print(f"windows per run: {a.rows * a.streams - a.streams * (serving.window_size - 1)}, batch {a.batch}")
    print(f"plain   {med(plain_s):.3f} s CPU (median of {a.repeats})")
    print(f"shadow  {med(shadow_s):.3f} s CPU (x{med(s / q for s, q in zip(shadow_s, plain_s, strict=True)):.2f})")
    print(f"forward {med(fwd_s):.3f} s CPU (the candidate's forward passes inside the shadow run)")
    print(f"replayed {med(replay_s):.3f} s CPU (the same forward passes again, alone: a lower bound)")
    print(f"(shadow - plain) / forward = {med(ratios):.2f} (median over rounds; rounds {np.round(ratios, 2).tolist()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
