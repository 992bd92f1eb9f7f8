"""Fleet vs single group: 1 000 streams across 10 groups against one group, same readings.

Pure-pipeline level (no broker): the daemon's scoring path is `Runner.feed` over queue
batches, and that is what is timed here; MQTT intake is the same for both and is
measured by bench/ingest.py. One command runs both variants on the same readings,
interleaved, `--repeats` times (medians quoted):

  single  one group (a config without `groups:`): one Pipeline, one model, all streams
  fleet   10 groups of 100 streams (`groups:` with `streams:` globs): ten Pipelines, ten
          models (loaded separately from the same bundle), one forward pass per group
          per batch

Readings: per time step one json_multi row (a 1-row FrameBlock, 3 channels) per stream,
streams interleaved, cut into batches of `scoring.batch_size` (256) items as the
daemon's queue hands them over; every frame completes a window (window 16, stride 1).

Also: memory per stream (tracemalloc over creating the streams' state and filling their
windows, both variants), and /metrics scrape time of a daemon-shaped registry with 1 000
labelled streams and 10 groups served by `monitor.io.http` (median of 20 GETs).

    .venv/bin/python bench/fleet.py              # ~1-2 min on 2 cores
    .venv/bin/python bench/fleet.py --quick
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from monitor.app.training import StreamData, train_bundle  # noqa: E402
from monitor.core.config import Config, load_config  # noqa: E402
from monitor.core.fleet import Fleet  # noqa: E402
from monitor.core.model.bundle import load_bundle  # noqa: E402
from monitor.core.runner import Runner  # noqa: E402
from monitor.core.scoring_model import ScoringModel  # noqa: E402
from monitor.core.types import FrameBlock  # noqa: E402
from monitor.io.http import serve  # noqa: E402
from monitor.io.metrics import Metrics  # noqa: E402

CHANNELS = ("a", "b", "c")
GROUPS = 10
BATCH = 256

BASE_YAML = """
stream: {channels: [a, b, c], period_seconds: 1.0, max_gap_seconds: 5, max_streams: 100000}
model: {architecture: dense, window_size: 16, hidden: [32], code_size: 4, epochs: 3, patience: 3, seed: 1}
calibration: {method: quantile, quantile: 0.999, holdout_fraction: 0.25}
alarm: {k: 3, n: 5, resolve_m: 10}
models: {dir: MODELS}
"""


def configs(models: Path) -> tuple[Config, Config]:
    base = BASE_YAML.replace("MODELS", str(models))
    groups = "groups:\n" + "".join(f"  - {{name: g{i}, streams: ['g{i}/*']}}\n" for i in range(GROUPS))
    with tempfile.TemporaryDirectory() as tmp:
        p1, p2 = Path(tmp) / "single.yaml", Path(tmp) / "fleet.yaml"
        p1.write_text(base)
        p2.write_text(base + groups)
        return load_config(p1, environ={}), load_config(p2, environ={})


def train(models: Path, cfg: Config) -> Path:
    rng = np.random.default_rng(3)
    n = 2000
    t = np.arange(n, dtype=np.float64) + 1_600_000_000.0
    base = np.sin(2 * np.pi * t / 60.0)[:, None]
    v = base + rng.normal(0, 0.05, (n, len(CHANNELS))) + np.arange(len(CHANNELS))
    return train_bundle([StreamData("train/s0", list(CHANNELS), t, v)], cfg, models, write_plots=False).bundle_path


def readings(n_streams: int, steps: int) -> list[list[FrameBlock]]:
    """Batches of BATCH items: per time step one 1-row FrameBlock per stream `g<k>/s<i>`."""
    rng = np.random.default_rng(5)
    names = [f"g{i % GROUPS}/s{i}" for i in range(n_streams)]
    items = []
    for step in range(steps):
        t = np.array([1_700_000_000.0 + step])
        vals = np.sin(2 * np.pi * step / 60.0) + rng.normal(0, 0.05, (n_streams, len(CHANNELS))) + np.arange(3)
        items += [FrameBlock(name, CHANNELS, t, vals[i : i + 1]) for i, name in enumerate(names)]
    return [items[i : i + BATCH] for i in range(0, len(items), BATCH)]


def build(cfg: Config, bundle: Path) -> Fleet:
    fleet = Fleet.from_config(cfg)
    for name in fleet.names:
        fleet.install(name, ScoringModel.from_bundle(load_bundle(bundle)))  # a model per group
    return fleet


def run_once(cfg: Config, bundle: Path, batches: list[list[FrameBlock]]) -> tuple[float, int]:
    fleet = build(cfg, bundle)
    runner = Runner(fleet)
    n = sum(len(b) for b in batches)
    started = time.perf_counter()
    for batch in batches:
        runner.feed(batch)
    seconds = time.perf_counter() - started
    assert fleet.totals()["accepted"] == n * len(CHANNELS), fleet.totals()
    return n / seconds, runner.windows


def memory_per_stream(cfg: Config, bundle: Path, n_streams: int) -> float:
    fleet = build(cfg, bundle)
    runner = Runner(fleet)
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


def scrape_ms(n_streams: int) -> float:
    registry = CollectorRegistry()
    names = [f"g{i}" for i in range(GROUPS)]
    m = Metrics(registry, groups=names)
    for g in names:
        m.group_model(g, f"v-{g}", created_at=time.time() - 60)
        m.group_scored(g, 1000)
    for i in range(n_streams):
        m.set_score(f"g{i % GROUPS}/s{i}", 0.5, False)
    for reason in ("late", "duplicate", "no_model"):
        m.drop(reason, 3)
        m.group_drop("g1", reason, 3)
    server = serve(registry, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.port}/metrics"
    times = []
    try:
        for _ in range(21):
            started = time.perf_counter()
            with urllib.request.urlopen(url, timeout=5) as resp:
                body = resp.read()
            times.append((time.perf_counter() - started) * 1000)
    finally:
        server.shutdown()
    assert b'monitor_group_model_info{group="g9",version="v-g9"}' in body
    return statistics.median(times[1:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=60, help="frames per stream")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.repeats = 30, 1
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        single, fleet = configs(Path(tmp))
        bundle = train(Path(tmp), single)
        batches = readings(args.streams, args.steps)
        rates: dict[str, list[float]] = {"single": [], "fleet": []}
        windows = {}
        for _ in range(args.repeats):
            for name, cfg in (("single", single), ("fleet", fleet)):
                rate, windows[name] = run_once(cfg, bundle, batches)
                rates[name].append(rate)
        assert windows["single"] == windows["fleet"], windows
        mem = {
            name: memory_per_stream(cfg, bundle, args.streams) for name, cfg in (("single", single), ("fleet", fleet))
        }
    med = {k: statistics.median(v) for k, v in rates.items()}
    ratio = med["fleet"] / med["single"]
    scrape = scrape_ms(args.streams)
    n = sum(len(b) for b in batches)
    print(f"{args.streams} streams, {n} frames ({n * len(CHANNELS)} readings), {windows['fleet']} windows each variant")
    print(f"runner.feed in batches of {BATCH} items, torch 1 thread, {args.repeats} repeats (median)")
    for k in ("single", "fleet"):
        print(f"  {k:6}  {med[k]:9.0f} frames/s   ({', '.join(f'{r:.0f}' for r in rates[k])})")
    print(f"  throughput ratio fleet/single: {ratio:.2f}x (target >= 0.8x)")
    print(f"  memory per stream: single {mem['single'] / 1024:.1f} KiB, fleet {mem['fleet'] / 1024:.1f} KiB")
    print(f"  /metrics scrape ({args.streams} labelled streams, {GROUPS} groups): {scrape:.1f} ms (target < 50 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
