"""Value types that cross module boundaries.

Times are float seconds since the Unix epoch (data time, from payloads or files) unless a
name says otherwise. Scores are in *threshold units*: 1.0 means "exactly at the
calibrated threshold", higher is more anomalous.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any, Final, NamedTuple, Protocol, TypeAlias, TypedDict, overload

import numpy as np
from numpy.typing import NDArray

FloatArray: TypeAlias = NDArray[np.float64]
"""A float64 array (times, raw values, frames)."""
Float32Array: TypeAlias = NDArray[np.float32]
"""A float32 array (standardized windows, what the model consumes and returns)."""
Floats: TypeAlias = NDArray[np.floating[Any]]
"""A float array of either width (scores: float32 from the model, float64 when empty)."""


class Reading(NamedTuple):
    """One value of one channel of one stream at one time."""

    stream: str
    channel: str
    timestamp: float
    value: float


class _Block(Sequence[Reading]):
    """Readings of one stream held as columns (`ReadingBlock`, `FrameBlock`)."""

    __slots__ = ()
    stream: str
    timestamps: FloatArray
    values: FloatArray

    def _names(self) -> tuple[str, str | tuple[str, ...]]:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _Block) and type(other) is type(self):
            return (
                self._names() == other._names()
                and np.array_equal(self.timestamps, other.timestamps)
                and np.array_equal(self.values, other.values)
            )
        if isinstance(other, (list, tuple)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # unhashable: its equality compares arrays


class ReadingBlock(_Block):
    """Consecutive readings of one channel of one stream (one batched message), as columns.

    What `Codec` (with ``columns=True``) makes of a JSON array of plain
    ``{"ts", "value"}`` objects: no per-reading object on the hot path. It is a sequence
    of `Reading`s for code that wants them one by one; the pipeline reads the columns.
    Timestamps are epoch seconds and values finite, both float64, in payload order.
    """

    __slots__ = ("channel", "stream", "timestamps", "values")

    def __init__(self, stream: str, channel: str, timestamps: FloatArray, values: FloatArray):
        self.stream = stream
        self.channel = channel
        self.timestamps = timestamps
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    def _names(self) -> tuple[str, str]:
        return (self.stream, self.channel)

    @overload
    def __getitem__(self, i: int) -> Reading: ...
    @overload
    def __getitem__(self, i: slice) -> list[Reading]: ...
    def __getitem__(self, i: int | slice) -> Reading | list[Reading]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return Reading(self.stream, self.channel, float(self.timestamps[i]), float(self.values[i]))

    def __iter__(self) -> Iterator[Reading]:
        stream, channel = self.stream, self.channel
        for t, v in zip(self.timestamps.tolist(), self.values.tolist(), strict=True):
            yield Reading(stream, channel, t, v)

    def __repr__(self) -> str:
        return f"ReadingBlock({self.stream!r}, {self.channel!r}, {len(self)} readings)"


class FrameBlock(_Block):
    """Rows of several channels of one stream (one batched json_multi message), as columns.

    What `Codec` (with ``columns=True``) makes of a JSON array of objects that all have
    the same keys, the timestamp field and numeric channels only. As a sequence it holds
    the readings row by row, each row's channels in payload order (what per-object
    decoding yields); the pipeline reads the columns.
    """

    __slots__ = ("channels", "stream", "timestamps", "values")

    def __init__(self, stream: str, channels: tuple[str, ...], timestamps: FloatArray, values: FloatArray):
        self.stream = stream
        self.channels = channels
        self.timestamps = timestamps  # (rows,) float64 epoch seconds
        self.values = values  # (rows, channels) float64, finite

    def __len__(self) -> int:
        return self.values.size

    def _names(self) -> tuple[str, tuple[str, ...]]:
        return (self.stream, self.channels)

    @overload
    def __getitem__(self, i: int) -> Reading: ...
    @overload
    def __getitem__(self, i: slice) -> list[Reading]: ...
    def __getitem__(self, i: int | slice) -> Reading | list[Reading]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        row, col = divmod(i, len(self.channels))
        return Reading(self.stream, self.channels[col], float(self.timestamps[row]), float(self.values[row, col]))

    def __iter__(self) -> Iterator[Reading]:
        return iter(self.rows(0))

    def rows(self, start: int) -> list[Reading]:
        """The readings of rows `start`.. in order."""
        stream, channels = self.stream, self.channels
        return [
            Reading(stream, c, t, v)
            for t, row in zip(self.timestamps[start:].tolist(), self.values[start:].tolist(), strict=True)
            for c, v in zip(channels, row, strict=True)
        ]

    def __repr__(self) -> str:
        return f"FrameBlock({self.stream!r}, {self.channels!r}, {len(self.timestamps)} rows)"


BatchItem: TypeAlias = "Reading | ReadingBlock | FrameBlock"
"""What decoding yields and `Pipeline.push_batch` takes, in arrival order."""


class RawMessage(NamedTuple):
    """An MQTT message as received (or as recorded), before decoding."""

    received_at: float  # wall-clock epoch seconds at receipt
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


class Rejected(NamedTuple):
    """Input that could not become a reading; `reason` is a `RejectReason` (a metric label)."""

    reason: str
    detail: str


# Reasons are plain strings, not an Enum: they are metric label values and counter keys
# as they are (prometheus-client str()s a label value, which an Enum member would spoil).


class RejectReason:
    """Why input could not become a reading (`Rejected.reason`, the codec's verdicts).

    The label values of ``monitor_readings_rejected_total``.
    """

    OVERSIZED: Final = "oversized"  # payload over mqtt.max_payload_bytes
    MALFORMED: Final = "malformed"  # not UTF-8 / JSON / a number / the expected shape
    NON_FINITE: Final = "non_finite"  # NaN, inf, or a number that overflows a float
    BAD_TIMESTAMP: Final = "bad_timestamp"  # a timestamp that cannot be read
    FUTURE_TIMESTAMP: Final = "future_timestamp"  # beyond stream.max_future_seconds ahead
    UNMATCHED_TOPIC: Final = "unmatched_topic"  # no topic rule matches
    MISSING_VALUE: Final = "missing_value"  # no value / channel field, or an empty payload
    INTERNAL: Final = "internal"  # a bug in the codec, caught so that the network loop survives


class DropReason:
    """Why a decoded reading was dropped before scoring (``monitor_drops_total`` label values)."""

    QUEUE_FULL: Final = "queue_full"  # the ingest hand-off queue was full
    STREAM_CAP: Final = "stream_cap"  # stream.max_streams streams already have state
    UNKNOWN_CHANNEL: Final = "unknown_channel"  # not a channel of the serving model
    DUPLICATE: Final = "duplicate"  # same timestamp as the channel's previous reading
    OUT_OF_ORDER: Final = "out_of_order"  # older than the channel's previous reading
    LATE: Final = "late"  # for a frame already emitted
    STALE_FRAMES: Final = "stale_frames"  # frames (not readings) left unscored by a gap
    NO_MODEL: Final = "no_model"  # no model loaded yet (for the stream's group)
    NO_GROUP: Final = "no_group"  # the stream matches no group of the config
    INTERNAL_ERROR: Final = "internal_error"  # a scoring batch failed
    SHUTDOWN: Final = "shutdown"  # received while stopping (auto acks: not redelivered)


def _members(namespace: type) -> tuple[str, ...]:
    return tuple(v for k, v in vars(namespace).items() if k.isupper())


#: Every `RejectReason` and every `DropReason`: the bounded label values bound up front.
REJECT_REASONS: Final[tuple[str, ...]] = _members(RejectReason)
DROP_REASONS: Final[tuple[str, ...]] = _members(DropReason)


@dataclass(frozen=True)
class Frame:
    """All channels of one stream aligned onto one grid time (`period_seconds` apart)."""

    stream: str
    timestamp: float
    values: FloatArray  # shape (n_channels,), float64, raw units
    stale: bool = False  # some channel had no value within max_gap_seconds


@dataclass(frozen=True)
class Score:
    """The result of scoring one window (the window ends at `timestamp`)."""

    stream: str
    timestamp: float
    score: float  # error / threshold
    raw_error: float
    channel_scores: Floats  # (n_channels,) per-channel share of the score, threshold units
    observed: FloatArray  # (n_channels,) last step of the window, raw units
    reconstructed: Floats  # (n_channels,) model's reconstruction of that step, raw units


def runs_of(streams: Sequence[str]) -> list[tuple[str, int, int]]:
    """(stream, start, stop) for each stretch of equal consecutive names."""
    runs: list[tuple[str, int, int]] = []
    start = 0
    for stream, group in groupby(streams):
        stop = start + sum(1 for _ in group)
        runs.append((stream, start, stop))
        start = stop
    return runs


class StateAssigner(Protocol):
    """What a batch needs of a bundle's operating states (`monitor.core.model.latent.States`)."""

    def assign(self, codes: NDArray[Any]) -> tuple[NDArray[np.intp], NDArray[np.float32]]: ...


class ScoreBatch(Sequence[Score]):
    """Scores of one scored batch, stored by column; indexing builds a `Score`.

    Rows come in `runs`: ``(stream, start, stop)`` for each stretch of consecutive rows
    of one stream, in order (a stream's rows are always in time order; rows of
    different streams may interleave). The hot path reads the runs and the columns and
    never builds a per-window object; `streams` (one name per row) is built on first use.
    Sinks, listeners and backtests can treat the batch as a list of `Score`.
    """

    __slots__ = (
        "_novelty",
        "_states",
        "_streams",
        "channel_scores",
        "codes",
        "latent_states",
        "observed",
        "raw",
        "reconstructed",
        "runs",
        "score",
        "times",
    )

    def __init__(
        self,
        streams: list[str] | None,
        times: Sequence[float] | FloatArray,
        score: Floats,
        raw: Floats,
        channel_scores: Floats,
        observed: Sequence[FloatArray] | FloatArray,
        reconstructed: Floats,
        runs: list[tuple[str, int, int]] | None = None,
    ):
        if runs is None:
            runs = runs_of(streams or [])
        self.runs = runs
        self._streams = streams
        self.times = times  # (B,) float64 array, or a list of floats
        self.score = score
        self.raw = raw
        self.channel_scores = channel_scores
        self.observed = observed  # (B, C) array, or a list of (C,) arrays
        self.reconstructed = reconstructed
        # latent features (decision 0020), None unless asked for / the bundle has states:
        self.codes: NDArray[np.float32] | None = None  # (B, code_size), the same forward pass's
        self.latent_states: StateAssigner | None = None  # the bundle's operating states
        self._states: NDArray[np.intp] | None = None
        self._novelty: NDArray[np.float32] | None = None

    @property
    def states(self) -> NDArray[np.intp] | None:
        """(B,) each window's operating state index (from 0); computed on first use, so the
        live path, which needs only each stream's newest (`newest_states`), never pays for all."""
        if self._states is None and self.codes is not None and self.latent_states is not None:
            self._states, self._novelty = self.latent_states.assign(self.codes)
        return self._states

    @property
    def novelty(self) -> NDArray[np.float32] | None:
        """(B,) distance of each window's code to its state's centroid / the training radius."""
        return self._novelty if self.states is not None else None

    def newest_states(self) -> dict[str, tuple[int, float]]:
        """{stream: (state index, novelty)} of each stream's newest window ({} without states)."""
        if self.codes is None or self.latent_states is None:
            return {}
        newest = {stream: stop - 1 for stream, _, stop in self.runs}
        rows = np.fromiter(newest.values(), dtype=np.intp, count=len(newest))
        if self._states is not None and self._novelty is not None:
            idx, nov = self._states[rows], self._novelty[rows]
        else:
            idx, nov = self.latent_states.assign(self.codes[rows])
        return {s: (int(i), float(n)) for s, i, n in zip(newest, idx.tolist(), nov.tolist(), strict=True)}

    @classmethod
    def empty(cls) -> ScoreBatch:
        z = np.zeros(0)
        return cls([], z, z, z, np.zeros((0, 0)), np.zeros((0, 0)), np.zeros((0, 0)))

    @property
    def streams(self) -> list[str]:
        if self._streams is None:
            names: list[str] = []
            for stream, start, stop in self.runs:
                names += [stream] * (stop - start)
            self._streams = names
        return self._streams

    def __len__(self) -> int:
        return len(self.score)

    @overload
    def __getitem__(self, i: int) -> Score: ...
    @overload
    def __getitem__(self, i: slice) -> list[Score]: ...
    def __getitem__(self, i: int | slice) -> Score | list[Score]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return Score(
            self.streams[i],
            float(self.times[i]),
            float(self.score[i]),
            float(self.raw[i]),
            self.channel_scores[i],
            self.observed[i],
            self.reconstructed[i],
        )

    def last_by_stream(self) -> dict[str, float]:
        """The newest score of each stream in the batch (streams in order of first row)."""
        score = self.score
        return {stream: float(score[stop - 1]) for stream, _, stop in self.runs}


class ChannelContribution(TypedDict):
    """One of an alert's top channels: its share of the score and its values (raw units)."""

    channel: str
    score: float
    observed: float
    reconstructed: float


@dataclass(frozen=True)
class Alert:
    """A change of alarm state of one stream: `state` is "firing" or "resolved"."""

    alert_id: str
    stream: str
    state: str
    started_at: float
    ended_at: float | None
    peak_score: float
    current_score: float
    threshold: float
    model_version: str
    top_channels: list[ChannelContribution] = field(default_factory=list)
    group: str = "default"  # the model group that scored the stream (`monitor.core.fleet`)
    # "anomaly" (the model's alarm), "sensor" (`monitor.core.sensor_health`) or
    # "regime_change" (a one-off event, state "event": the stream's errors changed level or
    # spread for good and it re-baselined; see monitor.core.calibrate). `detail` carries
    # the kind's own figures.
    kind: str = "anomaly"
    detail: dict[str, Any] = field(default_factory=dict)
    cause: str | None = None  # sensor alerts: stale, stuck, out_of_range or rate
    channel: str | None = None  # sensor alerts: the faulty channel
    value: float | None = None  # sensor alerts: the channel's raw value when it fired / resolved
    # anomaly alerts of a bundle with operating states (decision 0020): the state of the
    # window behind the change, {"index" (from 1), "of", "name", "novelty", "text"}
    operating_state: dict[str, Any] | None = None
    masked: list[str] = field(default_factory=list)  # anomaly alerts: channels in sensor fault, scored from the others
    reason: str | None = None  # why a resolved alert ended other than by its scores: "stale" (the stream went silent)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "alert_id": self.alert_id,
            "stream": self.stream,
            "state": self.state,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "peak_score": self.peak_score,
            "current_score": self.current_score,
            "threshold": self.threshold,
            "model_version": self.model_version,
            "top_channels": self.top_channels,
            "group": self.group,
            "kind": self.kind,
            **({"detail": self.detail} if self.detail else {}),
        }
        if self.kind == "sensor":
            out.update(cause=self.cause, channel=self.channel, value=self.value)
        if self.operating_state is not None:
            out["operating_state"] = self.operating_state
        if self.masked:
            out["masked"] = list(self.masked)
        if self.reason is not None:
            out["reason"] = self.reason
        return out
