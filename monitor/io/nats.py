"""The NATS JetStream boundary: partitions keyed by stream, durable consumers, warm-up.

Subjects. Devices publish on ``plant.site1.pump1`` (or MQTT ``plant/site1/pump1`` through
the server's MQTT listener, which turns ``/`` into ``.``). The server's subject mapping
(`partition_mappings`, written into the server config by `server_config`) sends each one
to ``part.<p>.plant.site1.pump1`` where ``p = partition(N, stream tokens)``: the tokens
are the topic levels the rule's ``stream`` format names, so every channel of a stream
lands in the same partition (`partition_of` computes it here, FNV-1a as the server does).
The JetStream stream `NATSConfig.stream` captures ``part.>`` (file storage, limits
retention: it is the log warm-up reads).

`NATSIngest` runs nats-py on its own thread and asyncio loop. Per owned partition it
keeps one durable pull consumer ``<durable_prefix>-p<p>`` (filter ``part.<p>.>``), so a
partition's messages arrive in stream order. Each message is decoded with the same
`Codec` and the same topic rules as MQTT (the subject minus ``part.<p>.``, ``.`` -> ``/``)
and handed to the service's bounded hand-off as an `Ingested` item whose message is a
`NATSDelivery`. The hand-off never overflows: a fetch waits for room (the log holds the
rest, nothing is dropped). The scoring thread acks with `ack_many` after the readings are
handled (at-least-once, like the MQTT path).

Restart. On every (re)start, before live delivery, each partition is replayed from the
stream by start time: from ``warmup_seconds`` before the consumer's ack floor up to the
ack floor itself, as items flagged ``warm`` (the service scores them with alerts muted:
their alerts went out before). The durable consumer is then re-created at ack floor + 1,
so what a killed worker had received but not acked comes again at once, not after
``ack_wait``. Ownership is static (one worker per partition range, a StatefulSet
ordinal): re-creating the consumer is safe only because no one else owns it.

Changing N. The new partitioning has its own subject prefix (`ensure_stream` adds it to
the stream, `monitor nats-stream`). A consumer with no ack floor and ``nats.warmup_from``
set (the old prefix) warms from the old prefix's last window, every message re-keyed with
`partition_of` under the new N (`stream_key`), so the new owner of a stream continues its
windows and episodes.

Alerts (``nats.alerts_stream``): `publish_alert` stores each alert in that stream with
``Nats-Msg-Id`` and retries until confirmed; acks wait for the alerts sent before them.
A re-send after a crash is dropped by the server (exactly once in the stream).

Metrics: `PartitionStats` per owned partition (`monitor.io.nats_ops.NATSCollector`).

It is a `monitor.io.sources.Source`, as `monitor.io.mqtt.MQTTIngest` is, so the service
drives either (tests/test_contracts.py runs the Source contract against both).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from monitor.core.config import ConfigError, NATSConfig, TopicRule, format_partitions
from monitor.core.types import RawMessage
from monitor.io.codec import Codec
from monitor.io.mqtt import Ingested, IngestQueue
from monitor.io.nats_subjects import (
    alerts_subjects,
    partition_mappings,
    partition_of,
    server_config,
    stream_key,
    subject_of,
    topic_of,
)

try:  # the optional [nats] extra; `require_client` says how to install it
    import nats
    import nats.errors
    import nats.js.api as js_api
    import nats.js.errors
except ImportError:  # exercised by the missing-client test through a subprocess
    nats = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from monitor.io.metrics import Metrics

__all__ = [
    "NATSDelivery",
    "NATSIngest",
    "alerts_subjects",
    "ensure_stream",
    "partition_mappings",
    "partition_of",
    "prepare_stream",
    "require_client",
    "server_config",
    "stream_key",
    "subject_of",
    "topic_of",
]

log = logging.getLogger(__name__)

_new_tuple = tuple.__new__
_monotonic = time.monotonic


def require_client() -> None:
    """Raise a `ConfigError` (exit 78) when nats-py is not installed."""
    if nats is None:
        raise ConfigError(
            "source",
            "source: nats needs the NATS client library nats-py, which is not installed; "
            "install it with: pip install 'monitor[nats]' (or pip install nats-py)",
        )


# --------------------------------------------------------------------------- the stream


async def ensure_stream(js: Any, cfg: NATSConfig) -> list[str]:
    """The stream `cfg.stream` captures ``<subject_prefix>.>``: created when missing
    (``create_stream``), the subject added when it captures only others (a new prefix when
    changing N, next to the old one). Returns the stream's subjects."""
    subject = f"{cfg.subject_prefix}.>"
    try:
        info = await js.stream_info(cfg.stream)
    except nats.js.errors.NotFoundError:
        if not cfg.create_stream:
            raise ConfigError(
                "nats.stream", f"stream {cfg.stream} does not exist and nats.create_stream is false"
            ) from None
        await js.add_stream(
            js_api.StreamConfig(
                name=cfg.stream,
                subjects=[subject],
                storage=js_api.StorageType.FILE,
                retention=js_api.RetentionPolicy.LIMITS,
                max_age=cfg.max_age_seconds,
                num_replicas=cfg.replicas,
            )
        )
        log.info("nats: created stream %s on %s", cfg.stream, subject)
        return [subject]
    subjects = list(info.config.subjects or [])
    if subject not in subjects:
        info.config.subjects = [*subjects, subject]
        await js.update_stream(info.config)
        log.warning("nats: stream %s now captures %s as well as %s", cfg.stream, subject, subjects)
    return list(info.config.subjects)


def prepare_stream(cfg: NATSConfig) -> list[str]:
    """`ensure_stream` once, from a plain thread (``monitor nats-stream``; before a mapping change)."""
    require_client()

    async def go() -> list[str]:
        nc = await nats.connect(
            servers=list(cfg.servers),
            user=cfg.user,
            password=cfg.password,
            connect_timeout=cfg.connect_timeout_seconds,
            allow_reconnect=False,
            max_reconnect_attempts=1,  # nats-py retries an initial connect this often too (default 60 x 2 s)
            reconnect_time_wait=cfg.reconnect_seconds,
        )
        try:
            return await ensure_stream(nc.jetstream(), cfg)
        finally:
            await nc.close()

    return asyncio.run(go())


# --------------------------------------------------------------------------- deliveries


class NATSDelivery(NamedTuple):
    """A JetStream message as received plus what `NATSIngest.ack_many` needs."""

    received_at: float  # the server's time of storing it (JetStream metadata), epoch seconds
    topic: str  # the device topic (subject minus the partition prefix, "." -> "/")
    payload: bytes
    partition: int
    seq: int  # stream sequence
    reply: str  # the ack subject; "" for warm-up replays (never acked)
    warm: bool  # a warm-up replay: handled before, its alerts are muted


def _ack_meta(reply: str) -> tuple[int, float, int, int]:
    """(stream sequence, timestamp seconds, delivery count, consumer's pending count) from a
    JetStream ack subject (v1 and v2 formats)."""
    tokens = reply.split(".")
    off = 5 if len(tokens) == 9 else 7  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
    return int(tokens[off]), int(tokens[off + 2]) / 1e9, int(tokens[off - 1]), int(tokens[off + 3])


class PartitionStats:
    """Per owned partition, for metrics (`monitor.io.nats_ops.NATSCollector`), all counted
    on the client's loop at no server cost: ``pending`` (the lag: messages of the partition
    not yet delivered) is the server's count carried by each delivery's ack subject;
    ``ack_pending`` is delivered minus acked here. A partition with no delivery for
    ``nats.stats_seconds`` (idle, or this worker stalled) has its pending read from the
    server instead: that request costs the server time proportional to the lag on 2.9,
    so it is never made while messages flow."""

    __slots__ = (
        "acked",
        "acks",
        "delivered",
        "last_delivery",
        "pending",
        "redelivered",
        "warm_messages",
        "warm_readings",
    )

    def __init__(self) -> None:
        self.delivered = 0
        self.redelivered = 0  # deliveries with a delivery count above 1 (after ack_wait)
        self.acks = 0  # ack messages sent (one per partition and batch: ack policy "all")
        self.acked = 0  # live messages those acks covered
        self.warm_messages = 0
        self.warm_readings = 0
        self.pending = -1  # -1: not known yet
        self.last_delivery = _monotonic()

    @property
    def ack_pending(self) -> int:
        return self.delivered - self.acked


class NATSIngest:
    """Owns partitions of a JetStream stream and hands decoded readings to `out_queue`."""

    name = "nats"

    def __init__(
        self,
        cfg: NATSConfig,
        rules: Sequence[TopicRule],
        codec: Codec,
        out_queue: IngestQueue,
        metrics: Metrics | None = None,
        *,
        partitions: Sequence[int] | None = None,
        warmup_seconds: float = 0.0,
        log_interval_seconds: float = 10.0,
        raw_tap: Callable[[RawMessage], None] | None = None,
        alerts_topic: str = "monitor/alerts/{stream}",
    ):
        require_client()
        self.cfg = cfg
        self.rules = list(rules)
        if not self.rules:
            raise ConfigError("topics", "at least one topic rule is needed to subscribe to anything")
        partition_mappings(self.rules, cfg.partitions, cfg.subject_prefix)  # each rule must be partitionable
        self.codec = codec
        self.queue = out_queue
        self.metrics = metrics
        self.partitions = tuple(partitions if partitions is not None else cfg.owned_partitions())
        if not self.partitions:
            raise ConfigError("nats.owned", "this worker owns no partition")
        self.warmup_seconds = float(warmup_seconds)
        self.manual_ack = True
        self.last_error: str | None = None
        self.log_interval = log_interval_seconds
        self.stats = {
            "messages": 0,
            "readings": 0,
            "rejected": 0,
            "warm_messages": 0,
            "errors": 0,
            "acks": 0,
            "tap_errors": 0,
            "alerts_published": 0,
            "alerts_duplicate": 0,
            "dropped_messages": 0,  # never: a full hand-off pauses fetching (the log keeps the rest)
            "dropped_readings": 0,
        }
        self.partition_stats = {p: PartitionStats() for p in self.partitions}
        self.alerts_topic = alerts_topic  # the subjects of nats.alerts_stream
        self.raw_tap = raw_tap  # the recorder: live messages as received (warm-up replays are not)
        self.warmed = threading.Event()  # every owned partition replayed (or nothing to replay)
        self._subscribed = False  # every owned partition's consumer bound
        self._prefix_len = len(cfg.subject_prefix) + 1
        self._js: Any = None
        self._alerts_unconfirmed: set[asyncio.Future[bool]] = set()  # acks wait for these
        self._connected = False
        self._intake_open = True
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._nc: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._inflight: set[asyncio.Future[Any]] = set()
        self._stop_event = asyncio.Event()
        self._last_log: dict[str, float] = {}
        if metrics is not None:
            stats = self.stats
            metrics.add_received_source(lambda: (stats["messages"], stats["readings"]))

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Connect, warm up and consume in the background (retries while the server is down)."""
        if self._thread is not None:
            return
        self._intake_open = True
        self._loop = asyncio.new_event_loop()
        self._stop_event = asyncio.Event()
        self._thread = threading.Thread(target=self._run_loop, name="nats", daemon=True)
        self._thread.start()
        log.info(
            "nats: consuming partitions %s of stream %s from %s",
            _ranges(self.partitions),
            self.cfg.stream,
            ", ".join(self.cfg.servers),
        )

    def stop_intake(self) -> None:
        """Hand nothing more on; what was fetched and not handled is never acked (redelivered)."""
        self._intake_open = False

    def stop(self, timeout: float = 5.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._intake_open = False
        with contextlib.suppress(RuntimeError):  # the loop already closed
            loop.call_soon_threadsafe(self._stop_event.set)
        thread.join(timeout)
        if thread.is_alive():
            log.warning("nats: client thread did not stop within %.1f s", timeout)
        self._thread = None
        self._subscribed = False
        self._set_connected(False)

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def subscribed(self) -> bool:
        return self._subscribed and self._connected

    def problem(self) -> str | None:
        """For the systemd watchdog: None while the client thread runs."""
        if self._thread is None or not self._thread.is_alive():
            return "NATS client thread is not running"
        return None

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        """Publish from any thread (alert sinks) on the topic's subject (core NATS; an MQTT
        client of the server's listener sees it on the topic). Dropped while disconnected."""
        loop, nc = self._loop, self._nc
        if loop is None or nc is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed (stopping): nothing to send with
            loop.call_soon_threadsafe(self._publish_now, subject_of(topic), payload)

    def publish_alert(self, topic: str, payload: bytes, msg_id: str) -> None:
        """Publish an alert into `nats.alerts_stream` with ``Nats-Msg-Id: msg_id`` (any thread).

        Retried until the stream confirms it; acks sent after this call wait for the
        confirmation, so an alert is stored before the readings that raised it are acked, and
        a re-send after a crash carries the same id, which the server drops (exactly once in
        the stream within ``alerts_dedupe_seconds``)."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._alert_now, subject_of(topic), payload, msg_id)

    def ack_many(self, msgs: Iterable[Ingested | NATSDelivery]) -> None:
        """Ack handled messages: one ack per partition, its newest message (the consumers'
        ack policy is "all", and the hand-off is FIFO, so everything before it was handled
        too); one loop hop for the batch. Warm-up replays carry no ack subject."""
        newest: dict[int, tuple[int, str, int]] = {}  # partition -> (seq, reply, messages covered)
        for msg in msgs:
            d: NATSDelivery = msg.message if isinstance(msg, Ingested) else msg  # type: ignore[assignment]
            if d.reply:
                seq, reply, n = newest.get(d.partition, (0, "", 0))
                newest[d.partition] = (d.seq, d.reply, n + 1) if d.seq > seq else (seq, reply, n + 1)
        replies = [(p, reply, n) for p, (_, reply, n) in newest.items()]
        loop = self._loop
        if replies and loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: they are redelivered
                loop.call_soon_threadsafe(self._ack_now, replies)

    def __repr__(self) -> str:
        return (
            f"NATSIngest({', '.join(self.cfg.servers)}, stream={self.cfg.stream}, "
            f"partitions={_ranges(self.partitions)}, connected={self._connected})"
        )

    # ----------------------------------------------------------------- the loop thread

    def _run_loop(self) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        except Exception:
            log.exception("nats: client loop failed")
        finally:
            loop.close()

    def _set_connected(self, connected: bool) -> None:
        self._connected = connected
        if self.metrics is not None:
            self.metrics.set_mqtt_connected(connected)  # the broker-connection gauge, whichever broker

    def _throttled(self, key: str) -> bool:
        now = _monotonic()
        if now - self._last_log.get(key, -1e9) < self.log_interval:
            return False
        self._last_log[key] = now
        return True

    async def _connect(self) -> Any:
        cfg = self.cfg

        async def disconnected() -> None:
            self._set_connected(False)
            if self._stop_event.is_set():
                return
            self.last_error = "disconnected from the NATS server"
            log.warning("nats: disconnected; reconnecting every %.1f s", cfg.reconnect_seconds)

        async def reconnected() -> None:
            self._set_connected(True)
            self.last_error = None
            log.info("nats: reconnected")

        async def error(exc: Exception) -> None:
            self.stats["errors"] += 1
            if self._throttled("error"):
                log.warning("nats: %s: %s", type(exc).__name__, exc)

        while True:
            try:
                nc = await nats.connect(
                    servers=list(cfg.servers),
                    name=cfg.name,
                    user=cfg.user,
                    password=cfg.password,
                    connect_timeout=cfg.connect_timeout_seconds,
                    reconnect_time_wait=cfg.reconnect_seconds,
                    max_reconnect_attempts=-1,
                    allow_reconnect=True,
                    disconnected_cb=disconnected,
                    reconnected_cb=reconnected,
                    error_cb=error,
                )
                self._set_connected(True)
                self.last_error = None
                return nc
            except Exception as exc:  # unreachable, refused, auth: retried (the reason is reported)
                self.last_error = f"cannot connect to {', '.join(cfg.servers)}: {type(exc).__name__}: {exc}"
                if self._throttled("connect"):
                    log.warning("nats: %s; retrying every %.1f s", self.last_error, cfg.reconnect_seconds)
                if not self._intake_open:
                    return None
                await asyncio.sleep(cfg.reconnect_seconds)

    async def _main(self) -> None:
        """Run `_body` until `stop` sets the stop event, then close the connection in this loop."""
        body = asyncio.ensure_future(self._body())
        await self._stop_event.wait()
        body.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(body, *self._tasks, return_exceptions=True)
        await asyncio.gather(*self._inflight, return_exceptions=True)  # the last acks and alerts
        nc = self._nc
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.flush(timeout=1)  # the acks handed over before stop
            with contextlib.suppress(Exception):
                await nc.close()

    async def _body(self) -> None:
        self._nc = nc = await self._connect()
        if nc is None:
            return
        js = nc.jetstream()
        cfg = self.cfg
        self._js = js
        while self._intake_open:
            try:
                await self._ensure_stream(js)
                if cfg.alerts_stream:
                    await self._ensure_alerts_stream(js)
                fresh = []
                for p in self.partitions:  # warm-up of every partition first, then live delivery
                    if not await self._warm_up(js, p):
                        fresh.append(p)
                if fresh and cfg.warmup_from:  # N changed: warm from the previous partitioning
                    await self._warm_up_rekeyed(js, fresh)
                self.warmed.set()
                subs = [await self._resume(js, p) for p in self.partitions]
                self.last_error = None
                self._subscribed = True
                break
            except Exception as exc:
                self.last_error = f"JetStream set-up of stream {cfg.stream} failed: {type(exc).__name__}: {exc}"
                if self._throttled("setup"):
                    log.error("nats: %s; retrying", self.last_error)
                await asyncio.sleep(cfg.reconnect_seconds)
        else:
            return
        self._tasks = [
            asyncio.ensure_future(self._consume(p, sub)) for p, sub in zip(self.partitions, subs, strict=True)
        ]
        self._tasks.append(asyncio.ensure_future(self._poll_stats(js)))
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _ensure_stream(self, js: Any) -> None:
        await ensure_stream(js, self.cfg)

    async def _ensure_alerts_stream(self, js: Any) -> None:
        """`nats.alerts_stream` on the alerts subjects, de-duplicating on Nats-Msg-Id."""
        cfg = self.cfg
        subject = alerts_subjects(self.alerts_topic)
        try:
            await js.stream_info(cfg.alerts_stream)
            return
        except nats.js.errors.NotFoundError:
            pass
        await js.add_stream(
            js_api.StreamConfig(
                name=cfg.alerts_stream,
                subjects=[subject],
                storage=js_api.StorageType.FILE,
                retention=js_api.RetentionPolicy.LIMITS,
                max_age=cfg.max_age_seconds,
                duplicate_window=cfg.alerts_dedupe_seconds,
                num_replicas=cfg.replicas,
            )
        )
        log.info("nats: created alert stream %s on %s", cfg.alerts_stream, subject)

    def _durable(self, p: int) -> str:
        return f"{self.cfg.durable_prefix}-p{p}"

    async def _ack_floor(self, js: Any, p: int) -> int:
        try:
            info = await js.consumer_info(self.cfg.stream, self._durable(p))
        except nats.js.errors.NotFoundError:
            return 0
        floor = int(info.ack_floor.stream_seq or 0)
        # a consumer `_resume` re-created at floor + 1 reports ack floor 0 until its first ack
        if info.config.deliver_policy == js_api.DeliverPolicy.BY_START_SEQUENCE and info.config.opt_start_seq:
            floor = max(floor, int(info.config.opt_start_seq) - 1)
        return floor

    async def _warm_up(self, js: Any, p: int) -> bool:
        """Replay partition `p` from `warmup_seconds` before its ack floor up to the floor.
        False when the partition has no ack floor (a fresh consumer)."""
        floor = await self._ack_floor(js, p)
        if floor <= 0:
            return False
        if self.warmup_seconds <= 0:
            return True
        cfg = self.cfg
        try:
            last = await js.get_msg(cfg.stream, floor)
        except nats.js.errors.NotFoundError:  # aged out of the stream (max_age): nothing to warm from
            log.warning("nats: partition %d: message %d is no longer in %s; starting cold", p, floor, cfg.stream)
            return True
        replayed = await self._replay(js, f"{cfg.subject_prefix}.{p}.>", last.time, floor, lambda _msg: p)
        log.info(
            "nats: partition %d warmed with %d messages (%.0f s before seq %d)", p, replayed, self.warmup_seconds, floor
        )
        return True

    async def _warm_up_rekeyed(self, js: Any, fresh: list[int]) -> None:
        """Changing N: warm fresh partitions from the last window of the previous prefix
        (`nats.warmup_from`), each message re-keyed with this N; the old workers drained it."""
        cfg = self.cfg
        old = cfg.warmup_from
        if self.warmup_seconds <= 0:
            return
        try:
            last = await js.get_last_msg(cfg.stream, f"{old}.>")
        except nats.js.errors.NotFoundError:
            log.warning("nats: nothing on %s.> in %s to warm partitions %s from", old, cfg.stream, _ranges(fresh))
            return
        owned = set(fresh)
        rules = self.rules
        skip = len(old) + 1
        total = cfg.partitions

        def route(msg: Any) -> int | None:
            topic = topic_of(msg.subject[skip:].split(".", 1)[1])
            key = stream_key(rules, topic)
            p = partition_of(key, total) if key is not None else None
            return p if p in owned else None

        replayed = await self._replay(js, f"{old}.>", last.time, last.seq, route, prefix_len=skip)
        log.info(
            "nats: partitions %s warmed with %d messages of %s.> (the previous partitioning, %.0f s before seq %d)",
            _ranges(fresh),
            replayed,
            old,
            self.warmup_seconds,
            last.seq,
        )

    async def _replay(
        self,
        js: Any,
        subject: str,
        until_time: dt.datetime,
        until_seq: int,
        route: Callable[[Any], int | None],
        prefix_len: int | None = None,
    ) -> int:
        """Hand on, as warm items, the messages on `subject` from `warmup_seconds` before
        `until_time` up to stream sequence `until_seq`, each to partition `route(msg)` (None: skip)."""
        cfg = self.cfg
        start = until_time - dt.timedelta(seconds=self.warmup_seconds)
        sub = await js.pull_subscribe(
            subject,
            durable=None,
            stream=cfg.stream,
            config=js_api.ConsumerConfig(
                deliver_policy=js_api.DeliverPolicy.BY_START_TIME,
                opt_start_time=start,
                ack_policy=js_api.AckPolicy.NONE,
                inactive_threshold=30.0,
                mem_storage=True,
            ),
        )
        replayed = 0
        try:
            while True:
                try:
                    msgs = await sub.fetch(cfg.fetch_batch, timeout=1.0)
                except (nats.errors.TimeoutError, asyncio.TimeoutError):
                    break  # nothing more before the floor (the stream lost it, or it was all)
                done = False
                for msg in msgs:
                    seq = _ack_meta(msg.reply)[0]
                    if seq > until_seq:
                        done = True
                        break
                    p = route(msg)
                    if p is not None:
                        await self._hand_off(p, msg, warm=True, prefix_len=prefix_len)
                        replayed += 1
                    if seq == until_seq:
                        done = True
                        break
                if done:
                    break
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return replayed

    async def _resume(self, js: Any, p: int) -> Any:
        """The partition's durable consumer, re-created at ack floor + 1 (unacked ones come at once)."""
        cfg = self.cfg
        durable = self._durable(p)
        floor = await self._ack_floor(js, p)
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_consumer(cfg.stream, durable)
        policy = (
            dict(deliver_policy=js_api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=floor + 1)
            if floor > 0
            else dict(deliver_policy=js_api.DeliverPolicy.ALL)
        )
        await js.add_consumer(
            cfg.stream,
            js_api.ConsumerConfig(
                durable_name=durable,
                filter_subject=f"{cfg.subject_prefix}.{p}.>",
                ack_policy=js_api.AckPolicy.ALL,  # one ack per partition and batch (ack_many)
                ack_wait=cfg.ack_wait_seconds,
                max_ack_pending=cfg.max_ack_pending,
                **policy,
            ),
        )
        return await js.pull_subscribe_bind(durable, cfg.stream)

    async def _consume(self, p: int, sub: Any) -> None:
        batch = self.cfg.fetch_batch
        q = self.queue
        maxsize = int(q.maxsize) if q.maxsize and q.maxsize > 0 else 0
        while self._intake_open:
            try:
                room = maxsize - _qsize(q) if maxsize else batch
                while self._intake_open and room <= 0:
                    await asyncio.sleep(0.002)  # back-pressure: the log keeps the rest, nothing dropped
                    room = maxsize - _qsize(q)
                if not self._intake_open:
                    break
                try:
                    msgs = await sub.fetch(min(batch, room), timeout=1.0)
                except (nats.errors.TimeoutError, asyncio.TimeoutError):
                    continue
                for msg in msgs:
                    if not self._intake_open:
                        break  # not handed on, not acked: redelivered to the next session
                    await self._hand_off(p, msg, warm=False)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a lost connection, a deleted consumer: reported, retried
                self.stats["errors"] += 1
                self.last_error = f"partition {p}: {type(exc).__name__}: {exc}"
                if self._throttled(f"consume{p}"):
                    log.warning("nats: %s; retrying", self.last_error)
                await asyncio.sleep(self.cfg.reconnect_seconds)

    async def _poll_stats(self, js: Any) -> None:
        """Every ``nats.stats_seconds``: each owned consumer's pending and ack-pending counts."""
        cfg = self.cfg
        while True:
            await asyncio.sleep(cfg.stats_seconds)
            for p, st in self.partition_stats.items():
                if _monotonic() - st.last_delivery < cfg.stats_seconds:
                    continue  # deliveries carry the count
                try:
                    info = await js.consumer_info(cfg.stream, self._durable(p))
                except asyncio.CancelledError:
                    raise
                except Exception:  # a reconnect or a leader change: the last values stay
                    continue
                st.pending = int(info.num_pending or 0)

    async def _hand_off(self, p: int, msg: Any, *, warm: bool, prefix_len: int | None = None) -> None:
        item = self._item(p, msg, warm, prefix_len)
        try:
            self.queue.put_nowait(item)  # the common case: no coroutine switch per message
        except queue.Full:  # several partitions' fetches landed at once: wait, never drop
            while True:
                await asyncio.sleep(0.002)
                try:
                    self.queue.put_nowait(item)
                    return
                except queue.Full:
                    continue

    def _item(self, p: int, msg: Any, warm: bool, prefix_len: int | None = None) -> Ingested:
        """The hand-off item of a JetStream message (decoded; warm-up replays carry no ack subject)."""
        reply = msg.reply
        seq, stored_at, delivered, pending = _ack_meta(reply)
        topic = topic_of(msg.subject[prefix_len or self._prefix_len :].split(".", 1)[1])
        data = msg.data
        delivery = _new_tuple(NATSDelivery, (stored_at, topic, data, p, seq, "" if warm else reply, warm))
        readings, rejected = self.codec.decode(topic, data, stored_at)
        stats = self.stats
        pstats = self.partition_stats[p]
        if warm:
            stats["warm_messages"] += 1
            pstats.warm_messages += 1
            pstats.warm_readings += len(readings)
        else:
            stats["messages"] += 1
            stats["readings"] += len(readings)
            pstats.delivered += 1
            pstats.pending = pending
            pstats.last_delivery = _monotonic()
            if delivered > 1:
                pstats.redelivered += 1
            if self.raw_tap is not None:
                try:
                    self.raw_tap(_new_tuple(RawMessage, (stored_at, topic, data, 1, False)))
                except Exception:
                    stats["tap_errors"] += 1
                    if self._throttled("tap"):
                        log.exception("nats: raw_tap failed (counted, message still processed)")
        if rejected:
            stats["rejected"] += len(rejected)
            if self._throttled("rejected"):
                log.warning("nats: rejected input on %r: %s: %s", topic, rejected[0].reason, rejected[0].detail)
            if warm:
                rejected = []  # counted when it was live
        item: Ingested = _new_tuple(Ingested, (_monotonic(), readings, rejected, delivery))
        return item

    def _publish_now(self, subject: str, payload: bytes) -> None:
        nc = self._nc
        if nc is None or not self._connected:
            return
        self._background(self._publish_async(nc, subject, payload))

    async def _publish_async(self, nc: Any, subject: str, payload: bytes) -> None:
        try:
            await nc.publish(subject, payload)
        except Exception as exc:
            self.stats["errors"] += 1
            if self._throttled("publish"):
                log.warning("nats: publish on %s failed: %s", subject, exc)

    def _alert_now(self, subject: str, payload: bytes, msg_id: str) -> None:
        if self._js is None:
            return
        task = asyncio.ensure_future(self._alert_async(subject, payload, msg_id))
        self._inflight.add(task)
        self._alerts_unconfirmed.add(task)
        task.add_done_callback(self._inflight.discard)
        task.add_done_callback(self._alerts_unconfirmed.discard)

    async def _alert_async(self, subject: str, payload: bytes, msg_id: str) -> bool:
        """JetStream-publish one alert, retried (the same Nats-Msg-Id: a retry is never stored twice)."""
        cfg = self.cfg
        while True:
            try:
                ack = await self._js.publish(
                    subject, payload, timeout=2.0, stream=cfg.alerts_stream, headers={"Nats-Msg-Id": msg_id}
                )
                self.stats["alerts_published"] += 1
                if ack.duplicate:
                    self.stats["alerts_duplicate"] += 1
                return True
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # no stream leader yet, a reconnect: retry; stopping: give up
                self.stats["errors"] += 1
                if self._throttled("alert"):
                    log.warning("nats: alert %s into %s not confirmed: %s; retrying", msg_id, cfg.alerts_stream, exc)
                if self._stop_event.is_set():
                    return False  # its batch is not acked after this: redelivered, re-sent with the same id
                await asyncio.sleep(cfg.reconnect_seconds)

    def _ack_now(self, replies: list[tuple[int, str, int]]) -> None:
        nc = self._nc
        if nc is None:
            return
        if self._alerts_unconfirmed:  # the alerts of these batches first: stored, then acked
            self._background(self._ack_after(set(self._alerts_unconfirmed), nc, replies))
            return
        self._background(self._ack_async(nc, replies))

    async def _ack_after(self, alerts: set[asyncio.Future[bool]], nc: Any, replies: list[tuple[int, str, int]]) -> None:
        await asyncio.wait(alerts)
        if all(not t.cancelled() and t.exception() is None and t.result() for t in alerts):
            await self._ack_async(nc, replies)  # else: not acked, redelivered, the alert re-sent (same id)

    def _background(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._inflight.add(task)  # a reference until done (the loop keeps only weak ones)
        task.add_done_callback(self._inflight.discard)

    async def _ack_async(self, nc: Any, replies: list[tuple[int, str, int]]) -> None:
        try:
            for p, reply, n in replies:
                await nc.publish(reply, b"+ACK")
                st = self.partition_stats[p]
                st.acks += 1
                st.acked += n
            self.stats["acks"] += len(replies)
        except Exception as exc:  # not acked: redelivered after ack_wait or on the next start
            self.stats["errors"] += 1
            if self._throttled("ack"):
                log.warning("nats: ack of %d messages failed: %s", len(replies), exc)


def _qsize(q: Any) -> int:
    return int(q.qsize())


_ranges = format_partitions  # ``0-3,6`` for (0, 1, 2, 3, 6)
