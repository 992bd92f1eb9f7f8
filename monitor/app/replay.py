"""Replay recordings: straight through the pipeline (offline) or republished to a broker.

Offline replay decodes every recorded message with its *recorded* receive time, so a
reading without a payload timestamp gets the time it had live, and pushes the readings
through the same `Pipeline` in recorded order. Batching does not change decisions (the
alarm sees scores in order), so the alerts are exactly those the daemon raised live on
that feed with that model, and the same on every replay.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt

from monitor.core.config import Config
from monitor.core.pipeline import Pipeline, ScoringModel
from monitor.core.types import Alert, RawMessage, ScoreBatch
from monitor.io.codec import Codec
from monitor.io.recording import RecordingStats, iter_recordings

log = logging.getLogger(__name__)


@dataclass
class ReplayResult:
    messages: int = 0
    readings: int = 0
    rejected: Counter = field(default_factory=Counter)
    counters: dict = field(default_factory=dict)
    alerts: list[Alert] = field(default_factory=list)
    windows: int = 0
    stats: RecordingStats | None = None


def replay_offline(
    paths: Sequence[str | Path],
    cfg: Config,
    model: ScoringModel,
    *,
    on_alert: Callable[[Alert], None] | None = None,
    on_scores: Callable[[ScoreBatch], None] | None = None,
    batch_messages: int = 512,
) -> ReplayResult:
    """Run recordings through a fresh pipeline; returns the alerts it raised, in order."""
    codec = Codec(cfg.topics, cfg.mqtt.max_payload_bytes, cfg.stream.max_future_seconds, columns=True)
    pipe = Pipeline(model, cfg.stream, cfg.alarm, cfg.alerts.top_channels)
    stats = RecordingStats()
    result = ReplayResult(stats=stats)

    pending: list = []

    def flush() -> None:
        pipe.push_batch(pending)  # the daemon's path: blocks stay columns
        pending.clear()
        scores, alerts = pipe.flush()
        result.windows += len(scores)
        if on_scores and scores:
            on_scores(scores)
        for a in alerts:
            result.alerts.append(a)
            if on_alert:
                on_alert(a)

    for msg in iter_recordings(paths, stats=stats):
        readings, rejected = codec.decode(msg.topic, msg.payload, msg.received_at)
        result.messages += 1
        result.readings += len(readings)
        for r in rejected:
            result.rejected[r.reason] += 1
        if type(readings) is list:
            pending += readings
        else:
            pending.append(readings)
        if result.messages % batch_messages == 0:
            flush()
    flush()
    result.counters = dict(pipe.counters)
    return result


def replay_to_broker(
    messages: Iterable[RawMessage],
    publish: Callable[[str, bytes, int, bool], object],
    *,
    speed: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    keep_qos: bool = True,
    qos: int = 1,
) -> int:
    """Republish in recorded order; `speed` x real time (0 or less: as fast as possible).

    Relative timing comes from the recorded receive times; the schedule is kept against a
    monotonic clock, so a slow publish does not accumulate drift.
    """
    count = 0
    start_wall = 0.0  # set together with start_rec
    start_rec = None
    for msg in messages:
        if speed > 0:
            if start_rec is None:
                start_rec, start_wall = msg.received_at, clock()
            due = start_wall + (msg.received_at - start_rec) / speed
            delay = due - clock()
            if delay > 0:
                sleep(delay)
        publish(msg.topic, msg.payload, msg.qos if keep_qos else qos, False)  # never re-retain
        count += 1
    return count


def connect_publisher(cfg, client_id_suffix: str = "-replay", timeout: float = 10.0):
    """A connected paho client for republishing, with the daemon's broker settings (auth, TLS)."""
    v5 = cfg.protocol == "5"
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"{cfg.client_id}{client_id_suffix}",
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
    )
    if cfg.username:
        client.username_pw_set(cfg.username, cfg.password)
    if cfg.tls.enabled:
        insecure = cfg.tls.insecure_skip_verify is True
        client.tls_set(
            ca_certs=cfg.tls.ca_file,
            certfile=cfg.tls.cert_file,
            keyfile=cfg.tls.key_file,
            cert_reqs=ssl.CERT_NONE if insecure else ssl.CERT_REQUIRED,
        )
        if insecure:
            client.tls_insecure_set(True)
    client.max_inflight_messages_set(200)
    client.connect(cfg.host, cfg.port, cfg.keepalive_seconds)
    client.loop_start()
    deadline = time.monotonic() + timeout
    while not client.is_connected():
        if time.monotonic() > deadline:
            client.loop_stop()
            raise ConnectionError(f"could not connect to {cfg.host}:{cfg.port} within {timeout:.0f}s")
        time.sleep(0.02)
    return client
