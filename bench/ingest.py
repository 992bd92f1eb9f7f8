"""Ingest-and-score throughput, latency and 10k-stream footprint of the live daemon.

One command, one private Mosquitto, three consumers of the same backlog:

  ceiling  a bare paho subscriber: orjson-decode, append to a per-topic deque, nothing else
  naive    decode, keep a per-stream window by hand, one batch-1 torch forward per reading
  daemon   monitor.app.service.Service with a trained bundle (real MQTTIngest/Pipeline/Scorer);
           done when the score listener has seen every window

Method: each consumer first connects once with a fixed client id and a persistent session
(MQTT v5, clean_start False, session expiry) and a QoS 1 subscription, then disconnects; a
publisher then publishes the backlog at QoS 1 (the broker queues it); the consumer
reconnects and the clock runs from connect until the last reading is handled. So the
publisher never competes for the CPU while a consumer is measured. Variants run
interleaved, `--repeats` times; medians are quoted.

The default model (`--model univariate`) is univariate (one channel, window 16, stride 1,
dense autoencoder), so one reading = one frame = one scored window: the heaviest scoring
load per reading, with the lightest possible forward pass (~60 us at batch 1).

`--model pump` is the realistic one: configs/pump.yaml's architecture (conv1d, window 30,
conv_channels [16, 32], code 8, 5 channels flow/pressure/current/vibration/temperature),
trained for a few epochs on monitor.core.synthetic.pump() data. Single-reading messages go to
per-channel topics `bench/s{i}/pump/{channel}` as {"ts", "value"}; each stream publishes
its 5 channels for time t, then t+1, ... (streams interleaved per time step), so the
daemon aligns 5 messages into one frame and scores one window per frame. 100-reading
messages are a JSON array of 20 json_multi rows {"ts", flow, pressure, ...} on
`bench/s{i}/pump`. The naive loop decodes, keeps per-stream last values per channel and a
deque of the last 30 frames, and runs one batch-1 forward per reading; it runs twice,
with torch's default intra-op threads (`naive`) and with 1 (`naive1t`, much faster for a
batch-1 conv1d on 2 shared cores). Only the throughput section runs for this model.

Also measured: publish-to-score and publish-to-alert latency (p50/p99) with a paced
publisher at half the daemon's sustained single-reading rate and faults injected so alerts
fire; and 10 000 streams: resident memory before/after and /metrics scrape time.

    .venv/bin/python bench/ingest.py            # full run (~3-4 min on 2 cores)
    .venv/bin/python bench/ingest.py --quick    # smoke run
    .venv/bin/python bench/ingest.py --model pump --repeats 3   # realistic model, throughput only
"""

from __future__ import annotations

import argparse
import collections
import logging
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402
import orjson  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
import torch  # noqa: E402
from broker import Mosquitto  # noqa: E402  (tests/broker.py)
from daemon_support import config_from  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from monitor.app.service import Service  # noqa: E402
from monitor.app.training import StreamData, train_bundle  # noqa: E402
from monitor.core.model.bundle import load_bundle  # noqa: E402
from monitor.core.synthetic import CHANNELS as PUMP_CHANNELS  # noqa: E402
from monitor.core.synthetic import pump  # noqa: E402
from monitor.io import mqtt_fast  # noqa: E402

WINDOW = 16
CHANNEL = "value"
TOPIC_PREFIX = "bench"
PERIOD = 60.0  # seconds of the synthetic sine

MODEL_RAW = {
    "stream": {"channels": [CHANNEL], "period_seconds": 1.0, "max_gap_seconds": 5},
    "model": {
        "architecture": "dense",
        "window_size": WINDOW,
        "stride": 1,
        "hidden": [32],
        "code_size": 6,
        "epochs": 8,
        "patience": 3,
        "seed": 1,
    },
    "calibration": {"method": "quantile", "quantile": 0.999, "factor": 1.5, "holdout_fraction": 0.25},
}


def signal_values(n: int, seed: int, faults: list[tuple[int, int]] = ()) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    v = np.sin(2 * np.pi * t / PERIOD) + rng.normal(0, 0.05, n)
    for a, b in faults:
        v[a:b] += 4.0
    return v


def train_model(models_dir: Path) -> Path:
    cfg = config_from(dict(MODEL_RAW))
    n = 3000
    t = np.arange(n, dtype=np.float64) + 1_600_000_000.0
    v = signal_values(n, seed=3)[:, None]
    out = train_bundle([StreamData("train/s0", [CHANNEL], t, v)], cfg, models_dir, write_plots=False)
    return out.bundle_path


# configs/pump.yaml's model (architecture and shapes); few epochs: quality does not matter here
PUMP_WINDOW = 30
PUMP_RAW = {
    "stream": {"channels": list(PUMP_CHANNELS), "period_seconds": 1.0, "max_gap_seconds": 5},
    "model": {
        "architecture": "conv1d",
        "window_size": PUMP_WINDOW,
        "stride": 1,
        "code_size": 8,
        "conv_channels": [16, 32],
        "kernel_size": 5,
        "noise_std": 0.1,
        "mask_prob": 0.05,
        "epochs": 3,
        "patience": 3,
        "seed": 1,
    },
    "calibration": {"method": "quantile", "quantile": 0.999, "factor": 1.5, "holdout_fraction": 0.25},
}
# per-channel topics for single readings; one topic per stream for batched json_multi rows
PUMP_TOPICS = [
    {
        "template": TOPIC_PREFIX + "/{site}/pump/{channel}",
        "format": "auto",
        "stream": "{site}/pump",
        "channel": "{channel}",
    },
    {"template": TOPIC_PREFIX + "/{site}/pump", "format": "auto", "stream": "{site}/pump", "channel": ""},
]


def train_pump_model(models_dir: Path) -> Path:
    cfg = config_from({k: dict(v) for k, v in PUMP_RAW.items()})
    t, v, _ = pump(3000, start_time=1_600_000_000.0, seed=3)
    out = train_bundle([StreamData("train/pump", list(PUMP_CHANNELS), t, v)], cfg, models_dir, write_plots=False)
    return out.bundle_path


# --------------------------------------------------------------------------- workloads


class Workload:
    """A backlog: `messages` (topic, payload) and how many readings / windows it carries."""

    def __init__(
        self, name: str, n_streams: int, per_stream: int, per_message: int, seed: int = 5, start: float | None = None
    ):
        self.name = name
        self.n_streams = n_streams
        self.per_stream = per_stream
        self.per_message = per_message
        start = float(int(time.time()) - per_stream - 120) if start is None else start
        values = [signal_values(per_stream, seed + s) for s in range(n_streams)]
        msgs = []
        # interleave streams message by message (what a site broker sees)
        for j in range(0, per_stream, per_message):
            for s in range(n_streams):
                topic = f"{TOPIC_PREFIX}/s{s}"
                if per_message == 1:
                    body = orjson.dumps({"ts": start + j, "value": float(values[s][j])})
                else:
                    body = orjson.dumps(
                        [
                            {"ts": start + k, "value": float(values[s][k])}
                            for k in range(j, min(j + per_message, per_stream))
                        ]
                    )
                msgs.append((topic, body))
        self.messages = msgs
        self.readings = n_streams * per_stream
        self.items = self.readings  # what the ceiling counts (one JSON element per reading)
        self.windows = n_streams * max(0, per_stream - WINDOW + 1)


class PumpWorkload:
    """A pump backlog: `per_stream` time steps of 5 channels per stream.

    per_message 1: one reading per message on `bench/s{i}/pump/{channel}`; each stream
    publishes its 5 channels for time t, then (after the other streams) t + 1, ...
    per_message 100 (any multiple of 5): a JSON array of per_message / 5 json_multi rows
    {"ts": .., "flow": .., ...} on `bench/s{i}/pump`, streams interleaved message by message.
    """

    def __init__(
        self, name: str, n_streams: int, per_stream: int, per_message: int, seed: int = 5, start: float | None = None
    ):
        n_ch = len(PUMP_CHANNELS)
        if per_message != 1 and per_message % n_ch:
            raise ValueError(f"per_message must be 1 or a multiple of {n_ch}")
        self.name = name
        self.n_streams = n_streams
        self.per_stream = per_stream
        self.per_message = per_message
        start = float(int(time.time()) - per_stream - 120) if start is None else start
        values = [pump(per_stream, start_time=start, seed=seed + s)[1].tolist() for s in range(n_streams)]
        msgs = []
        if per_message == 1:
            for j in range(per_stream):
                for s in range(n_streams):
                    row = values[s][j]
                    for c, ch in enumerate(PUMP_CHANNELS):
                        msgs.append(
                            (f"{TOPIC_PREFIX}/s{s}/pump/{ch}", orjson.dumps({"ts": start + j, "value": float(row[c])}))
                        )
            items = n_streams * per_stream * n_ch
        else:
            rows = per_message // n_ch
            for j in range(0, per_stream, rows):
                for s in range(n_streams):
                    body = [
                        {"ts": start + k, **{ch: float(x) for ch, x in zip(PUMP_CHANNELS, values[s][k], strict=True)}}
                        for k in range(j, min(j + rows, per_stream))
                    ]
                    msgs.append((f"{TOPIC_PREFIX}/s{s}/pump", orjson.dumps(body)))
            items = n_streams * per_stream
        self.messages = msgs
        self.readings = n_streams * per_stream * n_ch
        self.items = items  # JSON elements (the ceiling's unit): readings, or rows
        self.windows = n_streams * max(0, per_stream - PUMP_WINDOW + 1)


class ModelSpec:
    """What differs between `--model univariate` (the default) and `--model pump`."""

    def __init__(
        self,
        name: str,
        raw: dict,
        topics: list[dict],
        window: int,
        train,
        workload,
        label: str,
        variants: tuple[str, ...] = ("ceiling", "naive", "daemon"),
    ):
        self.name = name
        self.variants = variants
        self.raw = raw
        self.topics = topics
        self.window = window
        self.train = train
        self.workload = workload
        self.label = label

    def make_workload(self, name: str, n_streams: int, messages: int, per_message: int) -> object:
        """A backlog of about `messages` messages of `per_message` readings."""
        if self.name == "pump":
            return self.workload(
                name, n_streams, messages * per_message // n_streams // len(PUMP_CHANNELS), per_message
            )
        return self.workload(name, n_streams, messages * per_message // n_streams, per_message)


UNIVARIATE = ModelSpec(
    "univariate",
    MODEL_RAW,
    [{"template": TOPIC_PREFIX + "/{asset}", "format": "auto", "stream": "{asset}", "channel": CHANNEL}],
    WINDOW,
    train_model,
    Workload,
    f"dense AE, 1 channel, window {WINDOW}, stride 1",
)
PUMP = ModelSpec(
    "pump",
    PUMP_RAW,
    PUMP_TOPICS,
    PUMP_WINDOW,
    train_pump_model,
    PumpWorkload,
    f"conv1d AE (configs/pump.yaml: conv_channels [16, 32], kernel 5, code 8), {len(PUMP_CHANNELS)} channels "
    f"{'/'.join(PUMP_CHANNELS)}, window {PUMP_WINDOW}, stride 1",
    # naive1t: the same naive loop with 1 torch intra-op thread (the stronger baseline on 2 cores)
    ("ceiling", "naive", "naive1t", "daemon"),
)
SPECS = {"univariate": UNIVARIATE, "pump": PUMP}


def _props(expiry: int = 3600) -> Properties:
    p = Properties(PacketTypes.CONNECT)
    p.SessionExpiryInterval = expiry
    return p


def _client(client_id: str) -> mqtt.Client:
    return mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)


def prime_session(port: int, client_id: str) -> None:
    """Connect once with a persistent session and a QoS 1 subscription, then leave."""
    c = _client(client_id)
    done = threading.Event()
    c.on_subscribe = lambda *a: done.set()
    c.on_connect = lambda cl, *a: cl.subscribe(f"{TOPIC_PREFIX}/#", qos=1)
    c.connect("127.0.0.1", port, clean_start=False, properties=_props())
    c.loop_start()
    assert done.wait(10), "subscription not acknowledged"
    c.disconnect()
    c.loop_stop()


def publish_backlog(port: int, messages: list[tuple[str, bytes]]) -> None:
    c = _client(f"bench-pub-{os.getpid()}")
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    infos = [c.publish(t, p, qos=1) for t, p in messages]
    for info in infos:
        info.wait_for_publish(60)
    c.disconnect()
    c.loop_stop()


def _finish(done: threading.Event, timeout: float, what: str) -> None:
    if not done.wait(timeout):
        raise RuntimeError(f"{what}: did not finish within {timeout} s")


# --------------------------------------------------------------------------- consumers


def run_ceiling(port: int, client_id: str, wl: Workload, timeout: float) -> float:
    per_topic: dict[str, collections.deque] = collections.defaultdict(collections.deque)
    state = {"n": 0, "end": 0.0}
    done = threading.Event()
    target = wl.items
    loads = orjson.loads

    def on_message(client, userdata, msg):
        doc = loads(msg.payload)
        q = per_topic[msg.topic]
        if type(doc) is list:
            q.extend(doc)
            state["n"] += len(doc)
        else:
            q.append(doc)
            state["n"] += 1
        if state["n"] >= target:
            state["end"] = time.perf_counter()
            done.set()

    c = _client(client_id)
    c.on_message = on_message
    t0 = time.perf_counter()
    c.connect("127.0.0.1", port, clean_start=False, properties=_props())
    c.loop_start()
    try:
        _finish(done, timeout, "ceiling")
    finally:
        c.disconnect()
        c.loop_stop()
    return wl.readings / (state["end"] - t0)


def run_naive(port: int, client_id: str, wl: Workload, bundle_dir: Path, timeout: float) -> float:
    bundle = load_bundle(bundle_dir)
    module = bundle.module.eval()
    m = bundle.manifest
    mean = m.scaler_mean[0]
    std = m.scaler_std[0]
    threshold = m.threshold
    windows: dict[str, collections.deque] = {}
    state = {"n": 0, "end": 0.0, "alarms": 0}
    done = threading.Event()
    target = wl.readings
    loads = orjson.loads

    def score(stream: str, value: float) -> None:
        w = windows.get(stream)
        if w is None:
            w = windows[stream] = collections.deque(maxlen=WINDOW)
        w.append((value - mean) / std)
        if len(w) == WINDOW:
            with torch.inference_mode():
                x = torch.tensor(list(w), dtype=torch.float32).reshape(1, WINDOW, 1)
                recon, _ = module(x)
                err = float(((recon - x) ** 2).mean())
            if err / threshold >= 1.0:
                state["alarms"] += 1

    def on_message(client, userdata, msg):
        doc = loads(msg.payload)
        stream = msg.topic
        for item in doc if type(doc) is list else (doc,):
            score(stream, float(item["value"]))
        state["n"] += len(doc) if type(doc) is list else 1
        if state["n"] >= target:
            state["end"] = time.perf_counter()
            done.set()

    c = _client(client_id)
    c.on_message = on_message
    t0 = time.perf_counter()
    c.connect("127.0.0.1", port, clean_start=False, properties=_props())
    c.loop_start()
    try:
        _finish(done, timeout, "naive")
    finally:
        c.disconnect()
        c.loop_stop()
    return wl.readings / (state["end"] - t0)


def run_naive_pump(
    port: int, client_id: str, wl: PumpWorkload, bundle_dir: Path, timeout: float, threads: int | None = None
) -> float:
    """The naive loop for the pump: per-stream last value per channel, a deque of the last
    W frames (a new frame when a newer timestamp arrives, else the current frame updated),
    one batch-1 forward of the (1, W, 5) window per reading.

    `threads`: torch intra-op threads for the forward passes (set in paho's thread, which
    runs them; torch's default is restored afterwards). None: torch's default, as a naive
    implementation would run; on 2 shared cores 1 is much faster for batch-1 conv1d."""
    bundle = load_bundle(bundle_dir)
    module = bundle.module.eval()
    m = bundle.manifest
    chans = list(m.channels)
    index = {c: i for i, c in enumerate(chans)}
    mean = list(m.scaler_mean)
    std = list(m.scaler_std)
    threshold = m.threshold
    n_ch = len(chans)
    W = PUMP_WINDOW
    streams: dict[str, list] = {}  # stream -> [last values, deque of frames, timestamp of the newest frame]
    state = {"n": 0, "end": 0.0, "alarms": 0, "threads_set": threads is None}
    done = threading.Event()
    target = wl.readings
    loads = orjson.loads
    default_threads = torch.get_num_threads()

    def score(stream: str, channel: str, ts: float, value: float) -> None:
        st = streams.get(stream)
        if st is None:
            st = streams[stream] = [[float("nan")] * n_ch, collections.deque(maxlen=W), None]
        last, frames = st[0], st[1]
        i = index[channel]
        z = (value - mean[i]) / std[i]
        last[i] = z
        if ts != st[2]:
            frames.append(list(last))
            st[2] = ts
        else:
            frames[-1][i] = z
        if len(frames) == W:
            with torch.inference_mode():
                x = torch.tensor(list(frames), dtype=torch.float32).reshape(1, W, n_ch)
                recon, _ = module(x)
                err = float(((recon - x) ** 2).mean())
            if err / threshold >= 1.0:
                state["alarms"] += 1

    def on_message(client, userdata, msg):
        if not state["threads_set"]:
            torch.set_num_threads(threads)
            state["threads_set"] = True
        doc = loads(msg.payload)
        topic = msg.topic
        if type(doc) is list:  # json_multi rows on bench/s{i}/pump
            n = 0
            for row in doc:
                ts = row["ts"]
                for key, value in row.items():
                    if key != "ts":
                        score(topic, key, ts, float(value))
                        n += 1
            state["n"] += n
        else:  # one reading on bench/s{i}/pump/{channel}
            stream, _, channel = topic.rpartition("/")
            score(stream, channel, doc["ts"], float(doc["value"]))
            state["n"] += 1
        if state["n"] >= target:
            state["end"] = time.perf_counter()
            done.set()

    c = _client(client_id)
    c.on_message = on_message
    t0 = time.perf_counter()
    c.connect("127.0.0.1", port, clean_start=False, properties=_props())
    c.loop_start()
    try:
        _finish(done, timeout, "naive")
    finally:
        c.disconnect()
        c.loop_stop()
        torch.set_num_threads(default_threads)  # threads started later (the daemon's) get the default
    return wl.readings / (state["end"] - t0)


AVAILABILITY = [True]


def daemon_config(
    port: int, models_dir: Path, client_id: str, clean: bool = False, spec: ModelSpec = UNIVARIATE, **extra
) -> object:
    raw = {k: dict(v) for k, v in spec.raw.items()}
    raw["stream"]["max_streams"] = extra.pop("max_streams", 10_000)
    raw.update(
        {
            "mqtt": {
                "host": "127.0.0.1",
                "port": port,
                "client_id": client_id,
                "clean_start": clean,
                "session_expiry_seconds": 3600,
                "reconnect_min_seconds": 0.1,
                "reconnect_max_seconds": 0.5,
            },
            "topics": [dict(t) for t in spec.topics],
            "alarm": {"k": 3, "n": 5, "resolve_m": 10},
            "alerts": {"topic": "monitor/alerts/{stream}", "qos": 1, "log": False},
            "metrics": {"address": "127.0.0.1", "port": 0},
            "models": {"dir": str(models_dir), "poll_seconds": 5.0},
        }
    )
    raw["availability"] = {"enabled": AVAILABILITY[0]}  # --no-availability: the cost of the state topics
    raw.update(extra)
    return config_from(raw)


def make_service(cfg, listeners=(), **kw) -> Service:
    svc = Service(cfg, score_listeners=list(listeners), **kw)
    svc._poll_model()  # load + test-score the bundle before the clock starts
    svc._install_pending_model()
    return svc


# only with --only: the daemon reading packets with paho's own reader; the daemon with
# per-stream online calibration off (the `daemon` variant runs with it on, the default)
EXTRA_VARIANTS = ("daemonpr", "daemonnocal")


def run_daemon(
    port: int,
    client_id: str,
    wl: Workload,
    models_dir: Path,
    timeout: float,
    spec: ModelSpec = UNIVARIATE,
    paho_reader: bool = False,
    calibration: bool = True,
) -> float:
    state = {"n": 0, "end": 0.0}
    done = threading.Event()
    target = wl.windows

    def listener(scores):
        state["n"] += len(scores)
        if state["n"] >= target and not done.is_set():
            state["end"] = time.perf_counter()
            done.set()

    extra = {} if calibration else {"calibration": {**spec.raw.get("calibration", {}), "online": {"enabled": False}}}
    svc = make_service(daemon_config(port, models_dir, client_id, spec=spec, **extra), [listener])
    mqtt_fast._BUFFERED_READ = not paho_reader
    t0 = time.perf_counter()
    svc.start()
    try:
        _finish(done, timeout, "daemon")
    finally:
        svc.shutdown()
        mqtt_fast._BUFFERED_READ = True
    counters = svc.pipeline.counters
    if counters["accepted"] != wl.readings:
        raise RuntimeError(f"daemon accepted {counters['accepted']} of {wl.readings} readings: {dict(counters)}")
    return wl.readings / (state["end"] - t0)


# --------------------------------------------------------------------------- latency


def _paced_publisher(port: int, rate: float, per_stream: int, n_streams: int, start: float, out) -> None:
    """Child process: publish the faulty feed at `rate` msgs/s; send back publish times."""
    faults = [(a, a + 12) for a in range(200, per_stream - 40, 300)]
    values = [signal_values(per_stream, 100 + s, faults) for s in range(n_streams)]
    pub = _client(f"bench-paced-{os.getpid()}")
    pub.max_inflight_messages_set(1000)
    pub.max_queued_messages_set(0)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    interval = 1.0 / rate
    sent = []
    t_next = time.perf_counter()
    for j in range(per_stream):
        for s in range(n_streams):
            body = orjson.dumps({"ts": start + j, "value": float(values[s][j])})
            now = time.perf_counter()
            if now < t_next:
                time.sleep(t_next - now)
            t_next += interval
            sent.append((s, j, time.time()))
            pub.publish(f"{TOPIC_PREFIX}/s{s}", body, qos=1)
    time.sleep(0.5)
    pub.disconnect()
    pub.loop_stop()
    out.put(sent)


def run_latency(port: int, models_dir: Path, rate: float, seconds: float, n_streams: int = 10) -> dict:
    """Paced single-reading publisher (another process) at `rate` msgs/s with faults injected:
    publish->score per reading (score listener) and publish->alert per firing alert (MQTT
    alert receipt minus the publish time of the reading whose window fired it)."""
    per_stream = int(rate * seconds / n_streams)
    start = float(int(time.time()) - per_stream - 120)
    scored: list[tuple[str, float, float]] = []
    trigger: dict[str, tuple[str, float]] = {}  # alert_id -> (stream, data time of the window that fired)
    alerts: list[tuple[str, float]] = []
    lock = threading.Lock()

    def listener(scores):
        now = time.time()
        scored.extend((s.stream, s.timestamp, now) for s in scores)

    cfg = daemon_config(port, models_dir, "bench-latency", clean=True)
    svc = make_service(cfg, [listener])
    alarm = svc.pipeline.alarm
    orig_update = alarm.update

    def update(stream, timestamp, *a):  # bench instrumentation: which window fired the alert
        alert = orig_update(stream, timestamp, *a)
        if alert is not None and alert.state == "firing":
            with lock:
                trigger[alert.alert_id] = (stream, timestamp)
        return alert

    alarm.update = update
    sub = _client("bench-alerts")
    got = threading.Event()

    def on_alert(client, userdata, msg):
        now = time.time()
        body = orjson.loads(msg.payload)
        if body["state"] == "firing":
            alerts.append((body["alert_id"], now))

    sub.on_message = on_alert
    sub.on_subscribe = lambda *a: got.set()
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    sub.subscribe("monitor/alerts/#", qos=1)
    got.wait(5)
    svc.start()
    deadline = time.monotonic() + 10
    while not svc.ingest.subscribed and time.monotonic() < deadline:
        time.sleep(0.01)
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    child = ctx.Process(target=_paced_publisher, args=(port, rate, per_stream, n_streams, start, out))
    child.start()
    sent = out.get(timeout=seconds * 3 + 60)
    child.join(10)
    time.sleep(0.5)
    svc.shutdown()
    sub.disconnect()
    sub.loop_stop()
    pub_time = {(f"s{s}", start + j): t for s, j, t in sent}
    score_lat = [now - pub_time[(st, ts)] for st, ts, now in scored if (st, ts) in pub_time]
    alert_lat = [now - pub_time[trigger[aid]] for aid, now in alerts if aid in trigger and trigger[aid] in pub_time]
    span = sent[-1][2] - sent[0][2] if len(sent) > 1 else float("nan")
    return {
        "rate": rate,
        "achieved": len(sent) / span,
        "messages": len(sent),
        "scores": len(score_lat),
        "alerts": len(alert_lat),
        "score_p50_ms": 1e3 * float(np.percentile(score_lat, 50)) if score_lat else float("nan"),
        "score_p99_ms": 1e3 * float(np.percentile(score_lat, 99)) if score_lat else float("nan"),
        "alert_p50_ms": 1e3 * float(np.percentile(alert_lat, 50)) if alert_lat else float("nan"),
        "alert_p99_ms": 1e3 * float(np.percentile(alert_lat, 99)) if alert_lat else float("nan"),
        "alert_max_ms": 1e3 * max(alert_lat) if alert_lat else float("nan"),
    }


# --------------------------------------------------------------------------- 10k streams


def rss_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def _streams_child(port: int, models_dir: Path, n_streams: int, per_stream: int, scrapes: int, out) -> None:
    logging.basicConfig(level=logging.WARNING)
    out.put(run_streams(port, models_dir, n_streams, per_stream, scrapes))


def run_streams_fresh(port: int, models_dir: Path, n_streams: int, per_stream: int, scrapes: int) -> dict:
    """`run_streams` in a fresh process, so RSS is not muddied by the earlier runs."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    child = ctx.Process(target=_streams_child, args=(port, models_dir, n_streams, per_stream, scrapes, out))
    child.start()
    res = out.get(timeout=300)
    child.join(30)
    return res


def run_streams(port: int, models_dir: Path, n_streams: int, per_stream: int, scrapes: int) -> dict:
    wl = Workload("streams", n_streams, per_stream, per_stream, seed=7)
    done = threading.Event()
    seen = {"n": 0}

    def listener(scores):
        seen["n"] += len(scores)
        if seen["n"] >= wl.windows:
            done.set()

    client_id = "bench-streams"
    prime_session(port, client_id)
    publish_backlog(port, wl.messages)
    cfg = daemon_config(port, models_dir, client_id, max_streams=n_streams)
    svc = make_service(cfg, [listener])
    svc.start()
    before = rss_kib()  # model loaded, HTTP up, no stream state yet
    _finish(done, 120, "10k streams")
    time.sleep(0.2)
    after = rss_kib()
    url = f"http://127.0.0.1:{svc.http.port}/metrics"
    times, size = [], 0
    for _ in range(scrapes):
        t0 = time.perf_counter()
        with urllib.request.urlopen(url, timeout=10) as resp:
            size = len(resp.read())
        times.append(time.perf_counter() - t0)
    active = len(svc.pipeline.streams)
    labelled = svc.metrics.labelled_streams
    svc.shutdown()
    return {
        "streams": active,
        "labelled": labelled,
        "rss_before_mib": before / 1024,
        "rss_after_mib": after / 1024,
        "per_stream_kib": (after - before) / max(1, active),
        "scrape_ms": 1e3 * statistics.median(times),
        "scrape_max_ms": 1e3 * max(times),
        "scrape_bytes": size,
    }


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--streams", type=int, default=10, help="streams in the throughput backlogs")
    ap.add_argument(
        "--single",
        type=int,
        default=None,
        help="single-reading messages per backlog (default 20 000; --model pump: 50 000)",
    )
    ap.add_argument(
        "--single-naive",
        type=int,
        default=None,
        help="... for the naive loop (slow; default 10 000; --model pump: 30 000)",
    )
    ap.add_argument("--batch", type=int, default=2_000, help="100-reading messages per backlog")
    ap.add_argument(
        "--batch-naive", type=int, default=None, help="... for the naive loop (slow; default 100; --model pump: 300)"
    )
    ap.add_argument("--latency-seconds", type=float, default=10.0)
    ap.add_argument("--many-streams", type=int, default=10_000)
    ap.add_argument("--quick", action="store_true", help="a smoke run: 1 repeat, small backlogs")
    ap.add_argument(
        "--no-availability", action="store_true", help="daemon without availability / per-stream state topics"
    )
    ap.add_argument(
        "--model",
        choices=sorted(SPECS),
        default="univariate",
        help="univariate: dense AE, 1 channel, window 16 (default); pump: configs/pump.yaml's "
        "conv1d AE, 5 channels, window 30, per-channel topics (throughput section only)",
    )
    ap.add_argument(
        "--throughput-only",
        action="store_true",
        help="skip the sustained-rate, latency and 10k-stream sections (implied by --model pump)",
    )
    ap.add_argument(
        "--only",
        default="",
        help="comma-separated FORMAT-VARIANT pairs to run, e.g. single-daemon,single-ceiling "
        "(formats: single, batch100; variants: ceiling, naive, daemon, and daemonpr: the "
        "daemon with paho's own packet reader, an A/B of the buffered reader; daemonnocal: "
        "the daemon with calibration.online off); skips the "
        "latency and 10k-stream sections",
    )
    args = ap.parse_args()
    AVAILABILITY[0] = not args.no_availability
    # The pump's window is 30 frames of 5 readings: larger backlogs keep the unscored warm-up
    # (29 frames per stream, in every variant) a few per cent of each run.
    for key, uni, pmp in (("single", 20_000, 50_000), ("single_naive", 10_000, 30_000), ("batch_naive", 100, 300)):
        if getattr(args, key) is None:
            setattr(args, key, pmp if args.model == "pump" else uni)
    if args.quick:
        args.repeats, args.single, args.single_naive, args.batch, args.batch_naive = 1, 4000, 2000, 300, 20
        args.latency_seconds, args.many_streams = 3.0, 1000
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    torch.manual_seed(0)
    cmd = " ".join([".venv/bin/python", "bench/ingest.py", *sys.argv[1:]])
    print(f"# {cmd}")
    print(
        f"# cores: {os.cpu_count()}, torch {torch.__version__} (threads {torch.get_num_threads()}), "
        f"paho {mqtt.__version__ if hasattr(mqtt, '__version__') else ''}, python {sys.version.split()[0]}"
    )

    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    models = tmp / "models"
    t0 = time.perf_counter()
    spec = SPECS[args.model]
    bundle = spec.train(models)
    print(f"# model: {spec.label} (trained in {time.perf_counter() - t0:.1f} s)")
    S = args.streams
    mk = spec.make_workload
    loads = {
        "single": {
            "main": mk("single", S, args.single, 1),
            "naive": mk("single-naive", S, args.single_naive, 1),
        },
        "batch100": {
            "main": mk("batch100", S, args.batch, 100),
            "naive": mk("batch100-naive", S, args.batch_naive, 100),
        },
    }
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    for x in only:
        fmt, _, variant = x.partition("-")
        if fmt not in loads or variant not in spec.variants + EXTRA_VARIANTS:
            ap.error(f"--only: unknown pair {x!r}")
    results: dict[str, dict[str, list[float]]] = {fmt: collections.defaultdict(list) for fmt in loads}
    broker = Mosquitto(
        tmp / "broker",
        persistence=False,
        extra_config="max_queued_messages 0\nmax_inflight_messages 0\nmax_queued_bytes 0",
    )
    broker.start()
    try:
        seq = 0
        for rep in range(args.repeats):
            for fmt, wls in loads.items():
                for variant in spec.variants + EXTRA_VARIANTS:
                    if (only and f"{fmt}-{variant}" not in only) or (not only and variant in EXTRA_VARIANTS):
                        continue
                    wl = wls["naive" if variant.startswith("naive") else "main"]
                    seq += 1
                    cid = f"bench-{variant}-{seq}"
                    prime_session(broker.port, cid)
                    publish_backlog(broker.port, wl.messages)
                    if variant == "ceiling":
                        r = run_ceiling(broker.port, cid, wl, 120)
                    elif variant == "naive" and spec is PUMP:
                        r = run_naive_pump(broker.port, cid, wl, bundle, 300)
                    elif variant == "naive1t":
                        r = run_naive_pump(broker.port, cid, wl, bundle, 300, threads=1)
                    elif variant == "naive":
                        r = run_naive(broker.port, cid, wl, bundle, 300)
                    elif variant == "daemonpr":
                        r = run_daemon(broker.port, cid, wl, models, 300, spec=spec, paho_reader=True)
                    elif variant == "daemonnocal":
                        r = run_daemon(broker.port, cid, wl, models, 300, spec=spec, calibration=False)
                    else:
                        r = run_daemon(broker.port, cid, wl, models, 300, spec=spec)
                    results[fmt][variant].append(r)
                    print(f"  rep {rep + 1} {fmt:8s} {variant:7s} {r:12,.0f} readings/s", flush=True)
        print()
        if only:
            for fmt, res in results.items():
                for v, rs in res.items():
                    print(
                        f"{fmt}-{v}: median {statistics.median(rs):12,.0f} readings/s   runs: "
                        + ", ".join(f"{x:,.0f}" for x in rs)
                    )
                if "ceiling" in res and "daemon" in res:
                    ratio = statistics.median(res["daemon"]) / statistics.median(res["ceiling"])
                    print(f"  {fmt} daemon/ceiling {ratio:.2f}x")
            return 0
        med = {fmt: {v: statistics.median(rs) for v, rs in res.items()} for fmt, res in results.items()}
        for fmt in loads:
            m = med[fmt]
            wl = loads[fmt]["main"]
            print(
                f"{fmt}: {len(wl.messages)} msgs x {wl.per_message} readings, {S} streams "
                f"(naive: {len(loads[fmt]['naive'].messages)} msgs); medians of {args.repeats}"
            )
            for v in spec.variants:
                print(f"  {v:8s} {m[v]:12,.0f} readings/s   runs: " + ", ".join(f"{x:,.0f}" for x in results[fmt][v]))
            print(
                f"  daemon/ceiling {m['daemon'] / m['ceiling']:.2f}x   daemon/naive {m['daemon'] / m['naive']:.1f}x"
                + (f"   daemon/naive1t {m['daemon'] / m['naive1t']:.1f}x" if "naive1t" in m else "")
            )
        s, b = med["single"], med["batch100"]
        print("\ntargets:")
        print(
            f"  single: daemon/ceiling {s['daemon'] / s['ceiling']:.2f} (>= 0.9: "
            f"{'met' if s['daemon'] >= 0.9 * s['ceiling'] else 'NOT met'}), "
            f"daemon/naive {s['daemon'] / s['naive']:.1f} "
            f"(>= 8: {'met' if s['daemon'] >= 8 * s['naive'] else 'NOT met'})"
        )
        print(
            f"  batch100: daemon/ceiling {b['daemon'] / b['ceiling']:.2f} (>= 0.7: "
            f"{'met' if b['daemon'] >= 0.7 * b['ceiling'] else 'NOT met'})"
        )
        if args.throughput_only or spec is not UNIVARIATE:
            if "naive1t" in s:
                print(
                    f"  single: daemon/naive1t {s['daemon'] / s['naive1t']:.1f} (>= 8: "
                    f"{'met' if s['daemon'] >= 8 * s['naive1t'] else 'NOT met'}; the faster naive baseline)"
                )
            if spec is not UNIVARIATE:
                print(
                    f"  batch100: daemon/naive {b['daemon'] / b['naive']:.1f}"
                    + (f", daemon/naive1t {b['daemon'] / b['naive1t']:.1f}" if "naive1t" in b else "")
                )
                print(
                    f"\n(--model {spec.name}: throughput only; the sustained-rate, latency and 10k-stream "
                    "sections use the univariate model)"
                )
            return 0

        # "Sustained" with a live publisher on the same 2 cores: the highest paced rate at which
        # the daemon scores (nearly) every window while publishing, stepping down from the
        # backlog rate by 20 % (publisher, broker and daemon then share the machine).
        live_rate, rate = None, s["daemon"]
        while rate >= 500:
            probe = run_latency(broker.port, models, rate=rate, seconds=5.0)
            expected = probe["messages"] - 10 * (WINDOW - 1)
            keeps_up = probe["scores"] >= 0.99 * expected and probe["score_p99_ms"] < 1000
            print(
                f"  sustained? {rate:,.0f} msgs/s asked, {probe['achieved']:,.0f} published: "
                f"{probe['scores']}/{expected} windows scored, p99 {probe['score_p99_ms']:.0f} ms -> "
                f"{'keeps up' if keeps_up else 'falls behind'}"
            )
            if keeps_up:
                live_rate = probe["achieved"]
                break
            rate *= 0.8
        if live_rate:
            print(f"sustained live single-reading rate (publisher on the same machine): {live_rate:,.0f} msgs/s")
        runs = [(0.5, s["daemon"], "backlog"), (0.25, s["daemon"], "backlog")]
        if live_rate:
            runs += [(0.5, live_rate, "sustained live"), (0.25, live_rate, "sustained live")]
        for frac, base, what in runs:
            lat = run_latency(broker.port, models, rate=base * frac, seconds=args.latency_seconds)
            print(
                f"\nlatency at {lat['rate']:,.0f} msgs/s asked, {lat['achieved']:,.0f} achieved "
                f"({frac:g} x the daemon's "
                f"{what} single-reading rate; publisher in another process), {lat['messages']} msgs, "
                f"10 streams with injected faults:"
            )
            print(
                f"  publish->score  p50 {lat['score_p50_ms']:.1f} ms  p99 {lat['score_p99_ms']:.1f} ms  "
                f"({lat['scores']} windows)"
            )
            print(
                f"  publish->alert  p50 {lat['alert_p50_ms']:.1f} ms  p99 {lat['alert_p99_ms']:.1f} ms  "
                f"max {lat['alert_max_ms']:.1f} ms  ({lat['alerts']} firing alerts)  "
                f"(<= 100 ms: {'met' if lat['alert_p99_ms'] <= 100 else 'NOT met'})"
            )

        st = run_streams_fresh(broker.port, models, args.many_streams, WINDOW + 4, scrapes=7)
        print(f"\n{st['streams']} streams ({WINDOW + 4} readings each, {st['labelled']} with per-stream labels):")
        print(
            f"  RSS {st['rss_before_mib']:.0f} MiB -> {st['rss_after_mib']:.0f} MiB "
            f"({st['per_stream_kib']:.1f} KiB per stream)"
        )
        print(
            f"  /metrics scrape median {st['scrape_ms']:.1f} ms (max {st['scrape_max_ms']:.1f} ms, "
            f"{st['scrape_bytes'] / 1024:.0f} KiB)  (< 50 ms: {'met' if st['scrape_ms'] < 50 else 'NOT met'})"
        )
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
