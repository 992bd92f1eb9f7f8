"""The fleet: many model groups in one process, each stream routed to its group's `Pipeline`.

Pure, like the pipeline (no I/O, no clocks): the daemon, `replay --offline`, `backtest`
and the retrain gate all drive it through `monitor.core.runner.Runner`.

* Routing is by stream key: the first group in config order whose selector matches
  (`GroupConfig.streams` globs and the stream shapes of its `topics` rules). The verdict
  is cached per stream key (bounded: the cache is cleared when it reaches its cap).
* One `Pipeline` per group, so `flush()` does one batched forward pass per group.
* Nothing is dropped silently: a stream no group selects is counted as
  ``DropReason.NO_GROUP`` (its name kept, bounded, for a once-per-stream report); a
  group without a model yet counts its readings as ``DropReason.NO_MODEL``.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from monitor.core.config import Config, GroupConfig
from monitor.core.pipeline import TALLIES, Pipeline
from monitor.core.scoring_model import ScoringModel
from monitor.core.types import Alert, BatchItem, DropReason, FloatArray, Reading, ScoreBatch

__all__ = ["TALLIES", "Fleet", "GroupResult", "GroupSelector"]

ROUTE_CACHE_MAX = 100_000  # stream keys whose group is remembered
UNROUTED_MAX = 1_000  # unrouted stream names remembered (for the once-per-stream report)


@dataclass(frozen=True)
class GroupSelector:
    """Which stream keys a group takes: all of `streams` globs' union, intersected with
    the union of `topic_streams` globs when the group names topic rules."""

    name: str
    streams: tuple[str, ...] = ()
    topic_streams: tuple[str, ...] = ()
    by_topic: bool = False  # the group names topic rules (even if none resolved)

    def matches(self, stream: str) -> bool:
        if self.streams and not any(fnmatchcase(stream, p) for p in self.streams):
            return False
        return not self.by_topic or any(fnmatchcase(stream, p) for p in self.topic_streams)


@dataclass
class GroupResult:
    """What one group's flush produced."""

    group: str
    scores: ScoreBatch
    alerts: list[Alert]


class _Group:
    __slots__ = ("cfg", "counters", "pipeline", "selector", "top_channels")

    def __init__(self, cfg: GroupConfig, selector: GroupSelector, top_channels: int):
        self.cfg = cfg
        self.selector = selector
        self.top_channels = top_channels
        self.pipeline: Pipeline | None = None
        self.counters: Counter[str] = Counter()  # the fleet's own drops for this group (no_model)


def _count(item: BatchItem) -> int:
    return 1 if type(item) is Reading else len(item)


class Fleet:
    """One `Pipeline` per group; not thread-safe (drive it from one thread, as the pipeline)."""

    def __init__(
        self,
        groups: Sequence[tuple[GroupConfig, GroupSelector]],
        top_channels: int = 3,
        *,
        cache_max: int = ROUTE_CACHE_MAX,
        sensors: bool = True,
        latent: bool = False,
    ):
        # sensor-health checks in every group's pipeline, each by its group's `sensors:`
        # (False: none, as the retrain gates score)
        self.sensors = sensors
        self.latent = latent  # every group's scored batches carry their windows' codes
        if not groups:
            raise ValueError("a fleet needs at least one group")
        self._groups: dict[str, _Group] = {}
        for cfg, selector in groups:
            if cfg.name in self._groups:
                raise ValueError(f"group {cfg.name!r} given twice")
            self._groups[cfg.name] = _Group(cfg, selector, top_channels)
        self._order = list(self._groups.values())
        first = self._order[0]
        self._only = first if len(self._order) == 1 and first.cfg.catch_all else None
        self._route: dict[str, _Group | None] = {}
        self._cache_max = cache_max
        self.counters: Counter[str] = Counter()  # fleet-wide drops: no_group
        self.unrouted: dict[str, int] = {}  # stream -> readings dropped (first UNROUTED_MAX streams)
        self.new_unrouted: list[str] = []  # unrouted streams not reported yet (the caller drains it)

    @classmethod
    def from_config(cls, cfg: Config) -> Fleet:
        """Every group of `cfg`, none serving a model yet (`install` one per group)."""
        return cls(selectors(cfg), cfg.alerts.top_channels, latent=cfg.alerts.latent_topic is not None)

    @classmethod
    def single(
        cls,
        model: ScoringModel,
        group: GroupConfig,
        top_channels: int = 3,
        *,
        sensors: bool = False,
        latent: bool = False,
    ) -> Fleet:
        """A one-group catch-all fleet already serving `model` (backtest, a given --model);
        `sensors`: with the group's sensor checks (and masked scoring), as the daemon."""
        fleet = cls([(group, GroupSelector(group.name))], top_channels, sensors=sensors, latent=latent)
        fleet.install(group.name, model)
        return fleet

    # ------------------------------------------------------------------ groups and models

    @property
    def names(self) -> list[str]:
        return [g.cfg.name for g in self._order]

    def pipeline(self, group: str) -> Pipeline | None:
        return self._groups[group].pipeline

    def model(self, group: str) -> ScoringModel | None:
        pipe = self._groups[group].pipeline
        return pipe.model if pipe is not None else None

    def without_model(self) -> list[str]:
        """Groups that cannot score yet (no model installed)."""
        return [g.cfg.name for g in self._order if g.pipeline is None]

    def install(self, group: str, model: ScoringModel) -> GroupResult:
        """Serve `model` in `group` from now on; other groups are untouched. Windows
        already due in the group are scored by its old model first (returned)."""
        g = self._groups[group]
        if g.pipeline is None:
            g.pipeline = Pipeline(
                model,
                g.cfg.stream,
                g.cfg.alarm,
                g.top_channels,
                g.cfg.calibration.online,
                sensors=g.cfg.sensors if self.sensors else None,
                latent=self.latent,
            )
            return GroupResult(group, ScoreBatch.empty(), [])
        scores, alerts = g.pipeline.swap_model(model)
        return GroupResult(group, scores, _tag(alerts, group))

    # ------------------------------------------------------------------ routing

    def route(self, stream: str) -> str | None:
        g = self._lookup(stream)
        return g.cfg.name if g is not None else None

    def _lookup(self, stream: str) -> _Group | None:
        try:
            return self._route[stream]
        except KeyError:
            pass
        found = None
        for g in self._order:
            if g.selector.matches(stream):
                found = g
                break
        if len(self._route) >= self._cache_max:
            self._route.clear()
        self._route[stream] = found
        return found

    def _unrouted(self, stream: str, n: int) -> None:
        self.counters[DropReason.NO_GROUP] += n
        seen = self.unrouted.get(stream)
        if seen is not None:
            self.unrouted[stream] = seen + n
        elif len(self.unrouted) < UNROUTED_MAX:
            self.unrouted[stream] = n
            self.new_unrouted.append(stream)

    # ------------------------------------------------------------------ input

    def push_batch(self, items: Iterable[BatchItem]) -> None:
        """Each item to its group's pipeline (`Pipeline.push_batch`, arrival order kept
        within a group); unroutable or model-less items are counted, never lost silently."""
        only = self._only
        if only is not None:  # one catch-all group (a config without `groups:`): no routing
            if only.pipeline is None:
                only.counters[DropReason.NO_MODEL] += sum(_count(i) for i in items)
            else:
                only.pipeline.push_batch(items if isinstance(items, Sequence) else list(items))
            return
        split: dict[_Group, list[BatchItem]] = {}
        route, lookup = self._route, self._lookup
        for item in items:
            stream = item[0] if type(item) is Reading else item.stream
            g = route[stream] if stream in route else lookup(stream)
            if g is None:
                self._unrouted(stream, _count(item))
                continue
            part = split.get(g)
            if part is None:
                split[g] = [item]
            else:
                part.append(item)
        for g, part in split.items():
            if g.pipeline is None:
                g.counters[DropReason.NO_MODEL] += sum(_count(i) for i in part)
            else:
                g.pipeline.push_batch(part)

    def push_row(self, stream: str, timestamp: float, values: FloatArray) -> str | None:
        """A wide row of `stream` (every channel of its group's model); the drop reason or None."""
        g = self._lookup(stream)
        if g is None:
            self._unrouted(stream, len(values))
            return DropReason.NO_GROUP
        if g.pipeline is None:
            g.counters[DropReason.NO_MODEL] += len(values)
            return DropReason.NO_MODEL
        return g.pipeline.push_row(stream, timestamp, values)

    def end_of_data(self) -> None:
        for g in self._order:
            if g.pipeline is not None:
                g.pipeline.end_of_data()

    @property
    def pending(self) -> int:
        return sum(g.pipeline.pending for g in self._order if g.pipeline is not None)

    # ------------------------------------------------------------------ scoring

    def flush(self) -> list[GroupResult]:
        """One batched forward pass per group with due windows; alerts carry their group."""
        out = []
        for g in self._order:
            pipe = g.pipeline
            if pipe is None or not (pipe.pending or pipe.sensors_pending):
                continue
            scores, alerts = pipe.flush()
            out.append(GroupResult(g.cfg.name, scores, _tag(alerts, g.cfg.name)))
        return out

    # ------------------------------------------------------------------ counters

    def group_counters(self, group: str) -> Counter[str]:
        """The group's pipeline counters (drops and `TALLIES`) plus its no_model drops."""
        g = self._groups[group]
        total = Counter(g.counters)
        if g.pipeline is not None:
            total.update(g.pipeline.counters)
        return total

    def totals(self) -> Counter[str]:
        """Every group's counters summed, plus the fleet's no_group drops."""
        total = Counter(self.counters)
        for name in self._groups:
            total.update(self.group_counters(name))
        return total

    def sensor_tick(self, now: float) -> list[GroupResult]:
        """The stale check of every group at `now`; results with alerts only."""
        out = []
        for g in self._order:
            if g.pipeline is not None:
                alerts = g.pipeline.sensor_tick(now)
                if alerts:
                    out.append(GroupResult(g.cfg.name, ScoreBatch.empty(), _tag(alerts, g.cfg.name)))
        return out

    def streams_active(self) -> int:
        return sum(len(g.pipeline.streams) for g in self._order if g.pipeline is not None)

    def firing(self, group: str, stream: str) -> bool:
        pipe = self._groups[group].pipeline
        return pipe is not None and pipe.alarm.firing(stream)


def _tag(alerts: list[Alert], group: str) -> list[Alert]:
    return [a if a.group == group else dataclasses.replace(a, group=group) for a in alerts]


def selectors(cfg: Config) -> list[tuple[GroupConfig, GroupSelector]]:
    """Each group of `cfg` (`Config.fleet`, routing order) with its selector."""
    out = []
    for g in cfg.fleet():
        streams, topic_streams = cfg.stream_patterns(g)
        out.append((g, GroupSelector(g.name, tuple(streams), tuple(topic_streams), bool(g.topics))))
    return out
