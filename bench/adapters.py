"""Per-stream adapters vs none: 1 000 streams of one group, same model, same readings.

Pure-pipeline level (no broker), as bench/fleet.py: the daemon's scoring path is
`Runner.feed` over queue batches of `scoring.batch_size` (256) items, and that is timed.
One command runs the variants on the same readings, back to back in each of `--repeats`
rounds; a ratio is the median over rounds of that round's adapters/plain ratio (the
machine's load drifts between rounds; a pair shares it), rates are medians, timed in
CPU seconds of the process (`time.process_time`, torch on one thread), which a loaded
shared machine disturbs far less than wall time:

  plain     the bundle's model without adapters: one scaler, one threshold
  adapters  the same network with an adapter (own mean/std per channel and threshold)
            for every one of the 1 000 streams
  half      adapters for every other stream (the rest fall back to the group's)

Readings are bench/fleet.py's: per time step one 1-row json_multi FrameBlock (3 channels)
per stream, streams interleaved; every frame completes a window (window 16, stride 1).
Also memory per stream of the adapter variant against the plain one (tracemalloc over
creating the streams and filling their windows; the adapter table itself is counted in
the model, not here, and printed apart).

    .venv/bin/python bench/adapters.py              # ~1-2 min on 2 cores
    .venv/bin/python bench/adapters.py --quick
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from fleet import BATCH, CHANNELS, GROUPS, configs, readings, train  # noqa: E402  # bench/fleet.py

from monitor.core.config import Config  # noqa: E402
from monitor.core.fleet import Fleet  # noqa: E402
from monitor.core.model.adapters import StreamAdapters  # noqa: E402
from monitor.core.model.bundle import load_bundle  # noqa: E402
from monitor.core.runner import Runner  # noqa: E402
from monitor.core.scoring_model import ScoringModel  # noqa: E402
from monitor.core.types import FrameBlock  # noqa: E402


def adapters_for(model: ScoringModel, names: list[str]) -> StreamAdapters:
    """An adapter per name: the group's scaler, each with its own threshold a little
    above the group's, so every variant takes (about) the same decisions and the figures
    compare the mechanism, not different alert work."""
    rng = np.random.default_rng(11)
    n, c = len(names), len(model.channels)
    mean = np.tile(model.mean, (n, 1)) * (1 + 1e-9 * rng.normal(size=(n, c)))
    std = np.tile(model.std, (n, 1))
    thr = model.threshold * rng.uniform(1.0, 1.05, n)
    return StreamAdapters(names, mean, std, thr, [500] * n, 200)


def run_once(cfg: Config, model: ScoringModel, batches: list[list[FrameBlock]]) -> tuple[float, int, int]:
    fleet = Fleet.single(model, cfg.fleet()[0])
    runner = Runner(fleet)
    n = sum(len(b) for b in batches)
    started = time.process_time()  # CPU seconds of this process: the shared machine's load drifts
    for batch in batches:
        runner.feed(batch)
    seconds = time.process_time() - started
    assert fleet.totals()["accepted"] == n * len(CHANNELS), fleet.totals()
    return n / seconds, runner.windows, runner.alerts


def memory_per_stream(cfg: Config, model: ScoringModel, n_streams: int) -> float:
    runner = Runner(Fleet.single(model, cfg.fleet()[0]))
    warm = readings(n_streams, 20)  # 20 frames: every window buffer full (window 16)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for batch in warm:
        runner.feed(batch)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / n_streams


def table_bytes(a: StreamAdapters) -> int:
    arrays = a.mean.nbytes + a.std.nbytes + a.inv_std.nbytes + a.threshold.nbytes + a.n_windows.nbytes
    return arrays + sys.getsizeof(a.index) + sum(sys.getsizeof(s) for s in a.streams)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=60, help="frames per stream")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.repeats = 30, 1
    torch.set_num_threads(1)
    names = [f"g{i % GROUPS}/s{i}" for i in range(args.streams)]  # bench/fleet.py's stream names
    with tempfile.TemporaryDirectory(prefix="bench-adapters-") as tmp:
        single, _ = configs(Path(tmp))
        bundle = train(Path(tmp), single)
        base = ScoringModel.from_bundle(load_bundle(bundle))
        every = adapters_for(base, names)
        models = {
            "plain": base,
            "adapters": dataclasses.replace(base, adapters=every),
            "half": dataclasses.replace(base, adapters=adapters_for(base, names[::2])),
        }
        batches = readings(args.streams, args.steps)
        rates: dict[str, list[float]] = {k: [] for k in models}
        windows, alerts = {}, {}
        for _ in range(args.repeats):
            for name, model in models.items():
                rate, windows[name], alerts[name] = run_once(single, model, batches)
                rates[name].append(rate)
        assert len(set(windows.values())) == 1, windows
        mem = {k: memory_per_stream(single, models[k], args.streams) for k in ("plain", "adapters")}
    med = {k: statistics.median(v) for k, v in rates.items()}
    n = sum(len(b) for b in batches)
    print(f"{args.streams} streams, {n} frames ({n * len(CHANNELS)} readings), {windows['plain']} windows each variant")
    print(f"runner.feed in batches of {BATCH} items, one group, torch 1 thread, {args.repeats} rounds, CPU time")
    for k in models:
        runs = ", ".join(f"{r:.0f}" for r in rates[k])
        print(f"  {k:8}  {med[k]:9.0f} frames/s   ({runs}); {alerts[k]} alert state changes")
    for k in ("adapters", "half"):
        pairs = [a / b for a, b in zip(rates[k], rates["plain"], strict=True)]
        print(
            f"  throughput ratio {k}/plain: {statistics.median(pairs):.2f}x, median of per-round ratios "
            f"({', '.join(f'{r:.2f}' for r in pairs)}) (target >= 0.9x)"
        )
    print(
        f"  memory per stream: plain {mem['plain'] / 1024:.2f} KiB, adapters {mem['adapters'] / 1024:.2f} KiB; "
        f"adapter table {table_bytes(every) / args.streams:.0f} B per stream ({len(CHANNELS)} channels)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
