"""Shared pieces of the NATS tests: a config, a 20-stream feed, publishers, the offline reference."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import nats
from prometheus_client import CollectorRegistry

from monitor.app.service import Service
from monitor.core.config import Config
from monitor.core.fleet import Fleet
from monitor.core.runner import Runner
from monitor.core.scoring_model import ScoringModel
from monitor.core.synthetic import CHANNELS
from monitor.io.codec import Codec
from tests.daemon_support import daemon_config, feed_rows, http_get, wait_until

ROOT = Path(__file__).resolve().parents[1]
STREAMS = [f"site{1 + i // 10}/pump{i % 10}" for i in range(20)]
FAULTY = {"site1/pump3": (150, 230), "site2/pump6": (160, 240), "site2/pump9": (140, 220)}
ROWS = 300


def nats_config(url: str, models_dir, **nats_overrides) -> Config:
    nats_section = {"servers": [url], "partitions": 8, "ack_wait_seconds": 5, "reconnect_seconds": 0.2}
    nats_section.update(nats_overrides)
    # The offline reference (`offline_alerts`) has no wall clock, so the dead-man stale check
    # (10 s without an arrival) is off: a worker that outlives its share of the feed by 10 s,
    # e.g. while another restarts on loaded cores, would raise stale alerts one process
    # replaying the feed never does. (The MQTT port is not used.)
    return daemon_config(1, models_dir, source="nats", nats=nats_section, sensors={"stale_seconds": 0})


def feed(start: float) -> dict[str, tuple]:
    """Per stream: (times, values); the FAULTY ones carry a cavitation fault."""
    return {s: feed_rows(ROWS, seed=100 + i, fault=FAULTY.get(s), start_time=start)[:2] for i, s in enumerate(STREAMS)}


def messages(data: dict[str, tuple], rows: range) -> list[tuple[str, bytes]]:
    """(topic, payload) row by row across the streams: the order devices would send them in."""
    out = []
    for i in rows:
        for stream, (t, v) in data.items():
            body = {"ts": float(t[i]), **{c: float(x) for c, x in zip(CHANNELS, v[i], strict=True)}}
            out.append((f"plant/{stream}", json.dumps(body).encode()))
    return out


def publish_nats(url: str, msgs: list[tuple[str, bytes]]) -> None:
    """Core NATS publishes on the device subjects (the server maps them onto partitions)."""

    async def go() -> None:
        nc = await nats.connect(url)
        for topic, payload in msgs:
            await nc.publish(topic.replace("/", "."), payload)
        await nc.flush()
        await nc.close()

    asyncio.run(go())


def stream_messages(url: str, stream: str = "MONITOR") -> int:
    async def go() -> int:
        nc = await nats.connect(url)
        try:
            return int((await nc.jetstream().stream_info(stream)).state.messages)
        except nats.js.errors.NotFoundError:
            return -1
        finally:
            await nc.close()

    return asyncio.run(go())


def consumer_floor(url: str, durable: str, stream: str = "MONITOR") -> int:
    async def go() -> int:
        nc = await nats.connect(url)
        try:
            return int((await nc.jetstream().consumer_info(stream, durable)).ack_floor.stream_seq or 0)
        finally:
            await nc.close()

    return asyncio.run(go())


def offline_alerts(cfg: Config, model: ScoringModel, msgs: list[tuple[str, bytes]], received_at: float) -> list:
    """What one process decides on the same feed: the same codec, the same Runner."""
    fleet = Fleet.from_config(cfg)
    fleet.install(fleet.names[0], model)
    runner = Runner(fleet)
    codec = Codec(cfg.topics, cfg.mqtt.max_payload_bytes, cfg.stream.max_future_seconds, columns=True)
    alerts = []
    for i in range(0, len(msgs), 500):  # batches change nothing but speed (Runner)
        batch = [r for topic, payload in msgs[i : i + 500] for r in codec.decode(topic, payload, received_at)[0]]
        for result in runner.feed(batch):
            alerts += result.alerts
    return alerts


def alert_key(a: dict) -> tuple:
    return (a["alert_id"], a["state"], a["stream"], a["started_at"], a["ended_at"])


class AlertTap:
    """Collects alert JSON from a core NATS subscription on ``monitor.alerts.>`` (its own thread)."""

    def __init__(self, url: str, subject: str = "monitor.alerts.>"):
        self.alerts: list[dict] = []
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run(url, subject)), daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "alert subscription not ready"

    async def _run(self, url: str, subject: str) -> None:
        nc = await nats.connect(url)
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()

        async def on_msg(msg) -> None:
            self.alerts.append(json.loads(msg.data))

        await nc.subscribe(subject, cb=on_msg)
        await nc.flush()
        self._ready.set()
        await self._stop.wait()
        await nc.close()

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)


class Collect:
    """A sink and an `on_handled` hook of one worker."""

    name = "collect"

    def __init__(self):
        self.alerts: list[dict] = []
        self.handled: list[tuple[int, str, str, float]] = []  # (partition, stream, channel, ts) in order
        self.messages = 0  # live ones
        self.warm = 0
        self._lock = threading.Lock()

    def send(self, alert) -> None:
        self.alerts.append(alert.to_dict())

    def close(self) -> None:
        pass

    def on_handled(self, items: list) -> None:
        with self._lock:
            for _, readings, _, msg in items:
                if msg.warm:  # a warm-up replay: handled before, by whoever owned it
                    self.warm += 1
                    continue
                self.messages += 1
                self.handled += [(msg.partition, r.stream, r.channel, r.timestamp) for r in readings]


def start_worker(cfg, partitions) -> tuple[Service, Collect, threading.Thread]:
    collect = Collect()
    svc = Service(
        cfg,
        registry=CollectorRegistry(),
        extra_sinks=[collect],
        partitions=partitions,
        on_handled=collect.on_handled,
    )
    svc.start()
    thread = threading.Thread(target=svc.run_forever, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    return svc, collect, thread


def drained(url: str, partitions, durable_prefix: str = "monitor", stream: str = "MONITOR") -> bool:
    """Every message of these partitions delivered and acked (False while a consumer is missing:
    a restarting worker re-creates its consumers at their ack floors)."""

    async def go() -> bool:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            for p in partitions:
                try:
                    info = await js.consumer_info(stream, f"{durable_prefix}-p{p}")
                except nats.js.errors.NotFoundError:
                    return False
                if info.num_pending or info.num_ack_pending:
                    return False
            return True
        finally:
            await nc.close()

    return asyncio.run(go())


def stop_workers(workers) -> None:
    for svc, _, _ in workers:
        svc.request_stop()
    for _, _, thread in workers:
        thread.join(15)


def readings_of(data: dict[str, tuple], rows: range) -> set[tuple[str, str, float]]:
    """(stream, channel, timestamp) of every reading in these rows of the feed."""
    return {(s, ch, float(t[i])) for s, (t, _) in data.items() for ch in CHANNELS for i in rows}


def assert_order_kept(handled) -> None:
    """Per stream and channel, timestamps rise in handling order."""
    last: dict[tuple[str, str], float] = {}
    for _, stream, channel, ts in handled:
        assert ts > last.get((stream, channel), float("-inf")), (stream, channel, ts)
        last[(stream, channel)] = ts


class Worker:
    """A `monitor run` process (kill -9 and restart it like a pod)."""

    def __init__(self, config: Path, partitions: str, port: int, log: Path, env: dict[str, str] | None = None):
        self.args = [sys.executable, "-m", "monitor", "run", "--config", str(config), "--partitions", partitions]
        self.port = port
        self.log = log
        self.env = dict(env or {})
        self.proc: subprocess.Popen | None = None

    def start(self) -> Worker:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "OMP_NUM_THREADS": "1",
            "MONITOR_METRICS__PORT": str(self.port),
            **self.env,
        }
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [*self.args, "--plain-logs"], env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        wait_until(lambda: http_get(self.port, "/readyz")[0] == 200, timeout=60, what=f"{self.args[-1]} ready")
        return self

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(20)
        return self.proc.returncode
