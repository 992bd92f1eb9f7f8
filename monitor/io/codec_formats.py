"""The codec's field conventions beyond flat JSON: timestamp units, dotted paths,
flattened nested objects, InfluxDB line protocol and Telegraf's JSON.

Everything here runs only for rules that ask for it (a dotted field, an explicit
`timestamp_unit`, ``nested: flatten``, format ``influx`` / ``telegraf_json``) or for
payloads that the plain paths cannot read; a rule that configures none of it never
calls into this module (docs/decisions/0016-codec-conventions.md).

InfluxDB line protocol (what Telegraf's ``influx`` data format writes, one metric per
line; https://docs.influxdata.com/influxdb/v2/reference/syntax/line-protocol/)::

    measurement[,tag=value...] field=value[,field=value...] [timestamp]

Backslash escapes commas, spaces and ``=`` in names; string field values are
double-quoted. Field values: floats (``1.5``, ``1e3``), integers (``2i``), unsigned
(``2u``), booleans (``t``, ``true``, ``F`` ...) and strings. Numbers become readings;
strings and booleans are typed metadata and ignored. Lines starting with ``#`` are
comments.

Telegraf's ``json`` data format: ``{"fields": {...}, "name": "cpu", "tags": {...},
"timestamp": 1700000000}``, or with batching ``{"metrics": [ ...those... ]}``
(https://github.com/influxdata/telegraf/tree/master/plugins/serializers/json).

Both become readings named by the rule's `channel` format over the names
``measurement``, ``field``, the metric's tags and the topic's placeholders; the default
``{channel}`` means ``{measurement}.{field}``.
"""

from __future__ import annotations

from typing import Any

from monitor.core.types import Reading, Rejected, RejectReason

__all__ = [
    "UNIT_SCALE",
    "auto_seconds",
    "decode_influx",
    "decode_telegraf",
    "flatten",
    "is_telegraf",
    "lift",
    "lookup",
]

MS_THRESHOLD = 1e11  # epoch numbers above this are milliseconds (1e11 s is year 5138)
US_THRESHOLD = 1e14  # ... above this microseconds (1e14 ms is year 5138 too)
NS_THRESHOLD = 1e17  # ... above this nanoseconds
UNIT_SCALE = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}  # units per second; "auto" is absent
_MISSING = object()
_new_tuple = tuple.__new__
_DETAIL_CHARS = 80


def _clip(value: Any, limit: int = _DETAIL_CHARS) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- timestamps


def auto_seconds(number: float) -> float:
    """Epoch seconds of an epoch number in s, ms, us or ns, told apart by magnitude.

    Each threshold is year 5138 in the smaller unit, so no plausible time is misread:
    above 1e17 ns, above 1e14 us, above 1e11 ms, else seconds. Raises OverflowError
    for an int too large for a float.
    """
    if number > MS_THRESHOLD:
        if number > NS_THRESHOLD:
            return number / 1e9
        if number > US_THRESHOLD:
            return number / 1e6
        return number / 1e3
    return float(number)


# --------------------------------------------------------------------------- dotted paths


def lookup(obj: dict, path: tuple[str, ...]) -> Any:
    """The value at a dotted path (already split), or `_MISSING`."""
    node: Any = obj
    for key in path:
        if type(node) is not dict:
            return _MISSING
        node = node.get(key, _MISSING)
        if node is _MISSING:
            return _MISSING
    return node


def lift(obj: dict, paths: tuple[tuple[str, tuple[str, ...]], ...]) -> dict:
    """`obj` with each dotted field's value copied to the top level under its dotted
    name, so the flat decoders read it as a plain key. A literal key of that name wins;
    a path that leads nowhere adds nothing (the field is then missing, as for a flat
    key). `obj` itself is not changed."""
    out = obj
    for name, path in paths:
        if name in obj:
            continue
        value = lookup(obj, path)
        if value is not _MISSING:
            if out is obj:
                out = dict(obj)
            out[name] = value
    return out


def flatten(obj: dict, prefix: str = "", depth: int = 0) -> dict:
    """Nested objects' keys joined with ``.``: ``{"ENERGY": {"Power": 45}}`` ->
    ``{"ENERGY.Power": 45}``; lists and scalars stay leaves. Past 32 levels the rest
    stays nested (ignored as metadata by json_multi)."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = prefix + key if type(key) is str else prefix + str(key)
        if type(value) is dict and depth < 32:
            out.update(flatten(value, name + ".", depth + 1))
        else:
            out[name] = value
    return out


# --------------------------------------------------------------------------- metrics


class MetricSink:
    """Turns decoded metrics (measurement, tags, fields, raw timestamp) into readings.

    `names` are the topic placeholders' values; `channel_format` the rule's `channel`.
    """

    __slots__ = (
        "channel_format",
        "horizon",
        "names",
        "out",
        "received_at",
        "rej",
        "scale",
        "stream",
        "topic",
    )

    def __init__(
        self,
        stream: str,
        names: dict[str, str],
        channel_format: str,
        scale: float | None,
        received_at: float,
        horizon: float,
        topic: str,
        out: list,
        rej: list,
    ):
        self.stream = stream
        self.names = names
        self.channel_format = channel_format
        self.scale = scale
        self.received_at = received_at
        self.horizon = horizon
        self.topic = topic
        self.out = out
        self.rej = rej

    def stamp(self, raw: Any, where: str) -> float | None:
        """Epoch seconds of a metric's timestamp, or None after counting a reject."""
        if raw is None:
            return self.received_at
        try:
            if type(raw) is str:
                raw = int(raw.strip()) if raw.strip().lstrip("-").isdigit() else float(raw)
            if type(raw) not in (int, float):
                raise ValueError
            seconds = auto_seconds(raw) if self.scale is None else raw / self.scale
        except (ValueError, OverflowError):
            self.rej.append(Rejected(RejectReason.BAD_TIMESTAMP, f"{where}: timestamp {_clip(raw)}"))
            return None
        if seconds - seconds != 0.0:
            self.rej.append(Rejected(RejectReason.BAD_TIMESTAMP, f"{where}: timestamp {_clip(raw)}"))
            return None
        if seconds > self.horizon:
            self.rej.append(
                Rejected(
                    RejectReason.FUTURE_TIMESTAMP, f"{where}: {seconds:.3f} is {seconds - self.received_at:.0f} s ahead"
                )
            )
            return None
        return seconds

    def metric(self, measurement: str, tags: dict[str, str], fields: dict[str, Any], raw_ts: Any, where: str) -> None:
        stamp = self.stamp(raw_ts, where)
        if stamp is None:
            return
        names = {**self.names, **tags, "measurement": measurement}
        default = self.channel_format == "{channel}" and "channel" not in tags
        for key, value in fields.items():
            tv = type(value)
            if tv is float:
                if value - value != 0.0:
                    self.rej.append(Rejected(RejectReason.NON_FINITE, f"{where}: field {_clip(key)} value {value!r}"))
                    continue
            elif tv is int:
                try:
                    value = float(value)
                except OverflowError:
                    self.rej.append(Rejected(RejectReason.NON_FINITE, f"{where}: field {_clip(key)} overflows a float"))
                    continue
            else:
                continue  # strings, booleans, nulls: metadata
            if default:
                channel = f"{measurement}.{key}"
            else:
                names["field"] = key
                try:
                    channel = self.channel_format.format_map(names)
                except (KeyError, IndexError, ValueError) as exc:
                    self.rej.append(
                        Rejected(
                            RejectReason.MISSING_VALUE,
                            f"{where}: channel {self.channel_format!r} needs {_clip(str(exc), 40)}, "
                            "not a tag of this metric",
                        )
                    )
                    continue
            self.out.append(_new_tuple(Reading, (self.stream, channel, stamp, value)))

    def done(self, n_before: int) -> None:
        """After a payload: one reject when it gave neither a reading nor a reject.

        A metric of strings and booleans only (Telegraf's ``system uptime_format``) is
        metadata beside the numeric metrics of its batch, not a fault by itself."""
        if len(self.out) + len(self.rej) == n_before:
            self.rej.append(
                Rejected(RejectReason.MISSING_VALUE, f"{_clip(self.topic)}: no numeric field in any metric")
            )


# --------------------------------------------------------------------------- Telegraf JSON


def is_telegraf(doc: dict) -> bool:
    """Whether a JSON object is Telegraf's json format (one metric or a batch)."""
    if "fields" in doc:
        return type(doc["fields"]) is dict and "name" in doc and "timestamp" in doc
    return len(doc) == 1 and type(doc.get("metrics")) is list


def decode_telegraf(doc: Any, sink: MetricSink) -> None:
    """One Telegraf JSON document: a metric object or ``{"metrics": [...]}``."""
    where = _clip(sink.topic)
    n_before = len(sink.out) + len(sink.rej)
    if type(doc) is dict and type(doc.get("metrics")) is list and "fields" not in doc:
        for i, metric in enumerate(doc["metrics"]):
            _telegraf_metric(metric, sink, f"{where}[{i}]")
    elif type(doc) is list:
        for i, metric in enumerate(doc):
            _telegraf_metric(metric, sink, f"{where}[{i}]")
    else:
        _telegraf_metric(doc, sink, where)
    sink.done(n_before)


def _telegraf_metric(metric: Any, sink: MetricSink, where: str) -> None:
    if type(metric) is not dict or type(metric.get("fields")) is not dict:
        sink.rej.append(
            Rejected(RejectReason.MALFORMED, f"{where}: expected a Telegraf metric {{fields, name, tags, timestamp}}")
        )
        return
    name = metric.get("name")
    if type(name) is not str or not name:
        sink.rej.append(Rejected(RejectReason.MALFORMED, f"{where}: metric name {_clip(name)} is not a name"))
        return
    tags = metric.get("tags")
    tags = {str(k): str(v) for k, v in tags.items()} if type(tags) is dict else {}
    sink.metric(name, tags, metric["fields"], metric.get("timestamp"), where)


# --------------------------------------------------------------------------- line protocol

_BOOLS = frozenset(("t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"))


class LineError(ValueError):
    """A line that is not line protocol."""


def decode_influx(payload: bytes, sink: MetricSink) -> None:
    """Every line of a line-protocol payload; a bad line is one counted reject."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        sink.rej.append(Rejected(RejectReason.MALFORMED, f"{_clip(sink.topic)}: payload is not UTF-8"))
        return
    where = _clip(sink.topic)
    n_before = len(sink.out) + len(sink.rej)
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line[0] == "#":
            continue
        try:
            measurement, tags, fields, raw_ts = parse_line(line)
        except LineError as exc:
            sink.rej.append(Rejected(RejectReason.MALFORMED, f"{where} line {n}: {exc}: {_clip(line, 60)}"))
            continue
        sink.metric(measurement, tags, fields, raw_ts, f"{where} line {n}")
    sink.done(n_before)


def parse_line(line: str) -> tuple[str, dict[str, str], dict[str, Any], int | None]:
    """(measurement, tags, fields, timestamp or None) of one line; raises LineError."""
    sections = _split(line, " ", quotes=True)
    sections = [s for s in sections if s]  # runs of spaces between sections
    if len(sections) not in (2, 3):
        raise LineError("expected 'measurement[,tags] fields [timestamp]'")
    head = _split(sections[0], ",", quotes=False)
    measurement = _unescape(head[0])
    if not measurement:
        raise LineError("empty measurement")
    tags: dict[str, str] = {}
    for item in head[1:]:
        key, value = _pair(item)
        tags[key] = _unescape(value)
    fields: dict[str, Any] = {}
    for item in _split(sections[1], ",", quotes=True):
        key, value = _pair(item)
        fields[key] = _field_value(value)
    raw_ts: int | None = None
    if len(sections) == 3:
        text = sections[2]
        if not (text.isdigit() or (text[:1] == "-" and text[1:].isdigit())):
            raise LineError(f"timestamp {text[:30]!r} is not an integer")
        raw_ts = int(text)
    return measurement, tags, fields, raw_ts


def _split(text: str, sep: str, quotes: bool) -> list[str]:
    """`text` split at unescaped `sep` (outside double quotes when `quotes`)."""
    if "\\" not in text and (not quotes or '"' not in text):
        return text.split(sep)
    parts: list[str] = []
    start = 0
    i = 0
    quoted = False
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if quotes and ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if quoted:
        raise LineError("unterminated string")
    parts.append(text[start:])
    return parts


def _pair(item: str) -> tuple[str, str]:
    at = _unescaped_index(item, "=")
    if at <= 0:
        raise LineError(f"expected key=value, got {item[:30]!r}")
    return _unescape(item[:at]), item[at + 1 :]


def _unescaped_index(text: str, ch: str) -> int:
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == ch:
            return i
        i += 1
    return -1


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    return text.replace("\\,", ",").replace("\\ ", " ").replace("\\=", "=").replace('\\"', '"').replace("\\\\", "\\")


def _field_value(text: str) -> Any:
    if not text:
        raise LineError("empty field value")
    if text[0] == '"':
        if len(text) < 2 or text[-1] != '"':
            raise LineError("unterminated string")
        return text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    last = text[-1]
    if last in "iu" and len(text) > 1:
        try:
            return int(text[:-1])
        except ValueError:
            raise LineError(f"bad integer {text[:30]!r}") from None
    if text in _BOOLS:
        return text[0] in "tT"
    try:
        return float(text)  # a non-finite one is counted non_finite by the sink
    except ValueError:
        raise LineError(f"bad field value {text[:30]!r}") from None
