"""Per-worker throughput: the NATS JetStream source against the MQTT source, in one run.

Both paths run the same `Service` with the same small trained bundle (tests/daemon_support's
dense model, window 16) on the same backlog: `--streams` pump streams, one json_multi row
(5 channels) per message, `--messages` messages. Method, per path and repeat:

  mqtt  a persistent MQTT v5 session is made for the daemon's client id, the backlog is
        published at QoS 1 into a private Mosquitto (it queues it), then the daemon connects;
  nats  the backlog is published into a private nats-server (partition mappings, stream
        MONITOR), then one worker owning all partitions starts (fresh durable consumers);

and the clock runs from the first handled batch to the last (start-up excluded), so the
publisher never competes for the CPU while a worker is measured. Paths run interleaved,
`--repeats` times; medians are printed. The broker's own CPU time while the worker drains
the backlog (utime + stime of the server process, /proc) gives the broker cost per message,
from which the scaling model is computed:

  worker cost  w = 1 / r   CPU-seconds per message (r: one worker's rate on one core)
  broker cost  b           CPU-seconds per message (store + deliver + ack)
  C cores, W workers:      T(W) = min(W * r, C / (w + b))   messages/s (workers spread over partitions)

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python bench/nats.py              # ~2 min on 2 shared cores
    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python bench/nats.py --quick      # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import torch
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client import CollectorRegistry

# this file is bench/nats.py: its folder first on sys.path would make `import nats` import it
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import nats  # noqa: E402

from monitor.app.service import Service  # noqa: E402
from monitor.core.synthetic import CHANNELS, pump  # noqa: E402
from tests.broker import Mosquitto  # noqa: E402
from tests.daemon_support import Publisher, daemon_config, train_small_model, wait_until  # noqa: E402
from tests.nats_server import NatsServer  # noqa: E402
from tests.nats_support import nats_config, publish_nats, stream_messages  # noqa: E402


def backlog(streams: int, messages: int) -> list[tuple[str, bytes]]:
    rows = messages // streams
    t, v, _ = pump(rows, seed=5, steps_per_hour=0, start_time=float(int(time.time()) - rows - 120))
    out = []
    for i in range(rows):
        body = {c: float(x) for c, x in zip(CHANNELS, v[i], strict=True)}
        for s in range(streams):
            out.append((f"plant/site{s // 100}/pump{s}", json.dumps({"ts": float(t[i]), **body}).encode()))
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Clock:
    def __init__(self, total: int):
        self.total = total
        self.handled = 0
        self.first: float | None = None
        self.last = 0.0
        self.done = threading.Event()

    def on_handled(self, items: list) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.handled += len(items)
        self.last = now
        if self.handled >= self.total:
            self.done.set()


def own_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def drain(cfg, total: int, broker_pid: int, **kwargs) -> tuple[float, float, float]:
    """(wall messages/s of one worker, its CPU-s per message, the broker's CPU-s per message)
    while it drains the backlog (CPU from start to the last message: contention-proof)."""
    clock = Clock(total)
    svc = Service(cfg, registry=CollectorRegistry(), on_handled=clock.on_handled, **kwargs)
    cpu0 = cpu_seconds(broker_pid)
    own0 = own_cpu_seconds()
    svc.start()
    try:
        if not clock.done.wait(300):
            raise RuntimeError(f"only {clock.handled}/{total} handled")
        own = own_cpu_seconds() - own0
        cpu = cpu_seconds(broker_pid) - cpu0
    finally:
        svc.shutdown()
    assert clock.first is not None
    return total / (clock.last - clock.first), own / total, cpu / total


def run_mqtt(broker: Mosquitto, models: Path, msgs: list, rep: int) -> tuple[float, float, float]:
    client_id = f"bench-mqtt-{rep}"
    cfg = daemon_config(broker.port, models, mqtt={"client_id": client_id, "queue_size": 200_000})
    # the persistent session first, so the broker queues the backlog for the daemon
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 600
    c.connect("127.0.0.1", broker.port, clean_start=False, properties=props)
    c.loop_start()
    c.subscribe("plant/+/+", qos=1)
    time.sleep(0.3)
    c.loop_stop()
    c.disconnect()
    pub = Publisher(broker.port, client_id=f"bench-pub-{rep}")
    infos = [pub.publish(t, p, 1) for t, p in msgs]
    for info in infos:
        info.wait_for_publish(30)
    pub.close()
    assert broker.proc is not None
    return drain(cfg, len(msgs), broker.proc.pid)


def run_nats(server: NatsServer, models: Path, msgs: list, rep: int) -> tuple[float, float, float]:
    stream = f"BENCH{rep}"
    cfg = nats_config(server.url, models, stream=stream, durable_prefix=f"bench{rep}", fetch_batch=512)

    # a stream of its own per repeat (on part.>, so the previous one is removed first)
    async def fresh() -> None:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        for name in [s async for s in _stream_names(js)]:
            await js.delete_stream(name)
        await js.add_stream(name=stream, subjects=["part.>"])
        await nc.close()

    asyncio.run(fresh())
    publish_nats(server.url, msgs)
    wait_until(lambda: stream_messages(server.url, stream) >= len(msgs), timeout=120, what="backlog stored")
    assert server.proc is not None
    return drain(cfg, len(msgs), server.proc.pid)


async def _stream_names(js):
    for info in await js.streams_info():
        yield info.config.name


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--streams", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.messages, args.repeats = 4_000, 1
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench-nats-") as tmp:
        tmp_path = Path(tmp)
        models = tmp_path / "models"
        train_small_model(models)
        msgs = backlog(args.streams, args.messages)
        results: dict[str, list[tuple[float, float, float]]] = {"mqtt": [], "nats": []}
        # as bench/ingest.py: no inflight or queue cap for the backlog (Mosquitto sends 20 unacked by default)
        mosq = Mosquitto(
            tmp_path / "mosq", extra_config="max_queued_messages 0\nmax_inflight_messages 0\nmax_queued_bytes 0"
        )
        with mosq as broker, NatsServer(tmp_path / "nats", partitions=8) as server:
            for rep in range(args.repeats):
                results["mqtt"].append(run_mqtt(broker, models, msgs, rep))
                results["nats"].append(run_nats(server, models, msgs, rep))
                print(
                    f"repeat {rep}: mqtt {results['mqtt'][-1][0]:,.0f} msg/s, nats {results['nats'][-1][0]:,.0f} msg/s",
                    flush=True,
                )
    med = {k: tuple(statistics.median(r[i] for r in v) for i in range(3)) for k, v in results.items()}
    print(
        f"\n{len(msgs)} messages ({args.streams} streams, 1 row of 5 channels each), {args.repeats} repeat(s), medians:"
    )
    for path, (rate, worker_cost, broker_cost) in med.items():
        print(
            f"  {path:5s} one worker {rate:8,.0f} msg/s wall   worker {worker_cost * 1e6:6.1f} CPU-us/msg"
            f"   broker {broker_cost * 1e6:5.1f} CPU-us/msg"
        )
    print(
        f"  nats / mqtt: wall throughput {med['nats'][0] / med['mqtt'][0]:.2f}, "
        f"worker CPU per message {med['nats'][1] / med['mqtt'][1]:.2f}"
    )
    _, w, b = med["nats"]
    print(f"\nscaling model (NATS): T = min(W / w, C / (w + b)), w = {w * 1e6:.1f}, b = {b * 1e6:.1f} CPU-us/msg")
    for cores in (2, 8, 32):
        row = []
        for workers in (1, 2, 4, 8, 16, 32):
            if workers <= cores:
                row.append(f"W={workers}: {min(workers / w, cores / (w + b)):,.0f}")
        print(f"  {cores:2d} cores  " + "   ".join(row) + "  msg/s")
    print("\ncommand: PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python bench/nats.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
