"""Two clients with one client id on one broker: how often the session changes hands,
what each receives of a paced feed, and what the takeover detection counts.

Two `MQTTIngest` clients (the daemon's intake, reconnect backoff 0.5..30 s as the default
config) share the client id `shared`; a publisher sends `--messages` QoS 1 readings
paced over `--seconds`. Run it on two checkouts to compare (the takeover count is 0
where the detection does not exist).

    .venv/bin/python bench/takeover.py                 # 1 500 messages over 15 s
"""

from __future__ import annotations

import argparse
import queue
import sys
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as mqtt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from broker import Mosquitto  # noqa: E402  # tests/ helper

from monitor.core.config import MQTTConfig, TopicRule  # noqa: E402
from monitor.io.codec import Codec  # noqa: E402
from monitor.io.mqtt import MQTTIngest  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=1500)
    p.add_argument("--seconds", type=float, default=15.0)
    args = p.parse_args()
    rules = [TopicRule()]
    with tempfile.TemporaryDirectory() as tmp, Mosquitto(Path(tmp) / "broker") as broker:
        cfg = MQTTConfig(host=broker.host, port=broker.port, client_id="shared", clean_start=True)
        queues = [queue.Queue(100_000), queue.Queue(100_000)]
        ingests = [MQTTIngest(cfg, rules, Codec(rules), q) for q in queues]
        for ingest in ingests:
            ingest.start()
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="feed")
        pub.connect(broker.host, broker.port)
        pub.loop_start()
        t0 = time.monotonic()
        for i in range(args.messages):
            pub.publish(f"sensors/pump/c{i % 5}", str(i), qos=1)
            time.sleep(max(0.0, t0 + (i + 1) * args.seconds / args.messages - time.monotonic()))
        time.sleep(1.0)
        pub.loop_stop()
        print(f"# {' '.join([Path(sys.executable).name, *sys.argv])}")
        total = 0
        for name, ingest, q in zip(("A", "B"), ingests, queues, strict=True):
            got = q.qsize()
            total += got
            print(
                f"client {name}: connections {ingest.stats['connections']:>3}, "
                f"takeovers counted {ingest.stats.get('takeovers', 0):>3}, received {got:>5} of {args.messages}"
            )
            ingest.stop(2.0)
        print(f"received together {total} of {args.messages} in {args.seconds:.0f} s")


if __name__ == "__main__":
    main()
