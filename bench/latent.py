"""What latent features cost on the live path, and whether novelty separates faults.

Throughput: the daemon's scoring path in one process (a `Fleet` driven by a `Runner`,
single readings in batches of 256 as the scoring thread drains its queue, 10 streams
interleaved), for four variants of the same trained bundle, interleaved (the order rotates
each repeat), `--repeats` times; readings per CPU second of this process (process_time: on
a shared host, wall time swung by 30 % between identical runs), medians quoted, and their
ratio to ``before``:

  before      the bundle with its latent facts removed: the code path of a bundle from
              before this feature (`errors`, no codes)
  states      the bundle as trained now, latent export off: codes come out of the same
              forward pass, each window gets its operating state and novelty (alerts
              carry the state; the daemon sets monitor_operating_state)
  export      as states, with the latent topic on: codes kept on every batch, the
              operating-state gauges set, a `LatentPublisher` (no-op publish) at 10 s
  export_all  as export with latent_every_seconds 0 (a message per stream per batch)

Two models: ``univariate`` (bench/ingest.py's: 1 channel, dense, window 16, one window
per reading: the heaviest scoring load per reading) and ``pump`` (configs/pump.yaml's
conv1d, 5 channels, window 30: one window per 5 readings).

Novelty: for the pump model, feeds with each synthetic fault kind (monitor.core.synthetic)
are backtested; ROC AUC (Mann-Whitney) of the window novelty and of the raw
reconstruction error for windows ending in a fault vs windows ending in normal rows. It is
reported, never used in an alarm decision (decision 0020).

    .venv/bin/python bench/latent.py              # ~3 min on 2 shared cores
    .venv/bin/python bench/latent.py --repeats 3 --readings 20000
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
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
from ingest import CHANNEL, PUMP_CHANNELS, signal_values, train_model, train_pump_model  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from monitor.core.config import GroupConfig  # noqa: E402
from monitor.core.fleet import Fleet, GroupResult  # noqa: E402
from monitor.core.model.bundle import load_bundle  # noqa: E402
from monitor.core.model.threads import use_threads  # noqa: E402
from monitor.core.runner import Runner  # noqa: E402
from monitor.core.scoring_model import ScoringModel  # noqa: E402
from monitor.core.synthetic import Fault, pump  # noqa: E402
from monitor.core.types import Reading  # noqa: E402
from monitor.io.latent_out import LatentPublisher  # noqa: E402
from monitor.io.metrics import Metrics  # noqa: E402

VARIANTS = ("before", "states", "export", "export_all")
N_STREAMS = 10
BATCH = 256


def readings_for(model: ScoringModel, n: int) -> list[Reading]:
    """`n` single readings: N_STREAMS streams, each channel of a time step, streams interleaved."""
    channels = model.channels
    steps = n // (len(channels) * N_STREAMS) + 1
    if channels == [CHANNEL]:
        values = signal_values(steps, seed=5)[:, None]
    else:
        _, values, _ = pump(steps, seed=5, start_time=1_600_000_000.0)
    out: list[Reading] = []
    for i in range(steps):
        t = 1_600_000_000.0 + i
        for s in range(N_STREAMS):
            for j, ch in enumerate(channels):
                out.append(Reading(f"s{s}", ch, t, float(values[i, j])))
    return out[:n]


def run_variant(variant: str, model: ScoringModel, readings: list[Reading]) -> float:
    """Readings per second through the fleet for one variant."""
    if variant == "before":
        model = dataclasses.replace(model, latent=None)
    export = variant in ("export", "export_all")
    fleet = Fleet.single(model, GroupConfig(name="default"), latent=export)
    metrics = Metrics(CollectorRegistry())
    publisher = LatentPublisher(lambda *a: None, "m/latent/{stream}", 0.0 if variant == "export_all" else 10.0)

    def scored(r: GroupResult) -> None:  # what Service._on_scores adds for latent features
        s = r.scores
        for stream, (state, novelty) in s.newest_states().items():
            metrics.set_state(stream, state + 1, novelty)
        if export:
            publisher.send(s, model.version)

    runner = Runner(fleet, on_scores=scored)
    started = time.process_time()  # CPU time of this process: other tenants of a shared host count less
    for i in range(0, len(readings), BATCH):
        runner.feed(readings[i : i + BATCH])
    return len(readings) / (time.process_time() - started)


def throughput(name: str, model: ScoringModel, n: int, repeats: int) -> None:
    readings = readings_for(model, n)
    rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
    run_variant("states", model, readings[:2000])  # warm-up
    for r in range(repeats):
        for j in range(len(VARIANTS)):  # the order rotates: no variant always runs first
            v = VARIANTS[(r + j) % len(VARIANTS)]
            rates[v].append(run_variant(v, model, readings))
    base = statistics.median(rates["before"])
    print(f"\n{name}: {n} single readings, {N_STREAMS} streams, batches of {BATCH}, {repeats} repeats (medians)")
    for v in VARIANTS:
        med = statistics.median(rates[v])
        print(f"  {v:<11} {med:>10,.0f} readings/s   {med / base:6.3f} x before")


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties half (Mann-Whitney U / n1 n2)."""
    allv = np.concatenate([positive, negative])
    order = allv.argsort(kind="stable")
    ranks = np.empty(len(allv))
    ranks[order] = np.arange(1, len(allv) + 1)
    for value in np.unique(allv):  # average ranks of ties
        same = allv == value
        if same.sum() > 1:
            ranks[same] = ranks[same].mean()
    u = ranks[: len(positive)].sum() - len(positive) * (len(positive) + 1) / 2
    return float(u / (len(positive) * len(negative)))


def novelty_separation(model: ScoringModel) -> None:
    print("\nnovelty vs reconstruction error, pump model: ROC AUC of fault windows vs normal windows")
    print(f"  {'fault':<14} {'windows':>8} {'novelty AUC':>12} {'error AUC':>10} {'novelty>1 fault/normal':>24}")
    for kind in ("cavitation", "bearing", "sensor_stuck"):
        t, v, labels = pump(2400, seed=8, faults=[Fault(1200, 1500, kind)], start_time=1_700_000_000.0)
        fleet = Fleet.single(model, GroupConfig(name="default"), latent=True)
        got: list = []
        runner = Runner(fleet, on_scores=lambda r, out=got: out.append(r.scores))
        for i in range(len(t)):
            runner.push_row("p", float(t[i]), v[i])
            if i % 256 == 255:
                runner.flush()
        runner.fleet.end_of_data()
        runner.flush()
        times = np.concatenate([np.asarray(s.times) for s in got])
        novelty = np.concatenate([s.novelty for s in got])
        raw = np.concatenate([s.raw for s in got])
        row = np.searchsorted(t, times)
        fault = labels[np.minimum(row, len(labels) - 1)] > 0
        a_n = auc(novelty[fault], novelty[~fault])
        a_e = auc(raw[fault], raw[~fault])
        share = f"{np.mean(novelty[fault] > 1):.2f} / {np.mean(novelty[~fault] > 1):.3f}"
        print(f"  {kind:<14} {len(times):>8} {a_n:>12.3f} {a_e:>10.3f} {share:>24}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=12)
    ap.add_argument("--readings", type=int, default=15_000)
    args = ap.parse_args()
    use_threads(1)
    print("command: .venv/bin/python bench/latent.py " + " ".join(sys.argv[1:]))
    with tempfile.TemporaryDirectory() as tmp:
        uni = ScoringModel.from_bundle(load_bundle(train_model(Path(tmp) / "uni")))
        pm = ScoringModel.from_bundle(load_bundle(train_pump_model(Path(tmp) / "pump")))
    assert pm.channels == list(PUMP_CHANNELS)
    for name, model in (("univariate", uni), ("pump", pm)):
        st = model.latent.states if model.latent else None
        print(f"{name}: code_size {model.latent.code_size if model.latent else '?'}, states {st.k if st else 'off'}")
    throughput("univariate (dense, W 16, 1 channel)", uni, args.readings, args.repeats)
    throughput("pump (conv1d, W 30, 5 channels)", pm, args.readings, args.repeats)
    novelty_separation(pm)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
