"""The paho fast path, fenced: everything in `monitor` that relies on paho's private internals.

`MQTTIngest` (monitor/io/mqtt.py) builds its client through `_fast_publish_supported` and
`_fast_client_ok`: only with a paho in `_VERIFIED_PAHO` whose internals match does it use
`_FastClient` (buffered reads, a direct PUBLISH decode, batched PUBACKs); otherwise plain
`paho.mqtt.client.Client` (or `_GatedClient`, the one-method override for backpressure).
The switch is ``mqtt.fast_path: auto | off`` (``MONITOR_MQTT__FAST_PATH``), read here as
`_FAST_PUBLISH`; an unexpected exception trips `_BufferedRead._trip`, the circuit breaker.
Decision records: docs/decisions/0001-paho-fast-path.md, 0017-ops-and-cli.md.
"""

from __future__ import annotations

import inspect
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import paho.mqtt
import paho.mqtt.client as mqtt
from paho.mqtt.exception import MalformedPacket

if TYPE_CHECKING:
    from paho.mqtt.client import _InPacket

    _ClientMixin = mqtt.Client  # for the checker, a mixin of Client sees Client's attributes
else:
    _ClientMixin = object

_new_tuple = tuple.__new__


class _FastMessage(NamedTuple):
    """What `MQTTIngest._on_message` reads of a paho `MQTTMessage`, built by `_FastClient`."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int
    dup: bool
    properties: None = None


_paho_handle_publish = mqtt.Client._handle_publish
_PUBACK_HEAD = bytes((0x40, 2))  # PUBACK, remaining length 2 (then the packet id)
_SUCCESS = mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
_DEBUG = logging.DEBUG


_BUFFERED_READ = True  # False: _FastClient reads packets with paho's own _packet_read (A/B)
_READ_SIZE = 65_536
_paho_time = getattr(mqtt, "time_func", time.monotonic)  # paho's clock for keepalive bookkeeping
_ERR_AGAIN = mqtt.MQTTErrorCode.MQTT_ERR_AGAIN
_ERR_CONN_LOST = mqtt.MQTTErrorCode.MQTT_ERR_CONN_LOST
_ERR_PROTOCOL = mqtt.MQTTErrorCode.MQTT_ERR_PROTOCOL


def _empty_in_packet() -> _InPacket:
    """paho's idle `_in_packet` (as `Client._packet_read` resets it)."""
    return {
        "command": 0,
        "have_remaining": 0,
        "remaining_count": [],
        "remaining_mult": 1,
        "remaining_length": 0,
        "packet": bytearray(b""),
        "to_process": 0,
        "pos": 0,
    }


class _BufferedRead(_ClientMixin):
    """`_packet_read` for `_FastClient`: one `recv` of up to 64 KiB, then every complete
    packet in the buffer goes to paho's `_packet_handle`, exactly as paho's own
    `_packet_read` would hand it over (command byte, remaining length, body).

    paho reads each packet with three `recv` calls (the command byte, each remaining-length
    byte, the body) after a `select`, all per message: with small messages those syscalls
    are most of the network thread's time. Bytes of an incomplete packet stay in the
    buffer until the rest arrives (the socket then selects readable again); every
    complete packet is handled before returning, so no packet waits in the buffer for a
    `select` that would not wake. A new socket (a reconnect) starts an empty buffer.
    """

    _rbuf: bytearray
    _rsock: object = None
    _read_gate: Callable[[], bool] | None = None  # backpressure: True = do not read now

    _fast_broken = False  # the circuit breaker tripped: plain paho for good (this client)
    _on_fast_failure: Callable[[BaseException], None] | None = None  # MQTTIngest counts and logs

    def _fast_ok(self) -> bool:  # _FastClient: may PUBLISH packets skip paho's handler now?
        return False

    def _trip(self, exc: BaseException) -> None:
        """The circuit breaker: an unexpected exception in our code on paho's internals.
        From now on this client is plain paho (reads, PUBLISH handling, acks)."""
        self._fast_broken = True
        self._rbuf = bytearray()
        self._in_packet = _empty_in_packet()
        callback = self._on_fast_failure
        if callback is not None:
            callback(exc)

    def _publish(self, buf: bytearray, header: int, start: int, stop: int) -> mqtt.MQTTErrorCode | None:
        return None

    def _packet_read(self) -> mqtt.MQTTErrorCode:
        gate = self._read_gate
        if gate is not None and gate():
            return _ERR_AGAIN  # paho's loop goes on (writes, keepalive) and selects again
        if not _BUFFERED_READ or self._fast_broken:
            return mqtt.Client._packet_read(self)
        try:
            return self._buffered_read()
        except Exception as exc:
            # Bytes may have been half-handled: drop the connection; paho reconnects (plain
            # from now on) and the broker redelivers what was not acked.
            self._trip(exc)
            return _ERR_CONN_LOST

    def _buffered_read(self) -> mqtt.MQTTErrorCode:
        sock = self._sock
        if sock is None or sock is not self._rsock:
            self._rbuf = bytearray()
            self._rsock = sock
        buf = self._rbuf
        try:
            data = self._sock_recv(_READ_SIZE)
        except BlockingIOError:
            return _ERR_AGAIN
        except TimeoutError as err:
            self._easy_log(mqtt.MQTT_LOG_ERR, "timeout on socket: %s", err)
            return _ERR_CONN_LOST
        except OSError as err:
            self._easy_log(mqtt.MQTT_LOG_ERR, "failed to receive on socket: %s", err)
            return _ERR_CONN_LOST
        if not data:
            return _ERR_CONN_LOST
        buf += data
        with self._msgtime_mutex:
            self._last_bytes_received = _paho_time()
        n = len(buf)
        pos = 0
        rc: mqtt.MQTTErrorCode | None = _SUCCESS
        fast = self._fast_ok()  # (checked per read, not per packet)
        while n - pos >= 2:
            # the remaining length: 1-4 bytes of 7 bits, least significant first
            i = pos + 1
            length = 0
            mult = 1
            complete = False
            while i < n:
                byte = buf[i]
                i += 1
                length += (byte & 127) * mult
                mult *= 128
                if not byte & 128:
                    complete = True
                    break
                if i - pos > 4:  # as paho: a fifth length byte is a protocol error
                    self._rbuf = bytearray()
                    return _ERR_PROTOCOL
            if not complete or n - i < length:
                break  # the rest of this packet has not arrived yet
            header = buf[pos]
            if fast and header & 0xF0 == 0x30:  # a PUBLISH: straight from the buffer
                rc = self._publish(buf, header, i, i + length)
                if rc is not None:
                    pos = i + length
                    if rc or self._sock is not sock:
                        break
                    continue
            self._in_packet = {
                "command": buf[pos],
                "have_remaining": 1,
                "remaining_count": list(buf[pos + 1 : i]),
                "remaining_mult": mult,
                "remaining_length": length,
                "packet": buf[i : i + length],
                "to_process": 0,
                "pos": 0,
            }
            pos = i + length
            try:
                rc = self._packet_handle()
            except MalformedPacket as exc:
                self._easy_log(mqtt.MQTT_LOG_DEBUG, "Received malformed packet: %s", exc)
                rc = _ERR_PROTOCOL
            self._in_packet = _empty_in_packet()
            if rc or self._sock is not sock:  # an error, or a callback disconnected
                break
        if self._rbuf is buf:
            del buf[:pos]
        return rc if rc else _ERR_AGAIN


class _FastClient(_BufferedRead, mqtt.Client):
    """paho's Client with a fast path for the common incoming PUBLISH.

    paho spends ~29 µs per received message in its own code (`decode_publish` builds an MQTT 5
    `Properties` object even when the packet has none, a topic matcher walk for
    `message_callback_add` filters we do not use, an `MQTTMessage` with an `MQTTMessageInfo`,
    a debug log call, two locks). For a QoS 0/1 PUBLISH with a valid UTF-8 topic, a packet id
    other than 0 (QoS 1) and, under MQTT 5, an EMPTY property block, `_handle_publish` here
    reads topic, packet id and payload straight from the packet and calls the installed
    ``on_message`` (`_fast_handler`, set by `MQTTIngest`) with a `_FastMessage`, then does what
    paho does afterwards: a PUBACK for QoS 1 unless manual acks are on (then the consumer
    acks later through `Client.ack`). Everything else goes to paho's own `_handle_publish`
    unchanged: QoS 2, any MQTT 5 property (user properties, topic alias, ...), an empty or
    undecodable topic, a short packet, filtered callbacks, a different ``on_message``, and
    whenever paho's DEBUG log or ``on_log`` is on (so its "Received PUBLISH" lines stay).

    Relies on paho internals (`_in_packet`, `_protocol`, `_manual_ack`, `_send_puback`, ...):
    `MQTTIngest` only uses this class when `_fast_publish_supported()` and
    `_fast_client_ok()` confirm the installed paho looks like the one this was verified
    against (2.x); otherwise it uses plain `mqtt.Client`.
    """

    _fast_handler: Callable[[Any, Any, Any], None] | None = None

    def ack_batch(self, mids: Sequence[int]) -> mqtt.MQTTErrorCode:
        """Manual PUBACKs for QoS 1 messages `mids`, queued as ONE write.

        paho's `ack` queues one 4-byte PUBACK per message, and each queueing writes a
        byte to the socket pair that wakes the network loop, which then sends each
        PUBACK with its own `send`: two syscalls per message. The same PUBACK packets
        (`_send_command_with_mid`'s bytes: type 0x40, remaining length 2, the packet
        id; valid in MQTT 3.1.1 and 5, where a success PUBACK may omit reason code and
        properties), back to back in one buffer, cost one of each per batch.
        """
        if not mids:
            return _SUCCESS
        if not self._fast_broken:
            try:
                if len(mids) == 1:
                    return self._send_puback(mids[0])
                packet = b"".join([_PUBACK_HEAD + mid.to_bytes(2, "big") for mid in mids])
                return self._packet_queue(mqtt.PUBACK, packet, 0, 1)
            except Exception as exc:
                self._trip(exc)
        rc = _SUCCESS
        for mid in mids:  # paho's public ack, one by one
            rc = self.ack(mid, 1) or rc
        return rc

    def _fast_ok(self) -> bool:
        """May the fast path take PUBLISH packets now? (Our handler installed, no paho
        debug log, on_log or filtered callbacks: those keep paho's own path.)"""
        handler = self._fast_handler
        return not (
            self._fast_broken
            or handler is None
            or handler is not self._on_message
            or self._on_log is not None
            or self._on_message_filtered._root._children
            or (self._logger is not None and self._logger.isEnabledFor(_DEBUG))
        )

    def _handle_publish(self) -> mqtt.MQTTErrorCode:
        if self._fast_ok():
            try:
                in_packet = self._in_packet
                packet = in_packet["packet"]
                rc = self._publish(packet, in_packet["command"], 0, len(packet))
            except Exception as exc:
                self._trip(exc)  # paho handles this packet (at worst a second delivery: at-least-once)
                rc = None
            if rc is not None:
                return rc
        return _paho_handle_publish(self)

    def _publish(self, buf: bytearray, header: int, start: int, stop: int) -> mqtt.MQTTErrorCode | None:
        """The PUBLISH whose body is ``buf[start:stop]``, if the fast path takes it (else
        None, and nothing was done: paho's `_handle_publish` takes it)."""
        qos = (header & 0x06) >> 1
        if qos > 1 or stop - start < 2:
            return None
        end = start + 2 + ((buf[start] << 8) | buf[start + 1])
        if end == start + 2:  # empty topic: malformed (3.1.1) or a topic alias (5): paho's business
            return None
        pos = end
        mid = 0
        if qos:
            pos += 2
            if pos > stop:
                return None
            mid = (buf[end] << 8) | buf[end + 1]
            if mid == 0:
                return None
        if self._protocol == mqtt.MQTTv5:
            if pos >= stop or buf[pos] != 0:  # any property: paho decodes it
                return None
            pos += 1
        elif pos > stop:
            return None
        try:
            topic = buf[start + 2 : end].decode("utf-8")
        except UnicodeDecodeError:
            return None
        message = _new_tuple(
            _FastMessage, (topic, bytes(buf[pos:stop]), qos, bool(header & 0x01), mid, bool(header & 0x08), None)
        )
        handler = self._fast_handler
        assert handler is not None  # _fast_ok() saw it installed before this packet was taken
        with self._in_callback_mutex:  # as paho's _handle_on_message
            try:
                handler(self, self._userdata, message)
            except Exception as err:
                self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                if not self.suppress_exceptions:
                    raise
        if qos and not self._manual_ack:
            return self._send_puback(mid)
        return _SUCCESS


class _GatedClient(mqtt.Client):
    """Plain paho that can stop reading the socket (backpressure without the fast path):
    while `_read_gate()` says so, nothing more is read, and the broker holds the rest."""

    _read_gate: Callable[[], bool] | None = None

    def _packet_read(self) -> mqtt.MQTTErrorCode:
        gate = self._read_gate
        if gate is not None and gate():
            return _ERR_AGAIN
        return mqtt.Client._packet_read(self)


# False: always plain paho (A/B measurements; CI's second MQTT run). The environment
# variable is the one `load_config` reads as mqtt.fast_path, so that tests which build an
# MQTTConfig directly follow it too.
_FAST_PUBLISH = os.environ.get("MONITOR_MQTT__FAST_PATH", "auto").strip().lower() != "off"
# paho-mqtt releases `_FastClient` was read against and tested with, exactly (not a range:
# a patch release may move the internals too). Extend after re-reading paho's client.py
# and running tests/test_mqtt_ingest.py against the new release.
_VERIFIED_PAHO = ("2.2.0",)


def _fast_publish_supported() -> tuple[bool, str]:
    """Does the installed paho have the internals `_FastClient` relies on (class level)?"""
    version = getattr(paho.mqtt, "__version__", "") or ""
    if not _FAST_PUBLISH:
        return False, "disabled"
    if version not in _VERIFIED_PAHO:
        return False, f"paho-mqtt {version!r} is not a verified version ({', '.join(_VERIFIED_PAHO)})"
    try:
        for name, params in (
            ("_handle_publish", ["self"]),
            ("_send_puback", ["self", "mid"]),
            ("_packet_read", ["self"]),
            ("_packet_handle", ["self"]),
            ("_sock_recv", ["self", "bufsize"]),
            ("_packet_queue", ["self", "command", "packet", "mid", "qos", "info"]),
            ("_easy_log", ["self", "level", "fmt", "args"]),
            ("ack", ["self", "mid", "qos"]),
        ):
            if list(inspect.signature(getattr(mqtt.Client, name)).parameters) != params:
                return False, f"paho-mqtt {version}: Client.{name} has another signature"
        if not isinstance(mqtt.Client.on_message, property) or not isinstance(mqtt.Client.on_log, property):
            return False, f"paho-mqtt {version}: on_message/on_log are not properties"
        if (mqtt.MQTTv5, mqtt.PUBLISH, mqtt.PUBACK, mqtt.MQTT_LOG_ERR) != (5, 0x30, 0x40, 8):
            return False, f"paho-mqtt {version}: unexpected constants"
    except (AttributeError, TypeError, ValueError) as exc:
        return False, f"paho-mqtt {version}: {type(exc).__name__}: {exc}"
    return True, f"paho-mqtt {version}"


def _fast_client_ok(client: mqtt.Client) -> tuple[bool, str]:
    """Does a constructed client have the instance attributes `_FastClient` reads?"""
    try:
        in_packet = client._in_packet
        ok = (
            isinstance(in_packet, dict)
            and isinstance(in_packet.get("command"), int)
            and isinstance(in_packet.get("packet"), (bytes, bytearray))
            and isinstance(client._manual_ack, bool)
            and client._protocol in (mqtt.MQTTv311, mqtt.MQTTv5)
            and isinstance(client._on_message_filtered._root._children, dict)
            and hasattr(client._in_callback_mutex, "__enter__")
            and hasattr(client, "_userdata")
            and hasattr(client, "_on_log")
            and hasattr(client, "_logger")
            and hasattr(client, "_on_message")
            and isinstance(client.suppress_exceptions, bool)
            and hasattr(client._msgtime_mutex, "__enter__")
            and hasattr(client, "_last_bytes_received")
            and hasattr(client._out_packet, "append")
        )
    except AttributeError as exc:
        return False, f"missing {exc}"
    return (True, "") if ok else (False, "unexpected client attributes")
