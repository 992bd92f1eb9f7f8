"""Per-batch cost of the availability / Home Assistant hooks on the scoring thread.

The hooks run once per stream per scored batch (never per reading): `StreamStates.update`
(a state message at most every `state_interval_seconds`) and `Discovery.touch` (last-seen
time). Compared in the same run with the per-stream work the scoring thread already does
per batch, `Metrics.set_score` (a prometheus-client gauge set for score and alarm state).
Publishing is a counter here: in steady state almost no call publishes (1 in
interval x batches per second), and what does only queues in paho.

    PYTHONPATH=. .venv/bin/python bench/availability.py [--streams 10000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from monitor.core.integration_config import AvailabilityConfig, HomeAssistantConfig
from monitor.io.availability import StreamStates
from monitor.io.homeassistant import Discovery
from monitor.io.metrics import Metrics

CHANNELS = ["flow", "pressure", "current", "vibration", "temperature"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    streams = [f"site{i // 100}/pump{i % 100}" for i in range(args.streams)]
    sent = [0]

    def publish(topic: str, payload: bytes, qos: int, retain: bool) -> None:
        sent[0] += 1

    avail = AvailabilityConfig()
    states = StreamStates(avail, publish)
    with tempfile.TemporaryDirectory() as tmp:
        ha = Discovery(HomeAssistantConfig(enabled=True), avail, publish, Path(tmp) / "ha.json")
        metrics = Metrics(CollectorRegistry(), groups=["default"], max_stream_labels=args.streams)
        for s in streams:  # first sight: announce / admit (once per process, not measured)
            states.update("default", s, firing=False, faults={}, score=0.5, ts=0.0)
            ha.touch("default", s, CHANNELS)
            metrics.set_score(s, 0.5, False)
        faults: dict[str, str] = {}
        sent[0] = 0  # the measured loop only (the warm-up announced every stream)
        base, hooks = [], []
        for r in range(args.repeats):
            t0 = time.perf_counter()
            for s in streams:
                metrics.set_score(s, 0.6, False)
            t1 = time.perf_counter()
            for s in streams:
                states.update("default", s, firing=False, faults=faults, score=0.6, ts=float(r))
                ha.touch("default", s, CHANNELS)
            t2 = time.perf_counter()
            base.append((t1 - t0) / len(streams))
            hooks.append((t2 - t1) / len(streams))
    b, h = statistics.median(base), statistics.median(hooks)
    print(f"streams {args.streams}, repeats {args.repeats} (medians), publishes in the measured loop: {sent[0]}")
    print(f"  Metrics.set_score (baseline)     {b * 1e6:6.2f} us per stream and batch")
    print(f"  StreamStates.update + touch      {h * 1e6:6.2f} us per stream and batch")
    print(f"  hooks / baseline                 {h / b:6.2f}x")


if __name__ == "__main__":
    main()
