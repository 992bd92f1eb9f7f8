"""Replay recordings: straight through the pipeline (offline) or republished to a broker.

Offline replay decodes every recorded message with its *recorded* receive time, so a
reading without a payload timestamp gets the time it had live, and pushes the readings
through the same fleet and `Runner` as the daemon, in recorded order. Batching does not change decisions (the
alarm sees scores in order), so the alerts are exactly those the daemon raised live on
that feed with that model, and the same on every replay.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt

from monitor.core.config import Config
from monitor.core.fleet import Fleet, GroupResult
from monitor.core.runner import Runner
from monitor.core.scoring_model import ScoringModel
from monitor.core.types import Alert, BatchItem, FrameBlock, RawMessage, ReadingBlock, ScoreBatch
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
    groups: dict = field(default_factory=dict)  # group -> its counters
    unrouted: dict = field(default_factory=dict)  # stream -> readings no group took


def replay_offline(
    paths: Sequence[str | Path],
    cfg: Config,
    model: ScoringModel | Mapping[str, ScoringModel | None],
    *,
    on_alert: Callable[[Alert], None] | None = None,
    on_scores: Callable[[ScoreBatch], None] | None = None,
    batch_messages: int = 512,
    latent: bool = False,
) -> ReplayResult:
    """Run recordings through a fresh fleet; returns the alerts it raised, in order.

    `model`: one model (a config without `groups:`, or one group) or a model per group
    name (a group left out or None counts its readings as ``no_model``, as live).
    `latent`: every scored batch carries its windows' codes (as with ``alerts.latent_topic``).
    """
    codec = Codec(cfg.topics, cfg.mqtt.max_payload_bytes, cfg.stream.max_future_seconds, columns=True)
    fleet = Fleet.from_config(cfg)
    fleet.latent = fleet.latent or latent
    models = _models_by_group(fleet, model)
    for name, m in models.items():
        if m is not None:
            fleet.install(name, m)
    stats = RecordingStats()
    result = ReplayResult(stats=stats)

    def scored(r: GroupResult) -> None:
        if on_scores:
            on_scores(r.scores)

    def alerted(a: Alert) -> None:
        result.alerts.append(a)
        if on_alert:
            on_alert(a)

    runner = Runner(fleet, on_scores=scored, on_alert=alerted)
    pending: list[BatchItem] = []
    for msg in iter_recordings(paths, stats=stats):
        readings, rejected = codec.decode(msg.topic, msg.payload, msg.received_at)
        result.messages += 1
        result.readings += len(readings)
        for r in rejected:
            result.rejected[r.reason] += 1
        if isinstance(readings, (ReadingBlock, FrameBlock)):
            pending.append(readings)  # the daemon's path: blocks stay columns
        else:
            pending += readings
        if result.messages % batch_messages == 0:
            runner.feed(pending)
            pending = []
    runner.feed(pending)
    result.windows = runner.windows
    result.counters = dict(fleet.totals())
    result.groups = {name: dict(fleet.group_counters(name)) for name in fleet.names}
    result.unrouted = dict(fleet.unrouted)
    return result


def _models_by_group(
    fleet: Fleet, model: ScoringModel | Mapping[str, ScoringModel | None]
) -> dict[str, ScoringModel | None]:
    if isinstance(model, ScoringModel):
        if len(fleet.names) != 1:
            raise ValueError(f"one model for {len(fleet.names)} groups; give a model per group")
        return {fleet.names[0]: model}
    unknown = sorted(set(model) - set(fleet.names))
    if unknown:
        raise ValueError(f"models for groups not in the config: {unknown}")
    return {name: model.get(name) for name in fleet.names}


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


def connect_publisher(cfg, role: str = "replay", timeout: float = 10.0):
    """A connected paho client for republishing, with the daemon's broker settings (auth,
    TLS) and the client id of `role` (never the daemon's: that would take its session)."""
    v5 = cfg.protocol == "5"
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=cfg.for_role(role).client_id,
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
