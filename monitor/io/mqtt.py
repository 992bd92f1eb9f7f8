"""The paho-mqtt boundary: connect, TLS/auth, subscribe in on_connect, bounded hand-off.

`MQTTIngest` runs paho's own network thread (``loop_start``). Its ``on_message``
decodes each message with the `Codec` and hands ONE `Ingested` item per message to a
bounded ``queue.Queue`` with ``put_nowait``; it never blocks and never raises (a raising
paho callback kills the network thread while ``is_connected()`` still says True).
Queue item, a 4-tuple (unpack it as ``t0, readings, rejected, msg``)::

    Ingested(received_monotonic,  # time.monotonic() at receipt (end-to-end latency)
             readings,            # list[Reading], may be empty
             rejected,            # list[Rejected] of the same message: the CONSUMER counts these
             message)             # Delivery(received_at, topic, payload, qos, retain, mid, connection)

Who counts what, exactly once: this module counts ``monitor_messages_received_total``,
``monitor_readings_received_total`` and, for a message it could not queue,
``monitor_drops_total{reason="queue_full"}`` (by readings) plus that message's rejects.
The consumer counts the rejects of every item it takes (``metrics.rejected(rejected)``).

At-least-once: with ``manual_ack=True`` paho does not ack QoS 1 messages when
``on_message`` returns; the consumer calls ``ingest.ack(msg)`` once the readings are
safely handled. A message dropped because the queue is full is acked at once (counted),
so a full queue cannot stall the session. After ``stop_intake()`` messages are not
acked at all: the broker keeps them for the next session.

Incoming QoS 0/1 PUBLISH packets without MQTT 5 properties are decoded by `_FastClient`
(a paho `Client` subclass, in its own fenced module `monitor.io.mqtt_fast`) instead of paho's
generic code, with the same callback, acks and fallbacks; it is used only with a paho in
`_VERIFIED_PAHO` whose internals match (logged at DEBUG).
"""

from __future__ import annotations

import logging
import os
import queue
import re
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from monitor.core.config import ConfigError, MQTTConfig, TopicRule
from monitor.core.types import DropReason, RawMessage, Reading, Rejected
from monitor.io.codec import Codec
from monitor.io.mqtt_fast import _fast_client_ok, _fast_publish_supported, _FastClient, _GatedClient

if TYPE_CHECKING:
    from monitor.io.metrics import Metrics
    from monitor.io.sources import Source

__all__ = ["Delivery", "Ingested", "MQTTIngest", "subscriptions", "topic_filter"]

log = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(r"{\w+}")
_MULTI_LEVEL = re.compile(r"{\w+\.\.\.}")
_new_tuple = tuple.__new__
_time = time.time
_monotonic = time.monotonic


class Delivery(NamedTuple):
    """A message as received plus what `MQTTIngest.ack` needs.

    The first five fields are those of `RawMessage`, in the same order.
    """

    received_at: float  # wall clock (time.time()) at receipt
    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int  # MQTT packet id
    connection: int  # which connection (1, 2, ...) delivered it

    def raw(self) -> RawMessage:
        return RawMessage(self.received_at, self.topic, self.payload, self.qos, self.retain)


class Ingested(NamedTuple):
    """One received message, decoded (see the module docstring)."""

    received_monotonic: float
    readings: Sequence[Reading]  # a list, or a ReadingBlock (Codec with columns=True)
    rejected: list[Rejected]
    message: Delivery


class IngestQueue(Protocol):
    """Where `MQTTIngest` hands its items: a `queue.Queue` or a `HandOff` (bounded;
    ``put_nowait`` raises `queue.Full`)."""

    maxsize: int

    def put_nowait(self, item: Ingested, /) -> None: ...


def topic_filter(template: str) -> str:
    """The MQTT subscription filter of a topic template: each level with a {name} -> ``+``,
    a trailing multi-level ``{name...}`` -> ``#``."""
    levels = template.split("/")
    last = "#" if _MULTI_LEVEL.fullmatch(levels[-1]) else None
    out = ["+" if _PLACEHOLDER.search(level) else level for level in (levels[:-1] if last else levels)]
    return "/".join([*out, last] if last else out)


def subscriptions(rules: Sequence[TopicRule]) -> list[tuple[str, int]]:
    """(filter, qos) per distinct filter, in rule order; the highest qos wins on duplicates."""
    found: dict[str, int] = {}
    for rule in rules:
        filt = topic_filter(rule.template)
        found[filt] = max(found.get(filt, 0), int(rule.qos))
    return list(found.items())


class _QuietRetries(logging.Filter):
    """paho 2.2 logs an ERROR on every reconnect attempt while the broker is unreachable;
    `MQTTIngest` already reports that (throttled, with the reason), so drop the repeat."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith("Client is not connected."))


_PAHO_LOG = logging.getLogger(__name__ + ".paho")
_QUIET_RETRIES = _QuietRetries()


class _Throttle:
    """At most one log line per key every `seconds` (monotonic)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._last: dict[str, float] = {}

    def ready(self, key: str) -> bool:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.seconds:
            return False
        self._last[key] = now
        return True


def describe_connect_error(exc: BaseException | None, host: str, port: int) -> str:
    """An operator-readable reason for a failed connection attempt."""
    where = f"{host}:{port}"
    if exc is None:
        return f"cannot connect to {where}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = getattr(exc, "verify_message", None) or str(exc)
        return (
            f"TLS certificate verification failed for {where}: {detail} "
            "(check mqtt.tls.ca_file and that the broker's certificate names this host)"
        )
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake with {where} failed: {exc}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection to {where} refused (is the broker running and listening there?)"
    return f"cannot connect to {where}: {type(exc).__name__}: {exc}"


TAKEOVER_SECONDS = 5.0  # a broker-closed connection shorter than this is suspect
TAKEOVER_STREAK = 3  # this many suspects in a row: another client is using our client id
TAKEOVER_BACKOFF_MAX_SECONDS = 60.0
_SESSION_TAKEN_OVER = 142  # MQTT 5 DISCONNECT reason (mosquitto 2.0 often just closes the socket)


class MQTTIngest:
    """Subscribes to every topic rule and hands decoded readings to `out_queue`.

    A `monitor.io.sources.Source` (contract: tests/test_contracts.py).

    `on_state(connected: bool, detail: str)` is called on every connect/disconnect;
    `raw_tap(RawMessage)` on every message (e.g. the recorder). Both run in paho's
    thread: keep them fast; their exceptions are swallowed, counted and logged.
    """

    name = "mqtt"

    def __init__(
        self,
        cfg: MQTTConfig,
        rules: Sequence[TopicRule],
        codec: Codec,
        out_queue: IngestQueue,
        metrics: Metrics | None = None,
        on_state: Callable[[bool, str], None] | None = None,
        *,
        manual_ack: bool = False,
        raw_tap: Callable[[RawMessage], None] | None = None,
        log_interval_seconds: float = 10.0,
        will: tuple[str, bytes, int, bool] | None = None,
    ):
        self.cfg = cfg
        self.will = will  # (topic, payload, qos, retain): the broker publishes it if we die
        self.rules = list(rules)
        if not self.rules:
            raise ConfigError("topics", "at least one topic rule is needed to subscribe to anything")
        self.codec = codec
        self.queue = out_queue
        self.metrics = metrics
        self.on_state = on_state
        self.manual_ack = bool(manual_ack)
        # Backpressure (mqtt.overload): a full hand-off holds a QoS 1 message unacked instead
        # of dropping it; the broker sends at most receive_maximum unacked ones (MQTT 5).
        # Only with manual acks: an automatic ack would tell the broker it was handled.
        self.backpressure = cfg.overload == "backpressure" and self.manual_ack
        if cfg.overload == "backpressure" and not self.manual_ack:
            log.warning("mqtt.overload is backpressure, but this client acks automatically: a full queue drops")
        self._put_over = getattr(out_queue, "put_over", None)  # a HandOff; a plain Queue drops
        self.raw_tap = raw_tap
        self.last_error: str | None = None
        self.stats = {
            "messages": 0,
            "readings": 0,
            "rejected": 0,
            "dropped_readings": 0,
            "dropped_messages": 0,
            "held_over": 0,  # backpressure: messages queued past the bounds, unacked
            "read_pauses": 0,  # backpressure: socket reads put off (10 ms each at most)
            "callback_errors": 0,
            "tap_errors": 0,
            "connections": 0,
            "connect_failures": 0,
            "takeovers": 0,  # connections the broker closed because our client id connected again
            "fast_path_failures": 0,  # the fast path's circuit breaker (0 or 1 per client)
        }
        self._connected_at = 0.0  # monotonic, of the current connection
        self._short_streak = 0  # broker-closed connections in a row shorter than TAKEOVER_SECONDS
        self._takeover_backoff = 0.0  # the reconnect delay in force while a takeover loop lasts
        self._throttle = _Throttle(log_interval_seconds)
        self._connected = False
        self._subscribed = False
        self._connection = 0
        self._started = False
        self._stopping = False
        self._intake_open = True
        self._drops_since_log = 0
        self._subscriptions = subscriptions(self.rules)
        self._client = self._make_client()
        if metrics is not None:
            # messages/readings received: plain ints here, read by the metrics at scrape time
            stats = self.stats
            metrics.add_received_source(lambda: (stats["messages"], stats["readings"]))

    # ----------------------------------------------------------------- setup

    def _make_client(self) -> mqtt.Client:
        cfg = self.cfg
        v5 = cfg.protocol == "5"
        if not cfg.client_id and not cfg.clean_start:
            raise ConfigError("mqtt.client_id", "a persistent session (clean_start: false) needs a fixed client_id")
        kwargs: dict[str, Any] = dict(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            manual_ack=self.manual_ack,
        )
        if not v5:
            kwargs["clean_session"] = cfg.clean_start
        fast, why = _fast_publish_supported()
        if cfg.fast_path == "off":
            fast, why = False, "mqtt.fast_path: off"
        plain = _GatedClient if self.backpressure else mqtt.Client
        client = _FastClient(**kwargs) if fast else plain(**kwargs)
        if fast:
            fast, detail = _fast_client_ok(client)
            if not fast:
                why = f"{why}: {detail}"
                client = plain(**kwargs)
        if self.backpressure and isinstance(client, (_FastClient, _GatedClient)):
            client._read_gate = self._hold_reads
        client.suppress_exceptions = True  # a second net under our own try/except
        _PAHO_LOG.addFilter(_QUIET_RETRIES)  # idempotent: one instance
        client.enable_logger(_PAHO_LOG)
        if cfg.password and not cfg.username:
            raise ConfigError("mqtt.username", "a password was given without a username")
        if cfg.username:
            client.username_pw_set(cfg.username, cfg.password)
        if cfg.tls.enabled:
            self._configure_tls(client)
        # paho annotates the delays int; it computes with them as seconds, so floats work
        client.reconnect_delay_set(cfg.reconnect_min_seconds, cfg.reconnect_max_seconds)  # type: ignore[arg-type]
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        if isinstance(client, _FastClient):  # (exactly when `fast`)
            client._fast_handler = client.on_message  # the very object paho holds (an identity check)
            client._on_fast_failure = self._on_fast_failure
        log.debug("mqtt: incoming PUBLISH via %s (%s)", "the fast path" if fast else "plain paho", why)
        return client

    def _configure_tls(self, client: mqtt.Client) -> None:
        tls = self.cfg.tls
        insecure = tls.insecure_skip_verify is True
        for key in ("ca_file", "cert_file", "key_file"):
            path = getattr(tls, key)
            if path and not os.access(path, os.R_OK):
                raise ConfigError(f"mqtt.tls.{key}", f"cannot read {path!r} (missing or not readable)")
        try:
            client.tls_set(
                ca_certs=tls.ca_file,
                certfile=tls.cert_file,
                keyfile=tls.key_file,
                cert_reqs=ssl.CERT_NONE if insecure else ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ConfigError("mqtt.tls", f"cannot load the TLS files: {exc}") from None
        if insecure:
            client.tls_insecure_set(True)
            log.warning(
                "mqtt.tls.insecure_skip_verify is true: the broker's certificate is NOT verified; "
                "anyone on the network path can impersonate %s. Use only for testing.",
                self.cfg.host,
            )

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Connect in the background (works while the broker is down) and start paho's thread."""
        if self._started:
            return
        cfg = self.cfg
        self._started = True
        self._stopping = False
        self._intake_open = True
        if self.will is not None:  # before connecting: the CONNECT packet carries it
            topic, payload, qos, retain = self.will
            self._client.will_set(topic, payload, qos=qos, retain=retain)
        if cfg.protocol == "5":
            props = None
            if (not cfg.clean_start and cfg.session_expiry_seconds > 0) or self.backpressure:
                props = Properties(PacketTypes.CONNECT)
            if props is not None and not cfg.clean_start and cfg.session_expiry_seconds > 0:
                props.SessionExpiryInterval = int(cfg.session_expiry_seconds)
            if props is not None and self.backpressure:
                # the broker keeps at most this many QoS 1 messages unacked with us; the rest
                # wait in its queue (mosquitto: max_queued_messages / max_queued_bytes)
                props.ReceiveMaximum = int(cfg.receive_maximum)
            self._client.connect_async(
                cfg.host, cfg.port, cfg.keepalive_seconds, clean_start=cfg.clean_start, properties=props
            )
        else:
            self._client.connect_async(cfg.host, cfg.port, cfg.keepalive_seconds)
        self._client.loop_start()
        log.info(
            "mqtt: connecting to %s:%d as %r (MQTT %s, %s session, tls %s)",
            cfg.host,
            cfg.port,
            cfg.client_id,
            cfg.protocol,
            "clean" if cfg.clean_start else "persistent",
            "on" if cfg.tls.enabled else "off",
        )

    def stop_intake(self) -> None:
        """Stop handing messages on, but stay connected (alert sinks still publish).

        Later messages are neither queued nor acked (with manual acks the broker keeps
        them for the next session; with automatic acks they are counted as
        ``drops_total{reason="shutdown"}``).
        """
        self._intake_open = False

    def stop(self, timeout: float = 5.0) -> None:
        """Disconnect and stop paho's thread (waits at most `timeout` seconds)."""
        if not self._started:
            return
        self._stopping = True
        try:
            self._client.disconnect()
        except Exception:
            log.debug("mqtt: disconnect failed", exc_info=True)
        stopper = threading.Thread(target=self._client.loop_stop, name="mqtt-stop", daemon=True)
        stopper.start()
        stopper.join(timeout)
        if stopper.is_alive():
            log.warning("mqtt: network thread did not stop within %.1f s", timeout)
        self._started = False
        self._set_connected(False, "stopped")

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def subscribed(self) -> bool:
        """True once the broker granted every subscription on the current connection."""
        return self._connected and self._subscribed

    @property
    def client(self) -> mqtt.Client:
        """The paho client (for tests and sinks that need more than `publish`)."""
        return self._client

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> mqtt.MQTTMessageInfo:
        """Publish from any thread (alert sinks); QoS 1 messages are queued while disconnected."""
        return self._client.publish(topic, payload, qos=qos, retain=retain)

    def ack(self, msg: Delivery | Ingested) -> None:
        """Acknowledge a handled message (manual_ack only; a no-op otherwise or for QoS 0).

        Takes the item's `Delivery` (``item[3]``) or the whole item. A message from an
        earlier connection is not acked: the broker redelivers it on the resumed session,
        and that copy is acked when it is handled.
        """
        if isinstance(msg, Ingested):
            msg = msg.message
        if not self.manual_ack or msg.qos == 0 or msg.connection != self._connection:
            return
        try:
            self._client.ack(msg.mid, msg.qos)
        except Exception:
            log.debug("mqtt: ack of mid %s failed", msg.mid, exc_info=True)

    def ack_many(self, msgs: Iterable[Delivery | Ingested]) -> None:
        """`ack` for several handled messages (e.g. one scoring batch), in order.

        With the fast client the PUBACKs go out as one write (`_FastClient.ack_batch`);
        with plain paho, one `ack` each. Messages of an earlier connection and QoS 0
        messages are skipped, as in `ack`.
        """
        if not self.manual_ack:
            return
        client = self._client
        if type(client) is not _FastClient or client._fast_broken:
            for msg in msgs:
                self.ack(msg)
            return
        connection = self._connection
        mids = []
        for msg in msgs:
            if isinstance(msg, Ingested):
                msg = msg.message
            if msg.qos == 1 and msg.connection == connection:
                mids.append(msg.mid)
            elif msg.qos == 2:
                self.ack(msg)  # (subscriptions are QoS <= 1; paho's own handshake if not)
        try:
            client.ack_batch(mids)
        except Exception:
            log.debug("mqtt: ack of %d messages failed", len(mids), exc_info=True)

    def __repr__(self) -> str:
        cfg = self.cfg
        user = f", user={cfg.username!r}" if cfg.username else ""
        return (
            f"MQTTIngest({cfg.host}:{cfg.port}, client_id={cfg.client_id!r}{user}, "
            f"tls={'on' if cfg.tls.enabled else 'off'}, connected={self._connected})"
        )

    # ----------------------------------------------------------------- paho callbacks

    def _set_connected(self, connected: bool, detail: str) -> None:
        changed = connected != self._connected
        self._connected = connected
        if not connected:
            self._subscribed = False
        if self.metrics is not None:
            self.metrics.set_mqtt_connected(connected)
        if changed and self.on_state is not None:
            try:
                self.on_state(connected, detail)
            except Exception:
                self.stats["callback_errors"] += 1
                log.exception("mqtt: on_state callback failed")

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        try:
            if reason_code.is_failure:
                self.stats["connect_failures"] += 1
                self.last_error = f"connection to {self.cfg.host}:{self.cfg.port} refused by the broker: {reason_code}"
                if self._throttle.ready("connect:" + self.last_error):
                    log.error("mqtt: %s", self.last_error)
                return
            self._connection += 1
            self._connected_at = time.monotonic()
            self.stats["connections"] += 1
            if self._connection > 1 and self.metrics is not None:
                self.metrics.mqtt_reconnects.inc()
            self.last_error = None
            self._subscribed = False
            session = bool(getattr(flags, "session_present", False))
            log.info(
                "mqtt: connected to %s:%d (session present: %s); subscribing to %s",
                self.cfg.host,
                self.cfg.port,
                session,
                ", ".join(f for f, _ in self._subscriptions),
            )
            client.subscribe(self._subscription_request())
            self._set_connected(True, "connected")
        except Exception:
            self.stats["callback_errors"] += 1
            log.exception("mqtt: on_connect failed")

    def _subscription_request(self) -> list:
        if self.cfg.protocol == "5":
            # Retained messages only for a new subscription: resubscribing on every
            # reconnect must not replay the same retained readings again and again.
            return [
                (f, SubscribeOptions(qos=q, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB))
                for f, q in self._subscriptions
            ]
        return list(self._subscriptions)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        try:
            exc = sys.exc_info()[1]  # paho calls this inside its `except OSError:` block
            self.stats["connect_failures"] += 1
            self.last_error = describe_connect_error(exc, self.cfg.host, self.cfg.port)
            level = logging.ERROR if isinstance(exc, ssl.SSLError) else logging.WARNING
            if self._throttle.ready("connect:" + self.last_error):
                log.log(
                    level,
                    "mqtt: %s; retrying with backoff (max %.1f s)",
                    self.last_error,
                    self.cfg.reconnect_max_seconds,
                )
        except Exception:
            self.stats["callback_errors"] += 1
            log.exception("mqtt: on_connect_fail failed")

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        try:
            was_connected = self._connected
            if self._stopping:
                log.info("mqtt: disconnected (stopping)")
                self._set_connected(False, "stopped")
                return
            detail = f"disconnected from {self.cfg.host}:{self.cfg.port}: {reason_code}"
            if was_connected and self._takeover_suspected(client, reason_code):
                self.last_error = detail = (
                    f"another client is using client id {self.cfg.client_id!r}: the broker closed our session "
                    f"{self._short_streak} times in a row within {TAKEOVER_SECONDS:.0f} s of connecting "
                    f"(give every client its own mqtt.client_id; `monitor record` and `replay` add a suffix; "
                    f"if no other client has it, the broker's log says why it closes the connections)"
                )
                if self._throttle.ready("takeover"):
                    log.error("mqtt: %s; backing off %.1f s before reconnecting", detail, self._takeover_backoff)
                self._set_connected(False, detail)
                return
            if was_connected:
                self.last_error = detail
                log.warning(
                    "mqtt: %s; reconnecting with backoff (%.1f..%.1f s)",
                    detail,
                    self.cfg.reconnect_min_seconds,
                    self.cfg.reconnect_max_seconds,
                )
            self._set_connected(False, detail)
        except Exception:
            self.stats["callback_errors"] += 1
            log.exception("mqtt: on_disconnect failed")

    def _takeover_suspected(self, client: mqtt.Client, reason_code: Any) -> bool:
        """Count a takeover and back off when this disconnect continues a connect-disconnect
        loop (another client with our client id); reset the backoff after a long connection."""
        cfg = self.cfg
        lived = time.monotonic() - self._connected_at
        taken = getattr(reason_code, "value", None) == _SESSION_TAKEN_OVER
        if lived >= TAKEOVER_SECONDS and not taken:
            self._short_streak = 0
            if self._takeover_backoff:
                self._takeover_backoff = 0.0
                client.reconnect_delay_set(cfg.reconnect_min_seconds, cfg.reconnect_max_seconds)  # type: ignore[arg-type]
            return False
        self._short_streak += 1
        if not taken and self._short_streak < TAKEOVER_STREAK:
            return False
        # the loop's first recognition counts the whole streak; each later disconnect counts one
        n = TAKEOVER_STREAK if self._short_streak == TAKEOVER_STREAK and not taken else 1
        self.stats["takeovers"] += n
        if self.metrics is not None:
            self.metrics.mqtt_takeovers.inc(n)
        self._takeover_backoff = min(
            TAKEOVER_BACKOFF_MAX_SECONDS, max(1.0, cfg.reconnect_min_seconds, 2 * self._takeover_backoff)
        )
        # paho waits the minimum delay after a connection that succeeded: raise it for now
        client.reconnect_delay_set(self._takeover_backoff, max(self._takeover_backoff, cfg.reconnect_max_seconds))  # type: ignore[arg-type]
        return True

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        try:
            ok = True
            # one code per filter; a broker that sends fewer is judged on those it sent
            for (filt, _), code in zip(self._subscriptions, reason_codes, strict=False):
                if code.is_failure:
                    ok = False
                    self.last_error = f"subscription to {filt!r} refused by the broker: {code}"
                    log.error("mqtt: %s (check the broker's ACL)", self.last_error)
            self._subscribed = ok
        except Exception:
            self.stats["callback_errors"] += 1
            log.exception("mqtt: on_subscribe failed")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        ack_now = self.manual_ack  # unless handed off (the consumer acks) or intake is stopped
        try:
            received_at = _time()
            received_monotonic = _monotonic()
            try:
                topic = msg.topic
            except UnicodeDecodeError:
                topic = msg._topic.decode("utf-8", "replace")  # the codec rejects it as unmatched
            payload = msg.payload
            # tuple.__new__ directly: the NamedTuple's Python-level __new__ is a frame per message
            delivery = _new_tuple(
                Delivery, (received_at, topic, payload, msg.qos, bool(msg.retain), msg.mid, self._connection)
            )
            stats = self.stats
            stats["messages"] += 1  # exported as monitor_messages_received_total at scrape time
            if self.raw_tap is not None:
                try:
                    self.raw_tap(delivery.raw())
                except Exception:
                    stats["tap_errors"] += 1
                    if self._throttle.ready("tap"):
                        log.exception("mqtt: raw_tap failed (counted, message still processed)")
            readings, rejected = self.codec.decode(topic, payload, received_at)
            stats["readings"] += len(readings)  # ... monitor_readings_received_total
            if rejected:
                stats["rejected"] += len(rejected)
                if self._throttle.ready("rejected"):
                    log.warning(
                        "mqtt: rejected input on %r: %s: %s (all rejects are counted; logged at most every %.0f s)",
                        topic,
                        rejected[0].reason,
                        rejected[0].detail,
                        self._throttle.seconds,
                    )
            if not self._intake_open:
                ack_now = False  # stopping: the broker keeps it for the next session (manual acks)
                if not self.manual_ack:
                    self._count_drop(DropReason.SHUTDOWN, readings, rejected)
                return
            try:
                self.queue.put_nowait(_new_tuple(Ingested, (received_monotonic, readings, rejected, delivery)))
                ack_now = False
            except queue.Full:
                if self.backpressure and msg.qos and self._put_over is not None:
                    # held unacked: the broker sends no more than receive_maximum of these
                    self._put_over(_new_tuple(Ingested, (received_monotonic, readings, rejected, delivery)))
                    ack_now = False
                    stats["held_over"] += 1
                    if self.metrics is not None:
                        self.metrics.backpressure_held.inc()
                    if self._throttle.ready("held_over"):
                        log.warning(
                            "mqtt: ingest queue full: holding messages unacked (mqtt.overload: backpressure); "
                            "the broker keeps the rest, up to its max_queued_messages"
                        )
                else:
                    self._count_drop(DropReason.QUEUE_FULL, readings, rejected)
        except Exception:
            self.stats["callback_errors"] += 1
            if self._throttle.ready("on_message"):
                log.exception("mqtt: on_message failed (counted; the network loop keeps running)")
        finally:
            if ack_now:
                try:
                    client.ack(msg.mid, msg.qos)
                except Exception:
                    self.stats["callback_errors"] += 1

    @property
    def fast_path(self) -> bool:
        """True while incoming PUBLISH packets take the fast path (not off, not tripped)."""
        client = self._client
        return type(client) is _FastClient and not client._fast_broken

    def _on_fast_failure(self, exc: BaseException) -> None:
        """The fast path's circuit breaker tripped (paho's thread): count, log, carry on plain."""
        try:
            self.stats["fast_path_failures"] += 1
            if self.metrics is not None:
                self.metrics.mqtt_fast_path_failures.inc()
            log.error(
                "mqtt: the fast path failed (%s: %s); this client uses plain paho from now on "
                "(counted in monitor_mqtt_fast_path_failures_total; set mqtt.fast_path: off to skip it)",
                type(exc).__name__,
                exc,
                exc_info=exc,
            )
        except Exception:
            self.stats["callback_errors"] += 1

    def _hold_reads(self) -> bool:
        """Backpressure, on paho's thread before each socket read: True (read nothing now)
        while the hand-off is over its bounds. Waits up to 10 ms for the consumer to take
        items, so a paused loop neither spins nor delays alert publishes by more than that.
        At most one read's worth of messages (64 KiB with the fast path, one packet with
        plain paho) goes past the bounds; the broker holds everything after it."""
        q = self.queue
        over = getattr(q, "over_bounds", None)
        if over is None or not self._intake_open or not over():
            return False
        q.wait_taken(0.01)  # type: ignore[attr-defined]  # a HandOff (over_bounds is there)
        if over():
            self.stats["read_pauses"] += 1
            return True
        return False

    def _count_drop(self, reason: str, readings: Sequence[Reading], rejected: list[Rejected]) -> None:
        """A message not handed to the consumer: count its readings and its rejects here."""
        n = len(readings)
        self.stats["dropped_messages"] += 1
        self.stats["dropped_readings"] += n
        if self.metrics is not None:
            self.metrics.drop(reason, n)
            if rejected:
                self.metrics.rejected(rejected)
        if reason != DropReason.QUEUE_FULL:
            return
        self._drops_since_log += n
        if self._throttle.ready("queue_full"):
            full = getattr(self.queue, "full_reason", None)
            log.warning(
                "mqtt: ingest queue full (%s): dropped %d readings since the last report; "
                "the consumer is too slow for the intake (docs/operations.md, Overload; "
                "mqtt.overload: backpressure lets the broker hold them instead)",
                full() if full is not None else f"{self.queue.maxsize} messages, mqtt.queue_size",
                self._drops_since_log,
            )
            self._drops_since_log = 0


if TYPE_CHECKING:  # mypy proves the declared interface holds
    _SOURCES: tuple[type[Source], ...] = (MQTTIngest,)
