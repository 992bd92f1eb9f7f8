"""Topic template + payload -> readings.

`Codec.decode` turns one MQTT message into `Reading`s plus `Rejected` values (one per
thing that could not become a reading; its `reason` is a `RejectReason`, a metric label).
It never raises: bad input is data here, and an exception escaping into the paho thread
would kill the network loop.

Payload formats (per `TopicRule.format`):

- ``number``: bare number text, e.g. ``b"21.5"``; the timestamp is the receive time.
- ``json``: ``{"value": 21.5, "ts": 1700000000.0, "channel": "temp"}`` — `value_field`
  required, `timestamp_field` and `channel_field` optional.
- ``json_multi``: ``{"ts": ..., "temp": 21.5, "rpm": 1480}`` — every numeric key except
  the timestamp field is a channel; strings, nulls and nested values are metadata and
  ignored; booleans and non-finite numbers are rejected per channel.
- ``json_array``: ``[{...}, {...}]`` of ``json`` / ``json_multi`` objects (an element
  with `value_field` is ``json``); each element is judged on its own.
- ``influx``: InfluxDB line protocol, one metric per line (Telegraf's ``influx`` output):
  ``cpu,host=a usage_idle=98.5,procs=212i 1700000000000000000``.
- ``telegraf_json``: Telegraf's ``json`` output, ``{"fields": {...}, "name": ..., "tags":
  {...}, "timestamp": ...}`` or a batch ``{"metrics": [...]}``.
- ``auto``: a bare number, an object with `value_field` (json), a Telegraf metric
  (telegraf_json), another object (json_multi), an array (json_array), or else line
  protocol (influx).

For influx and telegraf_json every numeric field is a reading; its channel is the rule's
`channel` format over ``measurement``, ``field``, the metric's tags and the topic's
placeholders, where the default ``{channel}`` means ``{measurement}.{field}``
(monitor.io.codec_formats).

Fields: `value_field`, `timestamp_field` and `channel_field` are keys or dotted paths
into nested objects (``ENERGY.Power``; a literal key with the dot wins). With
``nested: flatten`` a json_multi object's nested objects give channels named by their
dotted paths (Tasmota's ``{"ENERGY": {"Power": 45}}`` -> ``ENERGY.Power``); by default
nested values are metadata.

Timestamps: epoch numbers in the rule's `timestamp_unit` (s, ms, us, ns), or with
``auto`` (the default) told apart by magnitude: above 1e11 milliseconds, above 1e14
microseconds, above 1e17 nanoseconds (each is year 5138 in the smaller unit); numeric
strings; ISO 8601 strings (``Z`` or an offset; naive means UTC). Missing or null: the
receive time.

Topics: ``{name}`` matches one level; a trailing ``{name...}`` one or more (MQTT ``#``),
captured with their ``/``.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any

import numpy as np

from monitor.core.config import ConfigError, TopicRule
from monitor.core.types import FrameBlock, RawMessage, Reading, ReadingBlock, Rejected, RejectReason
from monitor.io.codec_formats import (
    MS_THRESHOLD,
    UNIT_SCALE,
    MetricSink,
    auto_seconds,
    decode_influx,
    decode_telegraf,
    flatten,
    is_telegraf,
    lift,
    lookup,
)
from monitor.io.sequence import SequenceTracker
from monitor.io.topic_template import Template

_fast_loads: Callable[[bytes], Any] | None
try:  # orjson is ~5x faster on batched payloads; the stdlib is the fallback
    import orjson as _orjson

    _fast_loads = _orjson.loads
    _FastDecodeError: type[Exception] = _orjson.JSONDecodeError
except ImportError:  # pragma: no cover - exercised only without orjson
    _fast_loads = None
    _FastDecodeError = ValueError

__all__ = ["MS_THRESHOLD", "Codec", "json_decoder", "parse_iso", "parse_timestamp"]

log = logging.getLogger(__name__)
_DECODER_LOGGED = [False]  # log which JSON decoder serves, once per process
_EPOCH_NAIVE = datetime(1970, 1, 1)
_MISSING = object()
_new_tuple = tuple.__new__
_DETAIL_CHARS = 80
_EXACT = 2**53  # ints below this convert to float exactly


class _Reject(Exception):
    """Internal control flow: the whole message (or one element) is rejected."""

    def __init__(self, reason: str, detail: str):
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


def _clip(value: Any, limit: int = _DETAIL_CHARS) -> str:
    """A short repr for reject details (payloads can be a megabyte of anything)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- timestamps

_ISO_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_iso(text: str, naive_offset_seconds: float = 0.0) -> float:
    """ISO 8601 -> epoch seconds; a naive time is UTC + `naive_offset_seconds`."""
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        # Older Pythons (3.10) reject "Z" and more than 6 fractional digits.
        fixed = _ISO_FRACTION.sub(r"\1", text)
        if fixed[-1:] in ("Z", "z"):
            fixed = fixed[:-1] + "+00:00"
        dt = datetime.fromisoformat(fixed)
    if dt.tzinfo is None:
        return (dt - _EPOCH_NAIVE) / timedelta(seconds=1) - naive_offset_seconds
    return dt.timestamp()


def json_decoder() -> str:
    """Which JSON decoder reads payloads: ``orjson <version>`` or ``stdlib json``."""
    if _fast_loads is None:
        return "stdlib json"
    return f"orjson {getattr(_orjson, '__version__', '?')}"


def parse_timestamp(value: Any, naive_offset_seconds: float = 0.0, scale: float | None = None) -> float:
    """Epoch seconds from a number, numeric string or ISO 8601 string.

    Numbers are in units of 1/`scale` seconds (1e3: ms), or with `scale` None told apart
    by magnitude (`auto_seconds`). Raises ValueError when `value` is none of these or is
    not finite.
    """
    tv = type(value)
    if tv is str:
        text = value.strip()
        if not text:
            raise ValueError("empty timestamp")
        try:
            number = float(text)
        except ValueError:
            try:
                return parse_iso(text, naive_offset_seconds)
            except (ValueError, OverflowError, TypeError) as exc:
                raise ValueError(f"not an epoch number or ISO 8601 time: {_clip(value)}") from exc
    elif tv is float or tv is int:
        number = value
    else:
        raise ValueError(f"not a number or string: {_clip(value)}")
    try:
        seconds = auto_seconds(number) if scale is None else number / scale
    except OverflowError:
        raise ValueError(f"out of range: {_clip(value)}") from None
    if seconds - seconds != 0.0:
        raise ValueError(f"not finite: {_clip(value)}")
    return seconds


class _Rule:
    """A TopicRule prepared for decoding."""

    __slots__ = (
        "channel_field",
        "flatten",
        "format",
        "index",
        "paths",
        "prepare",
        "rule",
        "scale",
        "sequence",
        "template",
        "timestamp_field",
        "value_field",
    )

    def __init__(self, rule: TopicRule, index: int):
        self.rule = rule
        self.index = index
        self.template = Template(rule.template, f"topics[{index}].template")
        self.format = rule.format
        self.value_field = rule.value_field
        self.timestamp_field = rule.timestamp_field
        self.channel_field = rule.channel_field
        unit = getattr(rule, "timestamp_unit", "auto")
        if unit != "auto" and unit not in UNIT_SCALE:
            raise ConfigError(f"topics[{index}].timestamp_unit", f"unknown unit {unit!r}: use s, ms, us, ns or auto")
        self.scale: float | None = UNIT_SCALE.get(unit)  # None: by magnitude
        self.flatten = getattr(rule, "nested", "ignore") == "flatten"
        # dotted fields, lifted to top-level keys before the flat decoders run; None: no work
        dotted = tuple(
            (f, tuple(f.split(".")))
            for f in dict.fromkeys((rule.value_field, rule.timestamp_field, rule.channel_field))
            if "." in f
        )
        self.paths = dotted or None
        seq = getattr(rule, "sequence_field", None)
        self.sequence: tuple[str, tuple[str, ...]] | None = None if seq is None else (seq, tuple(seq.split(".")))
        # json_multi objects reshaped before their keys become channels; None: no work
        self.prepare: Callable[[dict], dict] | None = None
        if self.flatten or seq is not None:
            self.prepare = functools.partial(_prepare, self.flatten, seq)


# --------------------------------------------------------------------------- codec


class Codec:
    """Decodes MQTT messages into readings according to an ordered list of topic rules.

    Thread-compatible: one instance per consumer thread (the topic cache is a plain dict
    whose worst case under a race is a recomputed entry).
    """

    def __init__(
        self,
        rules: Sequence[TopicRule],
        max_payload_bytes: int = 1_048_576,
        max_future_seconds: float = 300.0,
        cache_size: int = 100_000,
        columns: bool = False,
    ):
        if max_payload_bytes <= 0:
            raise ConfigError("mqtt.max_payload_bytes", f"must be > 0, got {max_payload_bytes}")
        if max_future_seconds < 0:
            raise ConfigError("stream.max_future_seconds", f"must be >= 0, got {max_future_seconds}")
        self.rules = list(rules)
        self.max_payload_bytes = int(max_payload_bytes)
        self.max_future_seconds = float(max_future_seconds)
        self._rules = [_Rule(rule, i) for i, rule in enumerate(self.rules)]
        self._cache_size = max(1, int(cache_size))
        # columns=True: a JSON array of plain {"ts", "value"} objects (channel from the
        # topic) decodes to one ReadingBlock instead of a list of Readings
        self.columns = bool(columns)
        # topic -> (rule, stream, channel or None, topic names) or None when no rule matches
        self._routes: dict[str, tuple[_Rule, str, str | None, dict[str, str]] | None] = {}
        # per-stream sequence numbers of rules with a sequence_field (monitor.io.sequence)
        self.sequences = SequenceTracker(self._cache_size)
        if not _DECODER_LOGGED[0]:
            _DECODER_LOGGED[0] = True
            if _fast_loads is None:
                log.warning(
                    "payload JSON decoder: stdlib json (orjson is not installed; batched payloads decode ~5x slower)"
                )
            else:
                log.info("payload JSON decoder: %s", json_decoder())

    # ----------------------------------------------------------------- public

    def decode_message(self, msg: RawMessage) -> tuple[Sequence[Reading], list[Rejected]]:
        """`decode` for a RawMessage."""
        try:
            topic, payload, received_at = msg.topic, msg.payload, msg.received_at
        except Exception as exc:
            return [], [Rejected(RejectReason.INTERNAL, _internal_detail(exc))]
        return self.decode(topic, payload, received_at)

    def decode(
        self, topic: str, payload: bytes | bytearray, received_at: float
    ) -> tuple[Sequence[Reading], list[Rejected]]:
        """Readings and rejects of one message; never raises.

        The readings are a list, or (``columns=True``, a batched payload whose every
        element takes the common form) one `ReadingBlock` holding the same readings.
        """
        readings: list[Reading] = []
        rejects: list[Rejected] = []
        try:
            block = self._decode(topic, payload, float(received_at), readings, rejects)
            if block is not None:
                return block, rejects
        except _Reject as rej:
            rejects.append(Rejected(rej.reason, rej.detail))
        except Exception as exc:
            return [], [Rejected(RejectReason.INTERNAL, _internal_detail(exc))]
        return readings, rejects

    def route(self, topic: str) -> tuple[str, str | None, int] | None:
        """(stream, channel, rule index) for a topic, or None; channel None where the payload names
        channels (json_multi, influx, telegraf_json)."""
        found = self._route(topic)
        return None if found is None else (found[1], found[2], found[0].index)

    # ----------------------------------------------------------------- internals

    def _route(self, topic: str) -> tuple[_Rule, str, str | None, dict[str, str]] | None:
        routes = self._routes
        found = routes.get(topic, _MISSING)
        if found is _MISSING:
            found = self._match(topic)
            if len(routes) >= self._cache_size:
                routes.clear()  # bounded: a flood of distinct topics cannot grow memory
            routes[topic] = found
        return found  # type: ignore[return-value]  # not the _MISSING sentinel by now (unnarrowable)

    def _match(self, topic: str) -> tuple[_Rule, str, str | None, dict[str, str]] | None:
        levels = topic.split("/")
        for rule in self._rules:
            tags = rule.template.match(levels)
            if tags is None:
                continue
            stream = rule.rule.stream.format_map(tags)
            if rule.format in ("json_multi", "influx", "telegraf_json"):
                channel = None
            else:
                try:
                    channel = rule.rule.channel.format_map(tags)
                except (KeyError, IndexError, ValueError):
                    channel = None  # only a payload channel field can name it
            return rule, stream, channel, tags
        return None

    def _decode(
        self, topic: Any, payload: Any, received_at: float, out: list[Reading], rej: list[Rejected]
    ) -> ReadingBlock | FrameBlock | None:
        if type(topic) is not str:
            raise _Reject(RejectReason.UNMATCHED_TOPIC, f"topic is not a string: {_clip(topic)}")
        found = self._route(topic)
        if found is None:
            raise _Reject(RejectReason.UNMATCHED_TOPIC, f"no topic rule matches {_clip(topic)}")
        rule, stream, channel, names = found
        if type(payload) is not bytes:
            payload = _as_bytes(payload)
        if len(payload) > self.max_payload_bytes:
            raise _Reject(RejectReason.OVERSIZED, f"{_clip(topic)}: {len(payload)} bytes > {self.max_payload_bytes}")
        if not payload or payload.isspace():
            raise _Reject(RejectReason.MISSING_VALUE, f"{_clip(topic)}: empty payload")
        fmt: str = rule.format  # "auto" resolves to "object", "json_array" or "number"
        horizon = received_at + self.max_future_seconds
        if fmt == "auto":
            first = payload[:1]
            if first.isspace():
                first = payload.lstrip()[:1]
            if first == b"{":
                fmt = "object"
            elif first == b"[":
                fmt = "json_array"
            else:
                fmt = "number"
        if fmt == "number":
            if channel is None:
                if rule.format == "auto" and _looks_like_line_protocol(payload):
                    fmt = "influx"
                else:
                    raise _Reject(RejectReason.MISSING_VALUE, f"{_clip(topic)}: no channel for a bare number")
            else:
                try:
                    value = _parse_number(payload, topic)
                except _Reject:
                    if rule.format != "auto" or not _looks_like_line_protocol(payload):
                        raise
                    fmt = "influx"  # auto: not a number, but a line protocol payload
                else:
                    out.append(_new_tuple(Reading, (stream, channel, received_at, value)))
                    return None
        if fmt == "influx":
            decode_influx(payload, self._sink(rule, stream, names, received_at, horizon, topic, out, rej))
            return None
        doc = _parse_json(payload, topic)
        if fmt == "telegraf_json":
            if type(doc) is not dict and type(doc) is not list:
                raise _Reject(
                    RejectReason.MALFORMED, f"{_clip(topic)}: expected a Telegraf JSON metric, got {type(doc).__name__}"
                )
            decode_telegraf(doc, self._sink(rule, stream, names, received_at, horizon, topic, out, rej))
            return None
        paths = rule.paths
        if paths is not None:
            if type(doc) is dict:
                doc = lift(doc, paths)
            elif type(doc) is list:
                doc = [lift(e, paths) if type(e) is dict else e for e in doc]
        if rule.sequence is not None and type(doc) is dict:
            self._sequence(rule.sequence, doc, stream)
        if fmt == "json_array":
            if type(doc) is not list:
                raise _Reject(
                    RejectReason.MALFORMED, f"{_clip(topic)}: expected a JSON array, got {type(doc).__name__}"
                )
            if self.columns and len(doc) > 1 and rule.scale is None and paths is None and rule.prepare is None:
                block: ReadingBlock | FrameBlock | None
                first = doc[0]
                if type(first) is dict and rule.value_field not in first:
                    block = _frame_block(doc, rule, stream, horizon)
                else:
                    block = None if channel is None else _block(doc, rule, stream, channel, horizon)
                if block is not None:
                    return block
            self._array(doc, rule, stream, channel, received_at, horizon, topic, out, rej)
            return None
        if type(doc) is not dict:
            raise _Reject(RejectReason.MALFORMED, f"{_clip(topic)}: expected a JSON object, got {type(doc).__name__}")
        if fmt == "json" or (fmt == "object" and rule.value_field in doc):
            self._single(doc, rule, stream, channel, received_at, horizon, topic, out, rej)
        elif fmt == "object" and is_telegraf(doc):  # auto: Telegraf's json output
            decode_telegraf(doc, self._sink(rule, stream, names, received_at, horizon, topic, out, rej))
        else:
            self._multi(doc, rule, stream, received_at, horizon, topic, out, rej)
        return None

    def _sequence(self, field: tuple[str, tuple[str, ...]], doc: dict, stream: str) -> None:
        """Hand a message's sequence number to the tracker; a missing or non-integer one is ignored."""
        name, path = field
        seq = doc.get(name, _MISSING)
        if seq is _MISSING:
            seq = lookup(doc, path)
        if type(seq) is int:
            self.sequences.see(stream, seq)
        elif type(seq) is float and seq.is_integer():
            self.sequences.see(stream, int(seq))

    def _sink(
        self,
        rule: _Rule,
        stream: str,
        names: dict[str, str],
        received_at: float,
        horizon: float,
        topic: str,
        out: list,
        rej: list,
    ) -> MetricSink:
        return MetricSink(stream, names, rule.rule.channel, rule.scale, received_at, horizon, topic, out, rej)

    def _array(
        self,
        doc: list,
        rule: _Rule,
        stream: str,
        channel: str | None,
        received_at: float,
        horizon: float,
        topic: str,
        out: list,
        rej: list,
    ) -> None:
        value_field = rule.value_field
        ts_field = rule.timestamp_field
        channel_field = rule.channel_field
        fast = channel is not None and rule.scale is None  # an explicit unit: `_single` converts
        for i, element in enumerate(doc):
            # Fast path for the common element, {"ts": <epoch s>, "value": <finite number>}
            # with the channel from the topic: exactly what `_single` would make of it.
            if fast and type(element) is dict and channel_field not in element:
                value: Any = element.get(value_field, None)  # JSON values: checked by type below
                stamp: Any = element.get(ts_field, None)
                tv = type(value)
                ts = type(stamp)
                if ((tv is float and value - value == 0.0) or (tv is int and -_EXACT < value < _EXACT)) and (
                    (ts is float and stamp - stamp == 0.0 and stamp <= MS_THRESHOLD)
                    or (ts is int and -_EXACT < stamp <= MS_THRESHOLD)
                ):
                    stamp = float(stamp)
                    if stamp <= horizon:
                        out.append(_new_tuple(Reading, (stream, channel, stamp, float(value))))
                        continue
            if type(element) is not dict:
                rej.append(
                    Rejected(
                        RejectReason.MALFORMED, f"{_clip(topic)}[{i}]: expected an object, got {type(element).__name__}"
                    )
                )
            elif value_field in element:
                self._single(element, rule, stream, channel, received_at, horizon, topic, out, rej)
            else:
                self._multi(element, rule, stream, received_at, horizon, topic, out, rej)

    def _single(
        self,
        obj: dict,
        rule: _Rule,
        stream: str,
        channel: str | None,
        received_at: float,
        horizon: float,
        topic: str,
        out: list,
        rej: list,
    ) -> None:
        """One `json` object: value, optional timestamp, optional channel override."""
        value: Any = obj.get(rule.value_field)  # a JSON value: checked by type below
        tv = type(value)
        if tv is float:
            if value - value != 0.0:
                rej.append(Rejected(RejectReason.NON_FINITE, f"{_clip(topic)}: value {value!r}"))
                return
        elif tv is int:
            try:
                value = float(value)
            except OverflowError:
                rej.append(Rejected(RejectReason.NON_FINITE, f"{_clip(topic)}: value {_clip(value)} overflows a float"))
                return
        elif value is None:
            rej.append(Rejected(RejectReason.MISSING_VALUE, f"{_clip(topic)}: no {rule.value_field!r} in {_clip(obj)}"))
            return
        elif tv is str:
            try:
                value = float(value)
            except ValueError:
                rej.append(Rejected(RejectReason.MALFORMED, f"{_clip(topic)}: value {_clip(value)} is not a number"))
                return
            if value - value != 0.0:
                rej.append(Rejected(RejectReason.NON_FINITE, f"{_clip(topic)}: value {value!r}"))
                return
        else:
            rej.append(Rejected(RejectReason.MALFORMED, f"{_clip(topic)}: value {_clip(value)} is not a number"))
            return
        name = obj.get(rule.channel_field)
        if name is None:
            if channel is None:
                rej.append(
                    Rejected(RejectReason.MISSING_VALUE, f"{_clip(topic)}: no {rule.channel_field!r} in {_clip(obj)}")
                )
                return
            name = channel
        elif type(name) is not str or not name:
            if type(name) is int:
                name = str(name)
            else:
                rej.append(Rejected(RejectReason.MALFORMED, f"{_clip(topic)}: channel {_clip(name)} is not a name"))
                return
        stamp = obj.get(rule.timestamp_field)
        ts = type(stamp)
        if stamp is None:
            stamp = received_at
        elif ts is float or ts is int:
            scale = rule.scale
            try:
                if scale is None:
                    stamp = float(stamp) if stamp <= MS_THRESHOLD else auto_seconds(stamp)
                else:
                    stamp = stamp / scale
            except OverflowError:
                stamp = float("nan")
            if stamp - stamp != 0.0:
                rej.append(
                    Rejected(
                        RejectReason.BAD_TIMESTAMP, f"{_clip(topic)}: timestamp {_clip(obj.get(rule.timestamp_field))}"
                    )
                )
                return
        else:
            try:
                stamp = parse_timestamp(stamp, scale=rule.scale)
            except ValueError as exc:
                rej.append(Rejected(RejectReason.BAD_TIMESTAMP, f"{_clip(topic)}: {exc}"))
                return
        if stamp > horizon:
            rej.append(
                Rejected(
                    RejectReason.FUTURE_TIMESTAMP, f"{_clip(topic)}: {stamp:.3f} is {stamp - received_at:.0f} s ahead"
                )
            )
            return
        out.append(_new_tuple(Reading, (stream, name, stamp, value)))

    def _multi(
        self, obj: dict, rule: _Rule, stream: str, received_at: float, horizon: float, topic: str, out: list, rej: list
    ) -> None:
        """One `json_multi` object: every numeric key except the timestamp is a channel."""
        ts_field = rule.timestamp_field
        if rule.prepare is not None:
            obj = rule.prepare(obj)
        stamp = obj.get(ts_field)
        if stamp is None:
            stamp = received_at
        else:
            try:
                stamp = parse_timestamp(stamp, scale=rule.scale)
            except ValueError as exc:
                rej.append(Rejected(RejectReason.BAD_TIMESTAMP, f"{_clip(topic)}: {exc}"))
                return
            if stamp > horizon:
                rej.append(
                    Rejected(
                        RejectReason.FUTURE_TIMESTAMP,
                        f"{_clip(topic)}: {stamp:.3f} is {stamp - received_at:.0f} s ahead",
                    )
                )
                return
        n_before = len(out) + len(rej)
        for key, value in obj.items():
            if key == ts_field:
                continue
            tv = type(value)
            if tv is float:
                if value - value != 0.0:
                    rej.append(
                        Rejected(RejectReason.NON_FINITE, f"{_clip(topic)}: channel {_clip(key)} value {value!r}")
                    )
                    continue
            elif tv is int:
                try:
                    value = float(value)
                except OverflowError:
                    rej.append(
                        Rejected(RejectReason.NON_FINITE, f"{_clip(topic)}: channel {_clip(key)} overflows a float")
                    )
                    continue
            elif tv is bool:
                rej.append(
                    Rejected(
                        RejectReason.MALFORMED, f"{_clip(topic)}: channel {_clip(key)} value {value!r} is not a number"
                    )
                )
                continue
            else:
                continue  # strings, nulls, nested values: metadata
            out.append(_new_tuple(Reading, (stream, key, stamp, value)))
        if len(out) + len(rej) == n_before:
            rej.append(Rejected(RejectReason.MISSING_VALUE, f"{_clip(topic)}: no numeric channel in {_clip(obj)}"))


# --------------------------------------------------------------------------- helpers


_NUMBER_TYPES = frozenset((float, int))
_FLOAT_TYPES = frozenset((float,))


def _block(doc: list, rule: _Rule, stream: str, channel: str, horizon: float) -> ReadingBlock | None:
    """The columnar fast path of a JSON array: every element exactly a JSON object with
    the value and timestamp fields (and no channel field), finite numbers, timestamps in
    epoch seconds no later than `horizon`, ints exactly representable. Then the readings
    are exactly those `_array` would produce; anything else returns None and the caller
    takes the per-element path (which judges and counts each element)."""
    # orjson gives dict, list, str, int, float, bool or None: indexing any but a dict
    # with a str key raises TypeError, so past this every element is an object
    try:  # KeyError: a field is missing
        values = list(map(itemgetter(rule.value_field), doc))
        stamps = list(map(itemgetter(rule.timestamp_field), doc))
    except (KeyError, TypeError):
        return None
    n = len(doc)
    if sum(map(len, doc)) != 2 * n and any(rule.channel_field in e for e in doc):
        return None  # an element names its own channel
    kinds = list(map(type, stamps + values))  # one pass over both columns
    value_types: frozenset[type] | set[type]
    stamp_types: frozenset[type] | set[type]
    if kinds.count(float) == 2 * n:  # the common payload: every field a float
        value_types = stamp_types = _FLOAT_TYPES
    else:
        value_types, stamp_types = set(kinds[n:]), set(kinds[:n])
        if not (value_types <= _NUMBER_TYPES and stamp_types <= _NUMBER_TYPES):
            return None  # bool, null, string, nested: the per-element path judges them
    try:
        total = sum(values) + sum(stamps)  # finite only if every number is (and no overflow)
    except OverflowError:
        return None
    if total - total != 0.0:
        return None  # NaN, an infinity or a huge int: per element
    if max(stamps) > min(horizon, MS_THRESHOLD):
        return None  # milliseconds or future: per element
    if int in stamp_types and min(stamps) <= -_EXACT:
        return None
    if int in value_types and any(type(x) is int and not -_EXACT < x < _EXACT for x in values):
        return None  # the per-element path converts big ints itself
    columns = np.array((stamps, values), dtype=np.float64)
    return ReadingBlock(stream, channel, columns[0], columns[1])


def _frame_block(doc: list, rule: _Rule, stream: str, horizon: float) -> FrameBlock | None:
    """The columnar fast path of a JSON array of json_multi rows: every element an object
    with the same keys in the same order, the timestamp field among them, every other
    key a channel with a finite number (no metadata), timestamps in epoch seconds no
    later than `horizon`. Then the readings are exactly those `_array` would produce
    (row by row, channels in key order); anything else returns None."""
    keys = tuple(doc[0])
    ts_field = rule.timestamp_field
    if len(keys) < 2 or ts_field not in keys:
        return None
    if not all(type(e) is dict and tuple(e) == keys for e in doc):
        return None  # differing keys (or not objects): per element
    flat = [v for e in doc for v in e.values()]
    types = set(map(type, flat))
    if not types <= _NUMBER_TYPES:
        return None  # metadata, bools, nulls: per element
    try:
        total = sum(flat)
    except OverflowError:
        return None
    if total - total != 0.0:
        return None  # NaN, an infinity or a huge int
    if int in types and any(type(x) is int and not -_EXACT < x < _EXACT for x in flat):
        return None
    table = np.array(flat, dtype=np.float64).reshape(len(doc), len(keys))
    at = keys.index(ts_field)
    stamps = table[:, at]
    if not stamps.max() <= min(horizon, MS_THRESHOLD):
        return None  # milliseconds or future: per element
    channels = keys[:at] + keys[at + 1 :]
    values = np.delete(table, at, axis=1) if at != len(keys) - 1 else table[:, :at]
    return FrameBlock(stream, channels, np.ascontiguousarray(stamps), np.ascontiguousarray(values))


def _prepare(flat: bool, sequence_field: str | None, obj: dict) -> dict:
    """A json_multi object as its channels see it: flattened, and without the sequence number."""
    if flat:
        obj = flatten(obj)
    if sequence_field is not None and sequence_field in obj:
        obj = {k: v for k, v in obj.items() if k != sequence_field}
    return obj


def _looks_like_line_protocol(payload: bytes) -> bool:
    """Cheap shape check for auto: ``name[,tags] key=value ...`` (the parser decides)."""
    head = payload.lstrip()[:1]
    return head.isalpha() and b"=" in payload and b" " in payload.strip()


def _as_bytes(payload: Any) -> bytes:
    if isinstance(payload, (bytearray, memoryview)):
        return bytes(payload)
    if isinstance(payload, str):
        try:
            return payload.encode("utf-8")
        except UnicodeEncodeError:
            raise _Reject(RejectReason.MALFORMED, "payload is not encodable as UTF-8") from None
    raise _Reject(RejectReason.MALFORMED, f"payload must be bytes, got {type(payload).__name__}")


def _parse_number(payload: bytes, topic: str) -> float:
    try:
        value = float(payload)
    except ValueError:
        raise _Reject(RejectReason.MALFORMED, f"{_clip(topic)}: not a number: {_clip(payload)}") from None
    if value - value != 0.0:
        raise _Reject(RejectReason.NON_FINITE, f"{_clip(topic)}: value {value!r}")
    return value


def _parse_json(payload: bytes, topic: str) -> Any:
    if _fast_loads is not None:
        try:
            return _fast_loads(payload)
        except _FastDecodeError:
            pass  # the stdlib also reads NaN/Infinity tokens and integers beyond 64 bits
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise _Reject(RejectReason.MALFORMED, f"{_clip(topic)}: payload is not UTF-8") from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _Reject(RejectReason.MALFORMED, f"{_clip(topic)}: not valid JSON ({_clip(str(exc), 60)})") from None


def _internal_detail(exc: BaseException) -> str:
    try:
        text = f"{type(exc).__name__}: {exc}"
        return text if len(text) <= 200 else text[:197] + "..."
    except Exception:
        return type(exc).__name__
