"""Typed, validated configuration from YAML.

Every section is a dataclass that checks itself; a mistake raises `ConfigError` naming
the dotted key, what was wrong and what is allowed. Values can be overridden from the
environment as ``MONITOR_<SECTION>__<KEY>`` (nested keys joined by ``__``, values parsed
as YAML scalars), ``${VAR}`` in a string is replaced by the environment variable VAR, and
any ``<key>_file`` sibling reads a secret from a file (systemd ``LoadCredential``).

Secrets (`SECRET_FIELDS`, fields marked ``metadata={"secret": True}``) are always strings,
exactly as written, whatever the route: a YAML plain scalar (``password: 20250101``, read
as its text, not as an int), an environment override (never YAML-parsed), ``${VAR}`` or a
``*_file``. No `ConfigError` ever shows a secret's value: a secret field's own errors do
not quote it, and `load_config` strips every secret value it read from any message (a
``${VAR}`` holding the password used in another key, for instance).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import yaml

from monitor.core.config_base import ConfigError as ConfigError  # re-exported: its historic home
from monitor.core.config_base import secret_str as _secret_str
from monitor.core.integration_config import AlertmanagerConfig, AvailabilityConfig, HomeAssistantConfig

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

EXIT_CONFIG = 78  # EX_CONFIG from sysexits.h


def _positive(key: str, value: float, *, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(key, f"must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


ALIGNMENTS = ("bucket", "nearest", "interpolate")
CONTEXT_FEATURES = ("time_of_day", "day_of_week")
ADAPTER_MIN_WINDOWS_FLOOR = 20  # = calibrate.MIN_ERRORS: the fewest errors a threshold is fitted on

# --------------------------------------------------------------------------- sections


@dataclass
class TLSConfig:
    enabled: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure_skip_verify: bool = False  # must be set explicitly; never a fallback

    def __post_init__(self) -> None:
        if bool(self.cert_file) != bool(self.key_file):
            raise ConfigError("mqtt.tls.cert_file", "cert_file and key_file must be given together")


@dataclass
class TopicRule:
    """Maps topics matching `template` to readings.

    `template` uses ``{name}`` placeholders for one topic level each, and optionally a
    trailing ``{name...}`` (the whole last level) for one or more levels (MQTT ``#``; the
    captured value keeps its ``/``). MQTT wildcards themselves are not allowed. `stream`
    and `channel` are formats over those names. With formats ``json_multi``, ``influx``
    and ``telegraf_json`` `channel` names come from the payload (see monitor.io.codec).
    Field names may be dotted paths into nested JSON (``ENERGY.Power``).
    """

    template: str = "sensors/{stream}/{channel}"
    name: str | None = None  # what a group's `topics:` selector refers to
    format: Literal["number", "json", "json_multi", "json_array", "auto", "influx", "telegraf_json"] = "auto"
    stream: str = "{stream}"
    channel: str = "{channel}"
    value_field: str = "value"
    timestamp_field: str = "ts"
    channel_field: str = "channel"
    timestamp_unit: Literal["auto", "s", "ms", "us", "ns"] = "auto"  # of epoch numbers; auto: by magnitude
    nested: Literal["ignore", "flatten"] = "ignore"  # json_multi: nested objects' numbers as "a.b" channels
    sequence_field: str | None = None  # a per-stream message counter: gaps are counted (monitor.io.sequence)
    qos: int = 1

    def __post_init__(self) -> None:
        levels = self.template.split("/")
        if "#" in self.template or "+" in self.template:
            raise ConfigError("topics[].template", f"use {{name}} placeholders, not MQTT wildcards: {self.template!r}")
        if "...}" in "/".join(levels[:-1]) or ("...}" in levels[-1] and not re.fullmatch(r"{\w+\.\.\.}", levels[-1])):
            raise ConfigError(
                "topics[].template",
                f"a multi-level {{name...}} must be the whole last level, got {self.template!r}",
            )
        names = re.findall(r"{(\w+)(?:\.\.\.)?}", self.template)
        checks = [("stream", self.stream)]
        if self.format not in ("json_multi", "influx", "telegraf_json"):  # channel names from the payload
            checks.append(("channel", self.channel))
        for label, fmt in checks:
            for ref in re.findall(r"{(\w+)}", fmt):
                if ref not in names:
                    raise ConfigError(
                        f"topics[].{label}", f"{{{ref}}} is not a placeholder of template {self.template!r}"
                    )
        if self.timestamp_unit not in ("auto", "s", "ms", "us", "ns"):
            raise ConfigError(
                "topics[].timestamp_unit",
                f"unknown unit {self.timestamp_unit!r}: use s, ms, us or ns (or auto: by magnitude)",
            )
        for label, path in (
            ("value_field", self.value_field),
            ("timestamp_field", self.timestamp_field),
            ("channel_field", self.channel_field),
            ("sequence_field", "seq" if self.sequence_field is None else self.sequence_field),
        ):
            if not path or "" in path.split("."):
                raise ConfigError(f"topics[].{label}", f"a key or a dotted path such as 'ENERGY.Power', got {path!r}")
        if self.qos not in (0, 1):
            raise ConfigError("topics[].qos", f"must be 0 or 1, got {self.qos!r}")


ROLE_SUFFIXES = {"daemon": "", "record": "-record", "replay": "-replay", "retrain": "-retrain"}
"""The client id suffix of each role that connects with the config's mqtt section."""


@dataclass
class MQTTConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "monitor"
    username: str | None = None
    password: str | None = field(default=None, repr=False, metadata={"secret": True})  # never logged
    protocol: Literal["5", "3.1.1"] = "5"
    clean_start: bool = False
    session_expiry_seconds: int = 3600
    keepalive_seconds: int = 30
    reconnect_min_seconds: float = 0.5
    reconnect_max_seconds: float = 30.0
    max_payload_bytes: int = 1_048_576
    # The hand-off between paho's thread and the scorer is bounded three ways (whichever
    # is reached first): messages, readings and payload bytes. The readings and bytes
    # bounds are what bound memory (one batched message can carry hundreds of readings);
    # the defaults keep a daemon under overload well inside 512 MB (bench/overload.py).
    queue_size: int = 100_000
    queue_readings: int = 200_000
    queue_bytes: int = 64 * 1024 * 1024
    # What a full hand-off does (docs/operations.md, "Overload"): "drop" acks the message
    # and counts its readings as drops_total{reason="queue_full"}; "backpressure" holds it
    # unacked and lets the broker hold the rest (MQTT 5 Receive Maximum = receive_maximum
    # unacked messages in flight; needs protocol "5"; QoS 0 messages are still dropped).
    overload: Literal["drop", "backpressure"] = "drop"
    receive_maximum: int = 1000
    # The fast path for incoming PUBLISH packets (monitor/io/mqtt.py, decision 0001):
    # "auto" uses it with a verified paho, "off" always plain paho. Any unexpected
    # exception in it switches that client to plain paho for good (counted).
    fast_path: Literal["auto", "off"] = "auto"
    tls: TLSConfig = field(default_factory=TLSConfig)

    def for_role(self, role: str) -> MQTTConfig:
        """This config with the client id of `role` (`ROLE_SUFFIXES`): every role has its
        own id, so `monitor record` run with the daemon's config does not take over (and
        ack) the daemon's persistent session."""
        if role not in ROLE_SUFFIXES:
            raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLE_SUFFIXES)}")
        return dataclasses.replace(self, client_id=self.client_id + ROLE_SUFFIXES[role])

    def __post_init__(self) -> None:
        self.password = _secret_str("mqtt.password", self.password)
        if not 0 < self.port < 65536:
            raise ConfigError("mqtt.port", f"must be 1..65535, got {self.port}")
        _positive("mqtt.keepalive_seconds", self.keepalive_seconds)
        _positive("mqtt.session_expiry_seconds", self.session_expiry_seconds, allow_zero=True)
        _positive("mqtt.max_payload_bytes", self.max_payload_bytes)
        _positive("mqtt.queue_size", self.queue_size)
        _positive("mqtt.queue_readings", self.queue_readings)
        _positive("mqtt.queue_bytes", self.queue_bytes)
        if not 1 <= self.receive_maximum <= 65535:
            raise ConfigError("mqtt.receive_maximum", f"must be 1..65535 (an MQTT 5 limit), got {self.receive_maximum}")
        if self.overload == "backpressure" and self.protocol != "5":
            raise ConfigError(
                "mqtt.overload",
                'backpressure needs MQTT 5 (the broker honours our Receive Maximum); set mqtt.protocol: "5" '
                "or mqtt.overload: drop",
            )
        if self.reconnect_max_seconds < self.reconnect_min_seconds:
            raise ConfigError("mqtt.reconnect_max_seconds", "must be >= mqtt.reconnect_min_seconds")


_NATS_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
MAX_PARTITIONS = 1024


def format_partitions(parts: Sequence[int]) -> str:
    """``0-3,6`` for (0, 1, 2, 3, 6): the inverse of `parse_partitions`."""
    out: list[str] = []
    ordered = sorted(set(parts))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(out)


def parse_partitions(spec: str, total: int, key: str = "nats.owned") -> tuple[int, ...]:
    """Partition numbers of a spec such as ``"0-3"`` or ``"0-3,6"`` (all of them when empty)."""
    if not spec.strip():
        return tuple(range(total))
    found: set[int] = set()
    for part in spec.split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise ConfigError(key, f'expected partition numbers like "0-3" or "0-3,6", got {spec!r}') from None
        if not 0 <= first <= last < total:
            raise ConfigError(key, f"partitions {part.strip()!r} are outside 0..{total - 1} (nats.partitions: {total})")
        found.update(range(first, last + 1))
    return tuple(sorted(found))


def shard_partitions(shard: str, total: int) -> tuple[int, ...]:
    """Worker i of n (``"i/n"``) owns the i-th of n contiguous, near-equal partition ranges."""
    i_text, sep, n_text = shard.partition("/")
    try:
        i, n = int(i_text), int(n_text)
    except ValueError:
        raise ConfigError("--shard", f'expected "i/n" (worker i of n, from 0), got {shard!r}') from None
    if not sep or not 0 <= i < n:
        raise ConfigError("--shard", f'expected "i/n" with 0 <= i < n, got {shard!r}')
    if n > total:
        raise ConfigError("--shard", f"{n} workers for {total} partitions would leave some idle; use n <= {total}")
    return tuple(range(i * total // n, (i + 1) * total // n))


@dataclass
class NATSConfig:
    """The NATS JetStream source (``source: nats``): partitions keyed by stream, durable consumers.

    The server maps each device subject onto ``<subject_prefix>.<partition>.<subject>``
    with ``partition(N, stream tokens)`` (deploy/nats/); the stream `stream` captures
    ``<subject_prefix>.>``; a worker owns partitions `owned` (all when empty; the CLI's
    ``--partitions`` / ``--shard`` override it) through one durable consumer each.
    """

    servers: list[str] = field(default_factory=lambda: ["nats://127.0.0.1:4222"])
    user: str | None = None
    password: str | None = field(default=None, repr=False, metadata={"secret": True})  # never logged
    name: str = "monitor"  # client name, shown by the server's monitoring
    stream: str = "MONITOR"
    subject_prefix: str = "part"
    partitions: int = 8
    owned: str = ""
    durable_prefix: str = "monitor"
    create_stream: bool = True  # add the stream when it is missing (file storage, limits retention)
    max_age_seconds: float = 86_400.0  # retention of a stream the worker creates: warm-up needs the last window
    replicas: int = 1  # of a stream the worker creates: 3 on a 3-node cluster (one node may fail)
    fetch_batch: int = 256
    ack_wait_seconds: float = 30.0
    max_ack_pending: int = 20_000
    warmup_seconds: float | None = None  # default: a window plus the alarm's memory, from the model
    # changing N: the subject prefix of the previous partitioning; a consumer without an ack
    # floor warms its streams from that prefix's last window (docs/scaling.md, "Changing N")
    warmup_from: str = ""
    # alerts also into this JetStream stream (on the alerts subject), de-duplicated by the server
    # on Nats-Msg-Id = <alert_id>:<state> within `alerts_dedupe_seconds`: exactly once there
    alerts_stream: str = ""
    alerts_dedupe_seconds: float = 600.0
    stats_seconds: float = 5.0  # a partition idle this long has its pending count (metrics) read from the server
    connect_timeout_seconds: float = 5.0
    reconnect_seconds: float = 1.0

    def __post_init__(self) -> None:
        self.password = _secret_str("nats.password", self.password)
        if not self.servers:
            raise ConfigError("nats.servers", 'at least one server URL is needed, e.g. ["nats://127.0.0.1:4222"]')
        for url in self.servers:
            if not isinstance(url, str) or "://" not in url:
                raise ConfigError("nats.servers", f'expected URLs like "nats://host:4222", got {url!r}')
        if self.password and not self.user:
            raise ConfigError("nats.user", "a password was given without a user")
        for key in ("stream", "subject_prefix", "durable_prefix", "warmup_from", "alerts_stream"):
            if key in ("warmup_from", "alerts_stream") and not getattr(self, key):
                continue  # off
            if not _NATS_TOKEN.fullmatch(getattr(self, key)):
                raise ConfigError(
                    f"nats.{key}", f"must be letters, digits, _ or - (one subject token), got {getattr(self, key)!r}"
                )
        if not 1 <= self.partitions <= MAX_PARTITIONS:
            raise ConfigError("nats.partitions", f"must be 1..{MAX_PARTITIONS}, got {self.partitions}")
        self.owned = str(self.owned)
        parse_partitions(self.owned, self.partitions)
        _positive("nats.max_age_seconds", self.max_age_seconds)
        if not 1 <= self.replicas <= 5:
            raise ConfigError("nats.replicas", f"must be 1..5 (JetStream's limit), got {self.replicas}")
        _positive("nats.fetch_batch", self.fetch_batch)
        _positive("nats.ack_wait_seconds", self.ack_wait_seconds)
        _positive("nats.max_ack_pending", self.max_ack_pending)
        if self.max_ack_pending < self.fetch_batch:
            raise ConfigError("nats.max_ack_pending", f"must be >= nats.fetch_batch ({self.fetch_batch})")
        if self.warmup_seconds is not None:
            _positive("nats.warmup_seconds", self.warmup_seconds, allow_zero=True)
        if self.warmup_from == self.subject_prefix:
            raise ConfigError("nats.warmup_from", "must name the previous subject prefix, not nats.subject_prefix")
        if self.alerts_stream == self.stream:
            raise ConfigError("nats.alerts_stream", "must differ from nats.stream (the readings' stream)")
        _positive("nats.alerts_dedupe_seconds", self.alerts_dedupe_seconds)
        _positive("nats.stats_seconds", self.stats_seconds)
        _positive("nats.connect_timeout_seconds", self.connect_timeout_seconds)
        _positive("nats.reconnect_seconds", self.reconnect_seconds)

    def owned_partitions(self) -> tuple[int, ...]:
        return parse_partitions(self.owned, self.partitions)


@dataclass
class StreamConfig:
    """How readings become frames: channel order, grid period, staleness."""

    channels: list[str] = field(default_factory=list)  # empty: taken from data / model
    # float seconds, or "auto": the median step of the data, refined to the mean of the
    # regular steps and snapped to a round value (monitor.core.stream.period); training
    # refuses "auto" on timestamps too irregular to have a step and says what to set.
    period_seconds: Any = "auto"
    max_gap_seconds: float | None = None  # default: 5 periods
    lateness_seconds: float | None = None  # default: one period (covers +-50 % jitter of timestamp-ordered feeds)
    # How readings become frames (monitor/core/stream/assembler.py, interpolate.py):
    # "bucket" floor(t / period) and sample-and-hold (the original rule), "nearest" the
    # nearest grid time (no reading lost as `late` to timestamp jitter below +-50 %),
    # "interpolate" linear interpolation between the readings around each grid time (no
    # reading is ever `late`). Training records it in the bundle; the daemon aligns live
    # readings the way the bundle says.
    alignment: Literal["bucket", "nearest", "interpolate"] = "bucket"
    max_streams: int = 10_000
    max_future_seconds: float = 300.0  # timestamps further ahead of receive time are rejected
    # A sensor clock stepped back (monitor/core/stream/clock_step.py): this many refused
    # readings in a row, each more than clock_step_seconds older than the stream's newest,
    # re-sync the stream instead of leaving it blind. None: max(60 s, 10 periods); 0: off.
    clock_step_seconds: float | None = None
    clock_step_readings: int = 5

    def __post_init__(self) -> None:
        if self.period_seconds != "auto":
            if isinstance(self.period_seconds, bool) or not isinstance(self.period_seconds, (int, float)):
                raise ConfigError(
                    "stream.period_seconds", f'must be a number of seconds or "auto", got {self.period_seconds!r}'
                )
            _positive("stream.period_seconds", float(self.period_seconds))
            self.period_seconds = float(self.period_seconds)
        if self.max_gap_seconds is not None:
            _positive("stream.max_gap_seconds", self.max_gap_seconds)
        if self.lateness_seconds is not None:
            _positive("stream.lateness_seconds", self.lateness_seconds, allow_zero=True)
        _positive("stream.max_streams", self.max_streams)
        if self.clock_step_seconds is not None:
            _positive("stream.clock_step_seconds", self.clock_step_seconds, allow_zero=True)
        if isinstance(self.clock_step_readings, bool) or not isinstance(self.clock_step_readings, int):
            raise ConfigError("stream.clock_step_readings", f"must be a whole number, got {self.clock_step_readings!r}")
        _positive("stream.clock_step_readings", self.clock_step_readings)
        if self.alignment not in ALIGNMENTS:
            raise ConfigError(
                "stream.alignment", f"must be one of {', '.join(repr(a) for a in ALIGNMENTS)}; got {self.alignment!r}"
            )
        if len(set(self.channels)) != len(self.channels):
            raise ConfigError("stream.channels", "channel names must be unique")


@dataclass
class FilterConfig:
    """A per-channel pre-filter applied to frames before windowing."""

    type: Literal["median", "ema", "hampel"] = "median"
    size: int = 5  # median / hampel window, in frames
    alpha: float = 0.3  # ema smoothing factor
    n_sigmas: float = 3.0  # hampel

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ConfigError("filters[].size", f"must be >= 1, got {self.size}")
        if not 0 < self.alpha <= 1:
            raise ConfigError("filters[].alpha", f"must be in (0, 1], got {self.alpha}")
        _positive("filters[].n_sigmas", self.n_sigmas)


@dataclass
class ModelConfig:
    architecture: Literal["dense", "conv1d"] = "dense"
    window_size: int = 30
    stride: int = 1
    hidden: list[int] = field(default_factory=lambda: [64, 32])
    code_size: int = 8
    conv_channels: list[int] = field(default_factory=lambda: [16, 32])
    kernel_size: int = 5
    noise_std: float = 0.1  # std of Gaussian noise added to standardized inputs
    mask_prob: float = 0.05  # probability of zeroing an input element
    sparsity: float = 0.0  # L1 penalty weight on the code
    epochs: int = 60
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 8
    validation_fraction: float = 0.2
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    # torch's intra-op threads for training and scoring: a count, or "auto" (min(2, cores)).
    # 1 by default: on a busy 2-core host torch's own default (one per core) made training
    # several times slower (bench/README.md, "Torch threads"). The top-level value is the
    # daemon's; training uses the trained group's. `--threads` overrides it.
    threads: Any = 1
    min_std: float = 1e-3  # floor for the scaler's standard deviation (raw units)
    # Per-channel floors for the scaler's standard deviation, raw units of that channel
    # ({channel: floor}); they override `min_std` upwards where larger. Use for slowly
    # drifting channels (temperatures) whose spread in a short training run is far below
    # their normal long-run variation, so that ordinary drift is not scored as an anomaly.
    # Names not among the model's channels are ignored.
    channel_min_std: dict[str, float] = field(default_factory=dict)
    # How a window's per-channel errors become one score: "mean" over channels, or
    # "channel_max": each channel's error divided by its median over the training windows,
    # then the largest (a fault visible in one channel is not diluted by the others).
    score_reduction: Literal["mean", "channel_max"] = "mean"
    # Long-context inputs: each name adds a sin/cos pair of the frame's timestamp (UTC) as
    # two extra input channels, "time_of_day" (period one day) and "day_of_week" (one
    # week, phase 0 at Monday 00:00 UTC), so that a window of a few hours knows where it
    # sits in the daily / weekly rhythm. They are reconstructed but never scored.
    # "auto": decided at training from the span of the training data, a feature only when
    # it covers at least two of its periods (time_of_day: 2 days, day_of_week: 2 weeks),
    # so that the rhythm can be learnt rather than memorised; the bundle records the result.
    context: Any = field(default_factory=list)
    # Per-stream adapters (decision 0010): with "auto", training gives every stream that has
    # at least `adapter_min_windows` windows of its own to fit a threshold on (its held-out
    # normal windows; all of its windows with calibration.source "all") its own scaler
    # (mean/std per channel) and its own offline threshold; the other streams, and streams
    # never seen in training, use the group's. "off": the group's for every stream.
    adapters: Literal["auto", "off"] = "auto"
    adapter_min_windows: int = 200
    # Operating states (decision 0020): a seeded k-means on the training windows' codes,
    # stored in the bundle. "auto": the k of 2..6 with the best silhouette; a number 1..12:
    # that k; "off": none (alerts carry no state, no monitor_operating_state series).
    states: Any = "auto"
    # Bounds on the training set (decision 0021): at most this many training windows, and
    # calibration windows, spread evenly over the data (all streams together, each
    # stream its share); the hold-out stays the newest part. 0: no bound.
    max_train_windows: int = 200_000
    max_calibration_windows: int = 100_000

    def __post_init__(self) -> None:
        for key in ("max_train_windows", "max_calibration_windows"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"model.{key}", f"must be a whole number >= 0 (0: no bound), got {value!r}")
        if self.window_size < 2:
            raise ConfigError("model.window_size", f"must be >= 2, got {self.window_size}")
        if self.stride < 1:
            raise ConfigError("model.stride", f"must be >= 1, got {self.stride}")
        if self.code_size < 1:
            raise ConfigError("model.code_size", f"must be >= 1, got {self.code_size}")
        for key in ("hidden", "conv_channels"):
            if any(h < 1 for h in getattr(self, key)):
                raise ConfigError(f"model.{key}", "layer sizes must be >= 1")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ConfigError("model.kernel_size", f"must be an odd number >= 1, got {self.kernel_size}")
        _positive("model.noise_std", self.noise_std, allow_zero=True)
        if not 0 <= self.mask_prob < 1:
            raise ConfigError("model.mask_prob", f"must be in [0, 1), got {self.mask_prob}")
        _positive("model.sparsity", self.sparsity, allow_zero=True)
        _positive("model.epochs", self.epochs)
        _positive("model.batch_size", self.batch_size)
        _positive("model.learning_rate", self.learning_rate)
        _positive("model.min_std", self.min_std)
        if not isinstance(self.channel_min_std, dict):
            raise ConfigError(
                "model.channel_min_std", f"expected a mapping of channel: floor, got {self.channel_min_std!r}"
            )
        for name, floor in self.channel_min_std.items():
            key = f"model.channel_min_std.{name}"
            if not isinstance(name, str):
                raise ConfigError(key, "channel names must be strings")
            if isinstance(floor, bool) or not isinstance(floor, (int, float)):
                raise ConfigError(key, f"expected a number, got {floor!r}")
            _positive(key, float(floor))
        self.channel_min_std = {k: float(v) for k, v in self.channel_min_std.items()}
        self._check_context()
        if not 0 < self.validation_fraction < 1:
            raise ConfigError("model.validation_fraction", f"must be in (0, 1), got {self.validation_fraction}")
        if self.adapter_min_windows < ADAPTER_MIN_WINDOWS_FLOOR:
            raise ConfigError(
                "model.adapter_min_windows",
                f"must be >= {ADAPTER_MIN_WINDOWS_FLOOR} (a threshold needs that many errors of normal windows), "
                f"got {self.adapter_min_windows}",
            )
        if self.states not in ("auto", "off") and (
            isinstance(self.states, bool) or not isinstance(self.states, int) or not 1 <= self.states <= 12
        ):
            raise ConfigError("model.states", f'must be "auto", "off" or a whole number 1..12, got {self.states!r}')
        if self.threads != "auto" and (
            isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1
        ):
            raise ConfigError("model.threads", f'must be a whole number >= 1 or "auto", got {self.threads!r}')

    def _check_context(self) -> None:
        if self.context == "auto":
            return
        if not isinstance(self.context, list):
            raise ConfigError(
                "model.context", f'expected "auto" or a list of {", ".join(CONTEXT_FEATURES)}; got {self.context!r}'
            )
        for i, name in enumerate(self.context):
            if name not in CONTEXT_FEATURES:
                raise ConfigError(
                    f"model.context[{i}]",
                    f"must be one of {', '.join(repr(c) for c in CONTEXT_FEATURES)}; got {name!r}",
                )
        if len(set(self.context)) != len(self.context):
            raise ConfigError("model.context", f"each feature at most once, got {self.context!r}")


@dataclass
class OnlineCalibrationConfig:
    """Per-stream online calibration (`monitor.core.calibrate`): each stream's raw error
    becomes a score from its own recent error distribution; the offline threshold is the
    prior until the stream has `min_windows` of history."""

    enabled: bool = True
    # Tail probability of a normal window at score 1.0 under the stream's own (log-normal)
    # error distribution: 1.0 sits `z` standard deviations above its mean log error.
    target_rate: float = 3e-4
    history_windows: int = 2000  # decay horizon of the long-term error distribution
    chunk_windows: int = 64  # statistics move on every `chunk_windows` windows of a stream
    min_windows: int = 256  # windows of history before the online score replaces the prior
    # Until then: "blend" scores ``(1 - w) raw / prior + w * online`` with w = n / min_windows
    # for n learnt windows (from the first learnt chunk on), so a stream shorter than the
    # warm-up still moves towards its own distribution; "prior": raw / prior until online.
    warmup: Literal["blend", "prior"] = "blend"
    min_sigma: float = 0.05  # floor of the spread of log errors (a near-constant error)
    regime: bool = True  # detect sustained level/variance changes and re-baseline
    regime_z: float = 1.5  # a chunk whose mean log error is this many sigma off is disturbed
    regime_var_ratio: float = 4.0  # ... or whose variance is this many times larger or smaller
    # Sustained disturbance for this long (data time) -> one regime_change event and the
    # stream re-baselines on the disturbed stretch. None: `rebaseline_after_periods` periods.
    rebaseline_after_seconds: float | None = None
    rebaseline_after_periods: float = 200.0
    # At a regime change whose inputs moved (mean or spread per channel), re-estimate the
    # stream's scaler from the disturbed stretch and keep its error distribution (the
    # errors come back to their old level), instead of re-baselining the errors only.
    rebaseline_scaler: bool = True

    def __post_init__(self) -> None:
        k = "calibration.online"
        if not 0 < self.target_rate < 0.5:
            raise ConfigError(f"{k}.target_rate", f"must be in (0, 0.5), got {self.target_rate}")
        if not 1 <= self.chunk_windows <= 4096:
            raise ConfigError(f"{k}.chunk_windows", f"must be 1..4096, got {self.chunk_windows}")
        if self.history_windows < self.chunk_windows:
            raise ConfigError(
                f"{k}.history_windows",
                f"must be >= chunk_windows ({self.chunk_windows}), got {self.history_windows}",
            )
        if self.min_windows < self.chunk_windows:
            raise ConfigError(
                f"{k}.min_windows", f"must be >= chunk_windows ({self.chunk_windows}), got {self.min_windows}"
            )
        if self.warmup not in ("blend", "prior"):
            raise ConfigError(f"{k}.warmup", f'must be "blend" or "prior", got {self.warmup!r}')
        _positive(f"{k}.min_sigma", self.min_sigma)
        _positive(f"{k}.regime_z", self.regime_z)
        if self.regime_var_ratio <= 1:
            raise ConfigError(f"{k}.regime_var_ratio", f"must be > 1, got {self.regime_var_ratio}")
        if self.rebaseline_after_seconds is not None:
            _positive(f"{k}.rebaseline_after_seconds", self.rebaseline_after_seconds)
        _positive(f"{k}.rebaseline_after_periods", self.rebaseline_after_periods)


@dataclass
class CalibrationConfig:
    """How raw reconstruction errors become threshold units."""

    method: Literal["quantile", "pot"] = "quantile"
    quantile: float = 0.995
    target_false_alarm_rate: float = 1e-3  # pot: probability a normal window exceeds the threshold
    pot_initial_quantile: float = 0.95
    factor: float = 1.0  # safety margin multiplied onto the fitted threshold
    holdout_fraction: float = 0.2  # newest share of normal windows kept for calibration
    # Which windows' errors the threshold is fitted on: "holdout" (only the newest
    # `holdout_fraction`, never seen in training) or "all" (the training windows too, more
    # errors for the quantile/POT fit when training data are short). The holdout is kept
    # out of scaling and training either way.
    source: Literal["holdout", "all"] = "holdout"
    online: OnlineCalibrationConfig = field(default_factory=OnlineCalibrationConfig)

    def __post_init__(self) -> None:
        if not 0 < self.quantile < 1:
            raise ConfigError("calibration.quantile", f"must be in (0, 1), got {self.quantile}")
        if not 0 < self.target_false_alarm_rate < 1:
            raise ConfigError("calibration.target_false_alarm_rate", "must be in (0, 1)")
        if not 0 < self.pot_initial_quantile < 1:
            raise ConfigError("calibration.pot_initial_quantile", "must be in (0, 1)")
        _positive("calibration.factor", self.factor)
        if not 0 < self.holdout_fraction < 1:
            raise ConfigError("calibration.holdout_fraction", f"must be in (0, 1), got {self.holdout_fraction}")


@dataclass
class AlarmConfig:
    """k of the last n scores >= 1.0 fire; resolve_m consecutive scores < resolve_below resolve."""

    k: int = 3
    n: int = 5
    resolve_m: int = 10
    resolve_below: float = 1.0
    cooldown_seconds: float = 0.0
    # Where a resolved episode ends: "last_hot" (the last window at or above resolve_below,
    # so the resolve_m quiet windows that confirm the end are not part of it) or
    # "resolve" (the window that resolved it, the behaviour before).
    end_at: Literal["last_hot", "resolve"] = "last_hot"
    # Alert episodes per stream per week that normal operation may raise; the stream's
    # threshold rises while it is over budget (monitor.core.calibrate). None: no budget.
    budget: float | None = None

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ConfigError("alarm.n", f"must be >= 1, got {self.n}")
        if not 1 <= self.k <= self.n:
            raise ConfigError("alarm.k", f"must be between 1 and alarm.n ({self.n}), got {self.k}")
        if self.resolve_m < 1:
            raise ConfigError("alarm.resolve_m", f"must be >= 1, got {self.resolve_m}")
        _positive("alarm.resolve_below", self.resolve_below)
        _positive("alarm.cooldown_seconds", self.cooldown_seconds, allow_zero=True)
        if self.budget is not None:
            _positive("alarm.budget", self.budget)


@dataclass
class DataConfig:
    """How CSV files are read by `train` and `backtest`."""

    timestamp_column: str | None = None  # default: first column
    timestamp_format: Literal["auto", "epoch_s", "epoch_ms", "iso"] = "auto"
    separator: str | None = None  # default: detected from the header (, ; tab |)
    label_column: str | None = "anomaly"
    ignore_columns: list[str] = field(default_factory=list)
    stream: str = "default"  # stream name for rows of a CSV file
    utc_offset_hours: float = 0.0  # for naive ISO timestamps


@dataclass
class SensorsConfig:
    """Sensor-health checks (`monitor.core.sensor_health`): stale, stuck, out of range, rate."""

    enabled: bool = True
    stale_seconds: float | None = None  # no reading this long: stale (default 10 x period_seconds; 0: off)
    stuck_window: int = 10  # samples whose standard deviation is compared to the learned noise floor
    noise_floor_fraction: float = 0.25  # noise floor = this x the smallest window std seen in training
    identical_samples: int = 60  # this many identical values in a row: stuck (0: off)
    learn_ranges: bool = True  # out of range of the training range widened by range_margin
    range_margin: float = 1.0  # fraction of the training span added on both sides
    learn_rates: bool = False  # rate faults above the training maximum x (1 + rate_margin)
    rate_margin: float = 1.0
    ranges: dict[str, list[float]] = field(default_factory=dict)  # channel -> [low, high], raw units
    max_rate: dict[str, float] = field(default_factory=dict)  # channel -> max |change| per second
    clear_samples: int = 5  # good samples in a row that end a fault episode
    # mask a channel in scoring for out-of-range / rate faults against LEARNED limits too (by
    # default only configured `ranges` / `max_rate` and stuck channels are masked; a learned
    # out-of-range is alerted as a sensor fault and still scored: it may be the process fault)
    mask_learned: bool = False

    def __post_init__(self) -> None:
        if self.stale_seconds is not None:
            _positive("sensors.stale_seconds", self.stale_seconds, allow_zero=True)
        if isinstance(self.stuck_window, bool) or not isinstance(self.stuck_window, int) or self.stuck_window < 2:
            raise ConfigError("sensors.stuck_window", f"must be an integer >= 2, got {self.stuck_window!r}")
        _positive("sensors.noise_floor_fraction", self.noise_floor_fraction, allow_zero=True)
        if self.identical_samples < 0 or self.identical_samples == 1:
            raise ConfigError("sensors.identical_samples", f"must be 0 (off) or >= 2, got {self.identical_samples}")
        _positive("sensors.range_margin", self.range_margin, allow_zero=True)
        _positive("sensors.rate_margin", self.rate_margin, allow_zero=True)
        if self.clear_samples < 1:
            raise ConfigError("sensors.clear_samples", f"must be >= 1, got {self.clear_samples}")
        if not isinstance(self.ranges, dict):
            raise ConfigError("sensors.ranges", f"expected a mapping of channel -> [low, high], got {self.ranges!r}")
        for ch, pair in self.ranges.items():
            ok = (
                isinstance(pair, list)
                and len(pair) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in pair)
            )
            if not ok or not pair[0] < pair[1]:
                raise ConfigError(f"sensors.ranges.{ch}", f"must be [low, high] with low < high, got {pair!r}")
            self.ranges[ch] = [float(pair[0]), float(pair[1])]
        if not isinstance(self.max_rate, dict):
            raise ConfigError("sensors.max_rate", f"expected a mapping of channel -> number, got {self.max_rate!r}")
        for ch, v in self.max_rate.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ConfigError(f"sensors.max_rate.{ch}", f"must be a number > 0 (units per second), got {v!r}")
            self.max_rate[ch] = float(v)


@dataclass
class AlertsConfig:
    topic: str = "monitor/alerts/{stream}"
    qos: int = 1
    retain: bool = False
    top_channels: int = 3
    scores_topic: str | None = None  # e.g. "monitor/scores/{stream}"
    denoised_topic: str | None = None
    # each stream's latest window code (and operating state), at most once per
    # `latent_every_seconds` per stream, e.g. "monitor/latent/{stream}" (decision 0020)
    latent_topic: str | None = None
    latent_every_seconds: float = 10.0
    alertmanager_url: str | None = None
    log: bool = True
    state_save_seconds: float = 60.0  # alarm and calibrator state written this often (and at shutdown)
    # scores, denoised frames, latent codes and stream state give way to alerts: once this
    # many of them wait unwritten in the MQTT client, further ones are shed and counted
    # (monitor/io/yielding.py, decision 0024)
    integrator_max_unsent: int = 256

    def __post_init__(self) -> None:
        if not self.state_save_seconds > 0:
            raise ConfigError("alerts.state_save_seconds", f"must be > 0, got {self.state_save_seconds!r}")
        if isinstance(self.integrator_max_unsent, bool) or not isinstance(self.integrator_max_unsent, int):
            raise ConfigError(
                "alerts.integrator_max_unsent", f"must be a whole number, got {self.integrator_max_unsent!r}"
            )
        _positive("alerts.integrator_max_unsent", self.integrator_max_unsent)
        _positive("alerts.latent_every_seconds", self.latent_every_seconds, allow_zero=True)
        if self.latent_topic is not None and (not isinstance(self.latent_topic, str) or not self.latent_topic):
            raise ConfigError(
                "alerts.latent_topic", f"must be a topic such as monitor/latent/{{stream}}, got {self.latent_topic!r}"
            )


@dataclass
class MetricsConfig:
    address: str = "127.0.0.1"
    port: int = 9108

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536:
            raise ConfigError("metrics.port", f"must be 0..65535, got {self.port}")


@dataclass
class ModelsConfig:
    dir: str = "models"
    poll_seconds: float = 5.0


@dataclass
class ScoringConfig:
    batch_size: int = 256
    max_batch_delay_seconds: float = 0.005
    threads: int = 1

    def __post_init__(self) -> None:
        _positive("scoring.batch_size", self.batch_size)
        _positive("scoring.max_batch_delay_seconds", self.max_batch_delay_seconds, allow_zero=True)
        _positive("scoring.threads", self.threads)


@dataclass
class RecordConfig:
    enabled: bool = False
    dir: str = "recordings"
    rotate_bytes: int = 64 * 1024 * 1024
    rotate_seconds: float = 3600.0
    # retention, 0: keep everything. Oldest recordings first, never the open one; the
    # alert log and labels are kept (monitor/io/retention.py)
    max_age_hours: float = 0.0
    max_bytes: int = 0

    def __post_init__(self) -> None:
        _positive("record.max_age_hours", self.max_age_hours, allow_zero=True)
        _positive("record.max_bytes", self.max_bytes, allow_zero=True)


@dataclass
class RetrainConfig:
    """The detection-power checks of `monitor retrain` (docs/decisions/0012-retrain-gates.md).

    The candidate must detect at least `canary_floor` of the canary faults injected into
    the newest held-out data, and no fewer than the serving model's share minus
    `canary_margin`; its threshold must stay within `max_threshold_factor` of the serving
    one's (either way) unless `allow_threshold_jump`.
    """

    # read only recordings of the newest max_age_hours (0: all); files last written before
    # that are not even opened. --max-age-hours overrides.
    max_age_hours: float = 0.0
    # a window longer than this is read thinned, by whole files (the newest half in full,
    # one older file in k, every file of a past episode): time and memory follow this, not
    # the window (monitor.app.readplan; 20 streams at 1 Hz: ~2.7 GiB). 0: read it all
    max_read_hours: float = 168.0
    canaries_per_kind: int = 2  # x 6 kinds
    canary_seed: int = 0
    canary_margin: float = 0.15
    canary_floor: float = 0.5
    max_threshold_factor: float = 5.0
    allow_threshold_jump: bool = False
    # shadow scoring (docs/decisions/0021-shadow-and-drift.md): > 0: a candidate that passes
    # the gate is registered as `shadow`, scored live beside the serving model for this long
    # (fractions allowed), then promoted by the daemon only within these budgets
    shadow_hours: float = 0.0
    shadow_alert_margin: int = 1  # would-alert episodes <= the serving model's + this
    shadow_max_alert_episodes: int = 5  # and <= this, per group, over the shadow period
    shadow_max_quantile_ratio: float = 3.0  # p99 score within this factor of the serving one's
    shadow_min_windows: int = 100

    def __post_init__(self) -> None:
        _positive("retrain.max_age_hours", self.max_age_hours, allow_zero=True)
        _positive("retrain.max_read_hours", self.max_read_hours, allow_zero=True)
        _positive("retrain.shadow_hours", self.shadow_hours, allow_zero=True)
        _positive("retrain.shadow_alert_margin", self.shadow_alert_margin, allow_zero=True)
        _positive("retrain.shadow_max_alert_episodes", self.shadow_max_alert_episodes, allow_zero=True)
        _positive("retrain.shadow_min_windows", self.shadow_min_windows)
        if not self.shadow_max_quantile_ratio >= 1:
            raise ConfigError(
                "retrain.shadow_max_quantile_ratio", f"must be >= 1, got {self.shadow_max_quantile_ratio!r}"
            )
        _positive("retrain.canaries_per_kind", self.canaries_per_kind)
        _positive("retrain.canary_margin", self.canary_margin, allow_zero=True)
        if not 0 <= self.canary_floor <= 1:
            raise ConfigError("retrain.canary_floor", f"must be in [0, 1], got {self.canary_floor!r}")
        if not self.max_threshold_factor >= 1:
            raise ConfigError("retrain.max_threshold_factor", f"must be >= 1, got {self.max_threshold_factor!r}")


GROUP_SECTIONS = ("stream", "filters", "model", "calibration", "alarm", "sensors")
"""The sections a group may override; each inherits the top-level section (deep-merged)."""
DEFAULT_GROUP = "default"
_GROUP_NAME = re.compile(r"[a-z0-9_-]+")


@dataclass
class GroupConfig:
    """A model group: which streams it serves and how (its own sections, inherited).

    `streams` are stream-key glob patterns (``site*/pump*``, `fnmatch` rules, case
    sensitive); `topics` names topic rules, matching the stream keys that rule's `stream`
    format produces (each ``{placeholder}`` a wildcard). Both given: a stream must match
    both. Neither: a catch-all (only one, and only as the last group).
    """

    name: str = DEFAULT_GROUP
    streams: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    stream: StreamConfig = field(default_factory=StreamConfig)
    filters: list[FilterConfig] = field(default_factory=list)
    model: ModelConfig = field(default_factory=ModelConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    alarm: AlarmConfig = field(default_factory=AlarmConfig)
    sensors: SensorsConfig = field(default_factory=SensorsConfig)  # the top-level `sensors:`, deep-merged

    @property
    def catch_all(self) -> bool:
        return not self.streams and not self.topics


@dataclass
class Config:
    # Where readings come from: "mqtt" (one process, paho) or "nats" (JetStream partitions)
    source: Literal["mqtt", "nats"] = "mqtt"
    mqtt: MQTTConfig = field(default_factory=MQTTConfig)
    nats: NATSConfig = field(default_factory=NATSConfig)
    topics: list[TopicRule] = field(default_factory=lambda: [TopicRule()])
    stream: StreamConfig = field(default_factory=StreamConfig)
    filters: list[FilterConfig] = field(default_factory=list)
    model: ModelConfig = field(default_factory=ModelConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    alarm: AlarmConfig = field(default_factory=AlarmConfig)
    data: DataConfig = field(default_factory=DataConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    record: RecordConfig = field(default_factory=RecordConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    sensors: SensorsConfig = field(default_factory=SensorsConfig)
    availability: AvailabilityConfig = field(default_factory=AvailabilityConfig)
    homeassistant: HomeAssistantConfig = field(default_factory=HomeAssistantConfig)
    alertmanager: AlertmanagerConfig = field(default_factory=AlertmanagerConfig)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Model groups; empty: one catch-all group "default" of the top-level sections whose
    # bundles live in models.dir itself (what a config without `groups:` always meant).
    groups: list[GroupConfig] = field(default_factory=list)

    def fleet(self) -> list[GroupConfig]:
        """The groups to serve, in routing order (the implicit "default" one without `groups:`)."""
        if self.groups:
            return self.groups
        return [
            GroupConfig(
                DEFAULT_GROUP,
                [],
                [],
                self.stream,
                list(self.filters),
                self.model,
                self.calibration,
                self.alarm,
                self.sensors,
            )
        ]

    def group(self, name: str) -> GroupConfig:
        for g in self.fleet():
            if g.name == name:
                return g
        raise ConfigError("groups", f"no group named {name!r}; groups: {', '.join(g.name for g in self.fleet())}")

    def group_models_dir(self, name: str) -> Path:
        """Where group `name`'s bundles live: models.dir itself without `groups:`, else models.dir/<name>."""
        return Path(self.models.dir) if not self.groups else Path(self.models.dir) / name

    def for_group(self, name: str) -> Config:
        """This config with the top-level sections replaced by group `name`'s (train, backtest)."""
        g = self.group(name)
        return dataclasses.replace(
            self,
            stream=g.stream,
            filters=list(g.filters),
            model=g.model,
            calibration=g.calibration,
            alarm=g.alarm,
            sensors=g.sensors,
        )

    def stream_patterns(self, group: GroupConfig) -> tuple[list[str], list[str]]:
        """(stream globs, globs of the stream keys of the group's topic rules)."""
        by_name = {r.name: r for r in self.topics if r.name}
        topic_globs = [re.sub(r"{\w+}", "*", by_name[t].stream) for t in group.topics if t in by_name]
        return list(group.streams), topic_globs

    def to_dict(self) -> dict[str, Any]:
        """Plain data with secrets masked (safe to log)."""
        data = dataclasses.asdict(self)
        for dotted in SECRET_FIELDS:
            *parents, leaf = dotted.split(".")
            node = data
            for part in parents:
                node = node[part]
            if node.get(leaf) is not None:
                node[leaf] = "***"
        return data


def _secret_fields(cls: type, prefix: str = "") -> list[str]:
    """Dotted keys of the fields marked secret, through nested sections (not lists)."""
    found = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if f.metadata.get("secret"):
            found.append(key)
        tp = hints[f.name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            found += _secret_fields(tp, key + ".")
    return found


SECRET_FIELDS: tuple[str, ...] = tuple(_secret_fields(Config))
"""Every secret of the config, by dotted key (``mqtt.password``)."""
_SECRET_LEAVES = frozenset(k.rsplit(".", 1)[-1] for k in SECRET_FIELDS)


# --------------------------------------------------------------------------- loading

_ENV_REF = re.compile(r"\$\{(\w+)\}")
_Section = TypeVar("_Section", bound="DataclassInstance")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`, converting where it is lossless."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, key)
            except ConfigError as exc:
                errors.append(exc)
        raise ConfigError(key, f"expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and str(value) in allowed:
            return str(value)
        if isinstance(value, bool) and ("on" if value else "off") in allowed:
            return "on" if value else "off"  # YAML 1.1 reads a bare on / off as true / false
        if value not in allowed:
            raise ConfigError(key, f"must be one of {', '.join(repr(a) for a in allowed)}; got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(key, f"expected a list, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_coerce(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):  # a section class, never an instance
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a mapping, got {value!r}")
        return _build(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string, got {value!r}")
        return value
    return value


def _build(cls: type[_Section], data: dict[str, Any], prefix: str) -> _Section:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for raw_key, value in data.items():
        key = f"{prefix}.{raw_key}" if prefix else str(raw_key)
        if raw_key not in names:
            allowed = ", ".join(sorted(names))
            raise ConfigError(key, f"unknown key; allowed here: {allowed}")
        if key in SECRET_FIELDS:
            kwargs[raw_key] = _secret_str(key, value)  # never through _coerce: its errors quote values
        else:
            kwargs[raw_key] = _coerce(hints[raw_key], value, key)
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        # Sections validate with a canonical path ("topics[].qos"); give the real index.
        canonical = re.sub(r"\[\d+\]", "[]", prefix)
        if canonical != prefix and exc.key.startswith(canonical):
            raise ConfigError(prefix + exc.key[len(canonical) :], exc.message) from None
        raise


def _expand_env(value: Any, key: str, environ: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _expand_env(v, f"{key}.{k}" if key else k, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, f"{key}[{i}]", environ) for i, v in enumerate(value)]
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            if m.group(1) not in environ:
                raise ConfigError(key, f"environment variable {m.group(1)} is not set")
            return environ[m.group(1)]

        return _ENV_REF.sub(repl, value)
    return value


def _read_secret_files(data: Any, key: str, base: Path) -> Any:
    """Replace ``x_file: path`` by ``x: <file contents>`` (trailing newline stripped)."""
    if isinstance(data, list):
        return [_read_secret_files(v, f"{key}[{i}]", base) for i, v in enumerate(data)]
    if not isinstance(data, dict):
        return data
    out = {}
    for k, v in data.items():
        sub = f"{key}.{k}" if key else str(k)
        if isinstance(k, str) and k.endswith("_file") and k[:-5] in _FILE_KEYS and v is not None:
            path = Path(os.path.expandvars(str(v)))
            if not path.is_absolute():
                path = base / path
            try:
                out[k[:-5]] = path.read_text().rstrip("\n")
            except OSError as exc:
                raise ConfigError(sub, f"cannot read secret file {path}: {exc.strerror}") from None
        else:
            out[k] = _read_secret_files(v, sub, base)
    return out


def _apply_env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    for name, raw in environ.items():
        if not name.startswith("MONITOR_") or "__" not in name:
            continue
        path = [p.lower() for p in name[len("MONITOR_") :].split("__")]
        if ".".join(path) in SECRET_FIELDS:
            value: Any = raw  # a secret is its exact text: never YAML-parsed (20250101 is no int)
        else:
            try:
                value = yaml.safe_load(raw) if raw != "" else ""
            except yaml.YAMLError:
                value = raw
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[path[-1]] = value
    return data


_FILE_KEYS = _SECRET_LEAVES | {"username"}  # keys that may come from a `<key>_file`


class _SecretTextLoader(yaml.SafeLoader):
    """Safe YAML, except that a secret's plain scalar is kept as its text."""


def _construct_mapping(loader: _SecretTextLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    for key_node, value_node in node.value:
        if (
            isinstance(key_node, yaml.ScalarNode)
            and key_node.value in _SECRET_LEAVES
            and isinstance(value_node, yaml.ScalarNode)
            and value_node.tag != "tag:yaml.org,2002:null"
        ):
            value_node.tag = "tag:yaml.org,2002:str"  # `password: 0123` is "0123", not 83
    return loader.construct_mapping(node, deep)


_SecretTextLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _secret_values(data: Any, environ: Mapping[str, str]) -> list[str]:
    """The secret values a config read (environment overrides and the loaded data)."""
    found = []
    for dotted in SECRET_FIELDS:
        env_name = "MONITOR_" + dotted.upper().replace(".", "__")
        if environ.get(env_name):
            found.append(environ[env_name])
        node = data
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None and not isinstance(node, (dict, list)):
            found.append(str(node))
    return [s for s in found if s]


def _redacted(exc: ConfigError, secrets: list[str]) -> ConfigError:
    message = exc.message
    for secret in sorted(secrets, key=len, reverse=True):
        message = message.replace(secret, "***")
    return exc if message == exc.message else ConfigError(exc.key, message)


def load_config(path: str | Path | None, environ: Mapping[str, str] | None = None) -> Config:
    """Read, expand and validate a config file (None: defaults plus environment).

    A `ConfigError` never carries a secret value (see the module docstring)."""
    environ = dict(os.environ if environ is None else environ)
    secrets: list[str] = [v for k, v in environ.items() if k.startswith("MONITOR_") and v and _is_secret_env(k)]
    try:
        return _load(path, environ, secrets)
    except ConfigError as exc:
        raise _redacted(exc, secrets) from None


def _is_secret_env(name: str) -> bool:
    return ".".join(p.lower() for p in name[len("MONITOR_") :].split("__")) in SECRET_FIELDS


def _load(path: str | Path | None, environ: dict[str, str], secrets: list[str]) -> Config:
    data: Any = {}
    base = Path.cwd()
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError("", f"cannot read config file {path}: {exc.strerror}") from None
        try:
            data = yaml.load(text, Loader=_SecretTextLoader) or {}  # a SafeLoader
        except yaml.YAMLError as exc:
            # where and what, never the quoted snippet: that line may hold a password
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or type(exc).__name__
            raise ConfigError("", f"{path} is not valid YAML{where}: {problem}") from None
        base = path.parent
    if not isinstance(data, dict):
        raise ConfigError("", "the config file must be a mapping of sections")
    data = _apply_env_overrides(data, environ)
    data = _expand_env(data, "", environ)
    data = _read_secret_files(data, "", base)
    secrets += _secret_values(data, environ)
    groups_raw = data.pop("groups", None)
    cfg = _build(Config, data, "")
    if groups_raw is not None and groups_raw != []:  # `groups: []` (a dumped config): no groups
        cfg.groups = _build_groups(groups_raw, data, cfg)
    _check_integrations(cfg)
    for g in cfg.fleet():
        if g.alarm.budget is not None and not g.calibration.online.enabled:
            where = f"groups[{cfg.groups.index(g)}]." if cfg.groups else ""
            raise ConfigError(
                f"{where}alarm.budget",
                "needs calibration.online.enabled: true (the budget moves the stream's online threshold)",
            )
    return cfg


def _check_integrations(cfg: Config) -> None:
    """Cross-section rules of availability / Home Assistant / Alertmanager."""
    old = cfg.alerts.alertmanager_url  # the older single-URL key: one more URL of the sink
    if old and old not in cfg.alertmanager.urls:
        cfg.alertmanager.urls.append(old)
        AlertmanagerConfig.__post_init__(cfg.alertmanager)  # the same URL checks
    ha = cfg.homeassistant
    if ha.enabled and not cfg.availability.enabled:
        raise ConfigError("homeassistant.enabled", "needs availability.enabled: true (the entities' state topics)")
    if ha.enabled and 0 < ha.expire_after_seconds <= cfg.availability.state_interval_seconds:
        raise ConfigError(
            "homeassistant.expire_after_seconds",
            f"must exceed availability.state_interval_seconds ({cfg.availability.state_interval_seconds:g}): "
            "the daemon republishes each stream's state that often, HA must not expire it sooner",
        )


def _deep_merge(base: Any, override: Any) -> Any:
    """`override` over `base`: mappings merge key by key, anything else (lists too) replaces."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for k, v in override.items():
            out[k] = _deep_merge(base.get(k), v) if k in base else v
        return out
    return override


def _build_groups(raw: Any, top: dict[str, Any], cfg: Config) -> list[GroupConfig]:
    if not isinstance(raw, list):
        raise ConfigError("groups", f"expected a list of groups, got {raw!r}")
    hints = typing.get_type_hints(GroupConfig)
    allowed = {f.name for f in dataclasses.fields(GroupConfig)}
    rule_names = {r.name for r in cfg.topics if r.name}
    groups: list[GroupConfig] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        key = f"groups[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(key, f"expected a mapping, got {item!r}")
        for k in item:
            if k not in allowed:
                raise ConfigError(f"{key}.{k}", f"unknown key; allowed here: {', '.join(sorted(allowed))}")
        name = item.get("name")
        if not isinstance(name, str) or not _GROUP_NAME.fullmatch(name):
            raise ConfigError(f"{key}.name", f"must be a name of a-z, 0-9, '_' and '-', got {name!r}")
        if name in seen:
            raise ConfigError(f"{key}.name", f"{name!r} is already the name of groups[{seen[name]}]")
        seen[name] = i
        kwargs: dict[str, Any] = {"name": name}
        for sel in ("streams", "topics"):
            value = _coerce(hints[sel], item.get(sel, []), f"{key}.{sel}")
            for j, pattern in enumerate(value):
                if not pattern:
                    raise ConfigError(f"{key}.{sel}[{j}]", "must not be empty")
            kwargs[sel] = value
        for j, t in enumerate(kwargs["topics"]):
            if t not in rule_names:
                known = ", ".join(sorted(n for n in rule_names if n)) or "none (give topics[].name)"
                raise ConfigError(f"{key}.topics[{j}]", f"no topic rule named {t!r}; named rules: {known}")
        for section in GROUP_SECTIONS:
            if section not in item and section not in top:
                continue  # the dataclass default, as at the top level
            if section in item and section in top:
                merged = _deep_merge(top[section], item[section])
            else:
                merged = item[section] if section in item else top[section]
            try:
                kwargs[section] = _coerce(hints[section], merged, f"{key}.{section}")
            except ConfigError as exc:
                if exc.key.startswith(f"{section}.") or exc.key.startswith(f"{section}["):
                    raise ConfigError(f"{key}.{exc.key}", exc.message) from None
                raise
        groups.append(GroupConfig(**kwargs))
    catch_alls = [i for i, g in enumerate(groups) if g.catch_all]
    if len(catch_alls) > 1:
        raise ConfigError(
            f"groups[{catch_alls[1]}].streams",
            f"empty selector (no streams or topics): only one catch-all group is allowed; "
            f"groups[{catch_alls[0]}] is one",
        )
    if catch_alls and catch_alls[0] != len(groups) - 1:
        raise ConfigError(
            f"groups[{catch_alls[0]}].streams",
            "empty selector: a catch-all group must be the last one (groups are matched in order)",
        )
    return groups
