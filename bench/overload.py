"""Resident memory of the intake under overload: 100-reading messages, a slow consumer.

One private Mosquitto; for each mode a fresh child process runs the daemon's intake
(`MQTTIngest` + `Codec(columns=True)` + `HandOff`, manual acks as the daemon with a
persistent session) and a consumer that takes 2 messages every 10 ms (200 messages, 20 000
readings per second: far slower than the publisher) and acks them. A publisher sends
100-reading JSON-array messages at QoS 1 as fast as it can for `--seconds`. The child
samples its RSS every 0.25 s; the broker's RSS is sampled too (in backpressure mode the
broker holds what the daemon does not take).

Modes, same run:
  before        the hand-off bounded by messages only (mqtt.queue_size 100 000, as on main)
  drop          the default bounds (queue_readings 200 000, queue_bytes 64 MiB), overload: drop
  backpressure  the default bounds, overload: backpressure, receive_maximum 1000

Without torch loaded: the figures are the intake's own growth (the daemon adds ~240 MB of
torch and model at start, constant under load).

    .venv/bin/python bench/overload.py               # 20 s per mode (~70 s)
    .venv/bin/python bench/overload.py --seconds 5   # smoke run
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

PAGE = os.sysconf("SC_PAGE_SIZE")
MODES = ("before", "drop", "backpressure")


def rss_mb(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE / 1e6


def payload(k: int) -> bytes:
    t0 = 1.7e9 + k * 100
    return json.dumps([{"ts": t0 + i, "value": 0.001 * i + k} for i in range(100)]).encode()


def publisher(port: int, seconds: float, stop_at: float, out: mp.Queue) -> None:
    import paho.mqtt.client as mqtt  # noqa: PLC0415  # in the child process only

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"ov-pub-{os.getpid()}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(2000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    bodies = [payload(k) for k in range(64)]
    n = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rc = client.publish(f"bench/s{n % 50}/x", bodies[n % 64], qos=1).rc
        if rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            time.sleep(0.0005)
            continue
        n += 1
    client.disconnect()
    client.loop_stop()
    out.put(n)


def child(mode: str, port: int, seconds: float) -> None:
    from monitor.core.config import MQTTConfig, TopicRule  # noqa: PLC0415  # child only
    from monitor.io.codec import Codec  # noqa: PLC0415
    from monitor.io.handoff import HandOff  # noqa: PLC0415
    from monitor.io.mqtt import MQTTIngest  # noqa: PLC0415

    rules = [TopicRule(template="bench/{stream}/{channel}", format="json_array", qos=1)]
    cfg = MQTTConfig(
        host="127.0.0.1",
        port=port,
        client_id=f"ov-{mode}",
        session_expiry_seconds=1,
        overload="backpressure" if mode == "backpressure" else "drop",
    )
    if mode == "before":
        handoff = HandOff(cfg.queue_size, 10**12, 10**15)
    else:
        handoff = HandOff(cfg.queue_size, cfg.queue_readings, cfg.queue_bytes)
    ingest = MQTTIngest(cfg, rules, Codec(rules, columns=True), handoff, manual_ack=True)
    ingest.start()
    while not ingest.subscribed:
        time.sleep(0.01)
    start_rss = rss_mb()
    print("READY", flush=True)
    handled = 0
    peak = start_rss
    stop = time.monotonic() + seconds + 1.0
    next_sample = 0.0
    while time.monotonic() < stop:
        items = handoff.take(2)
        handled += sum(len(i[1]) for i in items)
        ingest.ack_many(items)
        now = time.monotonic()
        if now >= next_sample:
            peak = max(peak, rss_mb())
            next_sample = now + 0.25
        time.sleep(0.01)
    peak = max(peak, rss_mb())
    result = {
        "start_rss_mb": start_rss,
        "peak_rss_mb": peak,
        "messages": ingest.stats["messages"],
        "readings_handled": handled,
        "readings_queued_at_end": handoff.readings(),
        "readings_dropped": ingest.stats["dropped_readings"],
        "messages_held_over": ingest.stats["held_over"],
    }
    ingest.stop(2.0)
    print("RESULT " + json.dumps(result), flush=True)


def run_mode(mode: str, port: int, seconds: float, broker_pid: int) -> dict:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", mode, "--port", str(port), "--seconds", str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "READY"
    broker_start = rss_mb(broker_pid)
    broker_peak = [broker_start]
    done = threading.Event()

    def sample_broker() -> None:
        while not done.wait(0.25):
            broker_peak[0] = max(broker_peak[0], rss_mb(broker_pid))

    sampler = threading.Thread(target=sample_broker, daemon=True)
    sampler.start()
    out: mp.Queue = mp.Queue()
    pub = mp.Process(target=publisher, args=(port, seconds, 0.0, out))
    pub.start()
    published = out.get()
    pub.join()
    line = next(ln for ln in proc.stdout if ln.startswith("RESULT "))
    proc.wait()
    done.set()
    sampler.join()
    result = json.loads(line[len("RESULT ") :])
    result.update(published=published, broker_start_rss_mb=broker_start, broker_peak_rss_mb=broker_peak[0])
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--child", choices=MODES)
    p.add_argument("--port", type=int)
    args = p.parse_args()
    if args.child:
        child(args.child, args.port, args.seconds)
        return
    from broker import Mosquitto  # noqa: PLC0415  # tests/ helper, parent only

    with tempfile.TemporaryDirectory() as tmp, Mosquitto(Path(tmp) / "broker") as broker:
        assert broker.proc is not None
        print(f"# {' '.join([Path(sys.executable).name, *sys.argv])}; {args.seconds:.0f} s of 100-reading messages")
        print(
            f"{'mode':<13} {'published':>9} {'received':>8} {'handled':>9} {'dropped':>9} {'held':>6} "
            f"{'RSS start':>9} {'RSS peak':>8} {'growth':>7} {'broker peak':>11}"
        )
        for mode in MODES:
            r = run_mode(mode, broker.port, args.seconds, broker.proc.pid)
            print(
                f"{mode:<13} {r['published']:>9} {r['messages']:>8} {r['readings_handled']:>9} "
                f"{r['readings_dropped']:>9} {r['messages_held_over']:>6} {r['start_rss_mb']:>7.0f}MB "
                f"{r['peak_rss_mb']:>6.0f}MB {r['peak_rss_mb'] - r['start_rss_mb']:>5.0f}MB "
                f"{r['broker_peak_rss_mb']:>9.0f}MB",
                flush=True,
            )


if __name__ == "__main__":
    main()
