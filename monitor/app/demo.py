"""`monitor demo`: the whole loop on a bundled recording, with nothing to set up.

1. reads the bundled recording of a pump (monitor/data/demo-pump.jsonl.gz),
2. trains a model on its normal part,
3. starts a local broker (system mosquitto, else the pure-Python amqtt) on a free port,
4. starts the daemon against it, with metrics on http://127.0.0.1:<port>/metrics,
5. replays the rest of the feed (which carries a cavitation fault) to the broker at
   `--speed` x real time and prints alerts as they fire, with the contributing channels,
6. stops cleanly on Ctrl-C or after `--duration` seconds. Exit 0 if the fault was
   alerted, 1 if it was not.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import yaml

from monitor.app.columns import ReadingColumns
from monitor.app.replay import replay_to_broker
from monitor.app.service import Service
from monitor.app.training import StreamData, threads_arg, train_bundle
from monitor.core.config import ConfigError, load_config
from monitor.io.broker import free_port, start_local_broker
from monitor.io.codec import Codec
from monitor.io.recording import read_recording

DATA = Path(__file__).resolve().parents[1] / "data" / "demo-pump.jsonl.gz"  # monitor/data
NORMAL_UNTIL = 1_767_225_600.0 + 40 * 60  # end of the normal part of the recording
STREAM = "demo/pump1"

DEMO_CONFIG = {
    "topics": [{"template": "plant/{site}/{asset}", "format": "json_multi", "stream": "{site}/{asset}"}],
    "stream": {
        "channels": ["flow", "pressure", "current", "vibration", "temperature"],
        "period_seconds": 1.0,
        "max_gap_seconds": 5.0,
    },
    "model": {
        "architecture": "conv1d",
        "window_size": 30,
        "conv_channels": [16, 16],
        "code_size": 6,
        "epochs": 25,
        "patience": 5,
        "seed": 0,
    },
    "calibration": {"method": "pot", "target_false_alarm_rate": 0.001, "factor": 1.3, "holdout_fraction": 0.25},
    "alarm": {"k": 3, "n": 5, "resolve_m": 20},
    "alerts": {"topic": "monitor/alerts/{stream}", "qos": 1},
}


def _say(text: str) -> None:
    print(text, flush=True)


def run_demo(
    speed: float = 20.0,
    duration: float | None = None,
    metrics_port: int = 9108,
    broker_kind: str = "auto",
    workdir: str | None = None,
    *,
    epochs: int | None = None,
    threads: int | str | None = None,
) -> int:
    """The demo; `epochs` and `threads` override the demo config's (tests train for fewer epochs)."""
    started = time.monotonic()
    work = Path(workdir or tempfile.mkdtemp(prefix="monitor-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    messages = list(read_recording(DATA))
    normal = [m for m in messages if m.received_at < NORMAL_UNTIL]
    live = [m for m in messages if m.received_at >= NORMAL_UNTIL]
    _say(f"[demo] recording {DATA.name}: {len(messages)} messages; training on the first {len(normal)} (normal)")

    cfg_path = work / "demo.yaml"
    cfg_path.write_text(yaml.safe_dump({**DEMO_CONFIG, "models": {"dir": str(work / "models"), "poll_seconds": 1.0}}))
    cfg = load_config(cfg_path, environ={})
    if epochs is not None:
        if epochs < 1:
            raise ConfigError("--epochs", f"must be >= 1, got {epochs}")
        cfg.model.epochs = epochs
    if threads is not None:
        cfg.model.threads = threads
    codec = Codec(cfg.topics)
    readings = [r for m in normal for r in codec.decode(m.topic, m.payload, m.received_at)[0]]
    data = [StreamData(STREAM, list(cfg.stream.channels), readings=ReadingColumns.from_readings(readings, STREAM))]
    outcome = train_bundle(data, cfg, work / "models", write_plots=True)
    m = outcome.manifest
    _say(
        f"[demo] trained model {m.version} in {outcome.report['seconds_total']:.1f}s "
        f"(threshold {m.threshold:.4g}, {m.threshold_method}); report in {outcome.bundle_path}"
    )

    broker = start_local_broker(broker_kind)
    _say(f"[demo] {broker.kind} broker on {broker.host}:{broker.port}")
    cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.protocol = broker.host, broker.port, broker.protocol
    cfg.mqtt.client_id = "monitor-demo"
    cfg.mqtt.clean_start = True
    cfg.metrics.port = metrics_port if metrics_port else free_port()
    try:
        service = Service(cfg, manual_ack=False)
        service.start()
    except OSError as exc:  # metrics port taken: pick a free one
        if metrics_port == 0:
            raise
        cfg.metrics.port = free_port()
        _say(f"[demo] port {metrics_port} is busy ({exc.strerror}); using {cfg.metrics.port}")
        service = Service(cfg, manual_ack=False)
        service.start()
    assert service.http is not None  # start() serves the metrics
    _say(f"[demo] daemon running; metrics: http://127.0.0.1:{service.http.port}/metrics (also /healthz, /readyz)")

    fired = threading.Event()
    finished = threading.Event()

    def on_alert(client, userdata, msg) -> None:
        try:
            a = json.loads(msg.payload)
        except ValueError:
            return
        if a.get("kind", "anomaly") == "regime_change":  # a one-off event, no top channels
            d = a.get("detail", {})
            when = time.strftime("%H:%M:%S", time.gmtime(a["ended_at"] or a["started_at"]))
            _say(
                f"[alert] REGIME   {a['stream']} at {when} UTC  errors went {d.get('direction', '?')} "
                f"({d.get('level_before', float('nan')):.3g} -> {d.get('level_after', float('nan')):.3g}); "
                "the stream re-baselined"
            )
            return
        chans = ", ".join(
            f"{c['channel']} (observed {c['observed']:.3g}, expected {c['reconstructed']:.3g})"
            for c in a.get("top_channels", [])
        )
        when = time.strftime("%H:%M:%S", time.gmtime(a["started_at"] if a["state"] == "firing" else a["ended_at"]))
        _say(
            f"[alert] {a['state'].upper():8} {a['stream']} at {when} UTC  score {a['current_score']:.1f}x "
            f"threshold (peak {a['peak_score']:.1f}x)  top channels: {chans}"
        )
        if a["state"] == "firing":
            fired.set()

    proto = mqtt.MQTTv5 if broker.protocol == "5" else mqtt.MQTTv311
    watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="monitor-demo-viewer", protocol=proto)
    watcher.on_message = on_alert
    watcher.on_connect = lambda c, *a: c.subscribe("monitor/alerts/#", qos=1)
    watcher.connect(broker.host, broker.port)
    watcher.loop_start()
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="monitor-demo-feed", protocol=proto)
    publisher.connect(broker.host, broker.port)
    publisher.loop_start()

    deadline = None if duration is None else started + duration
    try:
        while not service.ready()[0]:
            if deadline and time.monotonic() > deadline:
                raise TimeoutError("the daemon did not become ready in time")
            time.sleep(0.1)
        _say(
            f"[demo] replaying {len(live)} messages ({len(live) / 60:.0f} min of feed, a cavitation fault inside) "
            f"at {speed:g}x; Ctrl-C stops"
        )

        def feed() -> None:
            replay_to_broker(live, lambda t, p, q, r: publisher.publish(t, p, q, r), speed=speed)
            finished.set()

        threading.Thread(target=feed, name="demo-feed", daemon=True).start()
        finished.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        # settle: until the daemon has taken in and scored what was sent, then a moment for the
        # last alerts to travel back (at most 3 s in all, and never past the deadline)
        settle = time.monotonic() + 3.0
        if deadline is not None:
            settle = min(settle, deadline)
        while time.monotonic() < settle and (service.queue.qsize() or _received(service) < len(live)):
            finished.wait(0.05)
        fired.wait(max(0.0, min(0.5, settle - time.monotonic())))
    except KeyboardInterrupt:
        _say("[demo] interrupted")
    finally:
        publisher.loop_stop()
        publisher.disconnect()
        watcher.loop_stop()
        watcher.disconnect()
        service.shutdown()
        broker.stop()
    counts = service.pipeline.counters if service.pipeline else {}
    _say(
        f"[demo] done: {counts.get('accepted', 0)} readings, {counts.get('windows_scored', 0)} windows scored; "
        f"fault {'ALERTED' if fired.is_set() else 'NOT alerted'}"
    )
    if workdir is None:  # our own temporary folder: nothing in it is meant to outlive the demo
        shutil.rmtree(work, ignore_errors=True)
    return 0 if fired.is_set() else 1


def _received(service: Service) -> int:
    """Messages the daemon's MQTT intake has taken in so far."""
    return service.ingest.stats["messages"] if service.ingest is not None else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="monitor demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--speed", type=float, default=20.0, help="replay speed (x real time)")
    ap.add_argument("--duration", type=float, help="stop after this many seconds")
    ap.add_argument("--metrics-port", type=int, default=9108)
    ap.add_argument("--broker", choices=["auto", "mosquitto", "amqtt"], default="auto")
    ap.add_argument("--epochs", type=int, help="training epochs (default: the demo config's 25; fewer is faster)")
    ap.add_argument("--threads", type=threads_arg, help='torch threads: a count or "auto" (default 1)')
    args = ap.parse_args(argv)
    return run_demo(args.speed, args.duration, args.metrics_port, args.broker, epochs=args.epochs, threads=args.threads)


if __name__ == "__main__":
    sys.exit(main())
