"""Model groups: config (inheritance, validation, back-compat), routing, one pass per group.

The scorer here is a small deterministic numpy implementation of the pipeline's
`monitor.core.interfaces.Scorer` protocol (no torch): routing and counting do not depend on the network;
the daemon tests (`test_fleet_daemon.py`) run real bundles.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from monitor.core.config import ConfigError, load_config
from monitor.core.fleet import ROUTE_CACHE_MAX, Fleet
from monitor.core.pipeline import Pipeline
from monitor.core.runner import Runner
from monitor.core.scoring_model import ScoringModel
from monitor.core.types import DropReason, FrameBlock, Reading


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


FLEET_YAML = """
topics:
  - {name: pumps, template: "pumps/{id}/{channel}", stream: "pump-{id}"}
  - {template: "plant/{site}/{asset}/{channel}", stream: "{site}/{asset}"}
stream: {channels: [a, b], period_seconds: 1.0, max_gap_seconds: 5}
model: {window_size: 16, hidden: [32], epochs: 5}
alarm: {k: 3, n: 5, resolve_m: 4}
models: {dir: MODELS}
groups:
  - name: pumps
    topics: [pumps]
  - name: motors
    streams: ["site*/motor*"]
    stream: {channels: [x, y, z]}
    model: {hidden: [8]}
    alarm: {k: 2}
  - name: rest
"""


def test_a_config_without_groups_is_one_default_group_served_from_models_dir(tmp_path):
    cfg = load_config(write(tmp_path, "stream: {channels: [a]}\nmodels: {dir: /srv/models}\n"), environ={})
    (group,) = cfg.fleet()
    assert group.name == "default" and group.catch_all
    assert group.stream is cfg.stream and group.alarm is cfg.alarm and group.model is cfg.model
    assert cfg.group_models_dir("default") == Path("/srv/models")  # today's models/current keeps working
    assert Fleet.from_config(cfg).route("anything/at/all") == "default"


def test_groups_inherit_top_level_sections_deep_merged_and_get_their_own_models_dir(tmp_path):
    cfg = load_config(write(tmp_path, FLEET_YAML.replace("MODELS", "/srv/models")), environ={})
    pumps, motors, rest = cfg.fleet()
    assert [g.name for g in cfg.fleet()] == ["pumps", "motors", "rest"]
    assert pumps.stream.channels == ["a", "b"] and pumps.model.hidden == [32] and pumps.alarm.k == 3
    # overrides replace only the keys given; the rest of the section is inherited
    assert motors.stream.channels == ["x", "y", "z"] and motors.stream.period_seconds == 1.0
    assert motors.model.hidden == [8] and motors.model.window_size == 16 and motors.model.epochs == 5
    assert motors.alarm.k == 2 and motors.alarm.resolve_m == 4
    assert rest.catch_all and not pumps.catch_all
    assert cfg.group_models_dir("motors") == Path("/srv/models/motors")
    assert cfg.for_group("motors").stream.channels == ["x", "y", "z"]


def test_routing_first_match_in_order_by_topic_rule_shape_and_stream_glob(tmp_path):
    cfg = load_config(write(tmp_path, FLEET_YAML.replace("MODELS", "m")), environ={})
    fleet = Fleet.from_config(cfg)
    assert fleet.route("pump-7") == "pumps"  # the stream shape of topic rule "pumps"
    assert fleet.route("site1/motor3") == "motors"
    assert fleet.route("site1/fan1") == "rest"  # the catch-all, last
    assert fleet.route("pump7") == "rest"


@pytest.mark.parametrize(
    "groups,key,words",
    [
        ("[{name: a, streams: [x*]}, {name: a, streams: [y*]}]", "groups[1].name", "already the name"),
        ("[{name: Pumps, streams: [x*]}]", "groups[0].name", "a-z, 0-9"),
        ("[{streams: [x*]}]", "groups[0].name", "a-z, 0-9"),
        ("[{name: a}, {name: b}]", "groups[1].streams", "only one catch-all"),
        ("[{name: a}, {name: b, streams: [x*]}]", "groups[0].streams", "must be the last"),
        ("[{name: a, streams: ['']}]", "groups[0].streams[0]", "must not be empty"),
        ("[{name: a, streams: x*}]", "groups[0].streams", "expected a list"),
        ("[{name: a, topics: [nope]}]", "groups[0].topics[0]", "no topic rule named 'nope'"),
        ("[{name: a, streams: [x]}, {name: b, model: {window_size: 1}}]", "groups[1].model.window_size", ">= 2"),
        ("[{name: a, alarm: {k: 9}}]", "groups[0].alarm.k", "between 1 and alarm.n"),
        ("[{name: a, model: {windw: 3}}]", "groups[0].model.windw", "unknown key"),
        ("[{name: a, mqtt: {}}]", "groups[0].mqtt", "unknown key"),
        ("{name: a}", "groups", "expected a list"),
    ],
)
def test_group_errors_name_the_key(tmp_path, groups, key, words):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, f"groups: {groups}\n"), environ={})
    assert info.value.key == key, str(info.value)
    assert words in str(info.value)


def test_the_fleet_example_config_is_accepted_by_check_config():
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "fleet.yaml", environ={})
    assert len(cfg.fleet()) >= 2 and len({tuple(g.stream.channels) for g in cfg.fleet()}) >= 2


# --------------------------------------------------------------------------- the fleet


class CountingScorer:
    """Deterministic errors that depend on every window value; counts forward passes."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def errors(self, x):
        self.calls.append(len(x))
        x = np.asarray(x, dtype=np.float32)
        per_channel = (x**2).mean(axis=1) + 0.01 * x[:, 0, :]
        return per_channel.mean(axis=1), per_channel, x[:, -1, :] * 0.5


def model(channels, version, scorer=None) -> ScoringModel:
    n = len(channels)
    return ScoringModel(
        version, list(channels), 1.0, 5, 1, [], np.zeros(n), np.ones(n), 1.5, scorer or CountingScorer()
    )


def fleet_cfg(tmp_path):
    return load_config(write(tmp_path, FLEET_YAML.replace("MODELS", str(tmp_path / "models"))), environ={})


def feed(streams_channels, n=120, fault=None, seed=0):
    """Items in arrival order: per time step, one FrameBlock row per stream (values ~N(0, 0.3));
    `fault` = (stream, start, stop) adds +4 on every channel of that stream there."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        for stream, channels in streams_channels:
            v = rng.normal(0, 0.3, size=(1, len(channels)))
            if fault and fault[0] == stream and fault[1] <= i < fault[2]:
                v += 4.0
            items.append(FrameBlock(stream, tuple(channels), np.array([1000.0 + i]), v))
    return items


PUMPS = [(f"pump-{i}", ("a", "b")) for i in range(3)]
MOTORS = [(f"site1/motor{i}", ("x", "y", "z")) for i in range(3)]


def test_each_group_scores_its_streams_with_one_forward_pass_per_flush_and_tags_alerts(tmp_path):
    fleet = Fleet.from_config(fleet_cfg(tmp_path))
    ps, ms = CountingScorer(), CountingScorer()
    fleet.install("pumps", model(["a", "b"], "p1", ps))
    fleet.install("motors", model(["x", "y", "z"], "m1", ms))
    items = feed(PUMPS + MOTORS, fault=("site1/motor1", 60, 80))
    results = []
    for at in range(0, len(items), 60):
        fleet.push_batch(items[at : at + 60])
        results.append(fleet.flush())
    # one call per group per flush that had due windows of that group
    flushes_with = {g: sum(1 for rs in results if any(r.group == g for r in rs)) for g in ("pumps", "motors")}
    assert len(ps.calls) == flushes_with["pumps"] > 5 and len(ms.calls) == flushes_with["motors"] > 5
    alerts = [a for rs in results for r in rs for a in r.alerts]
    assert {(a.group, a.stream, a.model_version, a.state) for a in alerts} == {
        ("motors", "site1/motor1", "m1", "firing"),
        ("motors", "site1/motor1", "m1", "resolved"),
    }
    scored = {r.group: set() for rs in results for r in rs}
    for rs in results:
        for r in rs:
            scored[r.group] |= set(r.scores.streams)
    assert scored == {"pumps": {s for s, _ in PUMPS}, "motors": {s for s, _ in MOTORS}}


def test_unrouted_streams_and_model_less_groups_are_counted_not_silently_dropped(tmp_path):
    raw = FLEET_YAML.replace("MODELS", "m").replace("  - name: rest\n", "")
    fleet = Fleet.from_config(load_config(write(tmp_path, raw), environ={}))
    fleet.install("pumps", model(["a", "b"], "p1"))
    items = feed(PUMPS + MOTORS + [("other/thing", ("q",))], n=30)
    fleet.push_batch(items)
    fleet.push_batch([Reading("other/thing", "q", 2000.0, 1.0)])
    fleet.flush()
    assert fleet.counters[DropReason.NO_GROUP] == 31  # 30 one-channel rows + one reading
    assert fleet.unrouted == {"other/thing": 31} and fleet.new_unrouted == ["other/thing"]
    assert fleet.group_counters("motors")[DropReason.NO_MODEL] == 3 * 30 * 3  # streams x rows x channels
    assert fleet.group_counters("pumps")["accepted"] == 3 * 30 * 2
    assert fleet.without_model() == ["motors"]
    totals = fleet.totals()
    assert totals[DropReason.NO_GROUP] == 31 and totals[DropReason.NO_MODEL] == 270


def test_unrouted_names_and_the_route_cache_stay_bounded(tmp_path):
    raw = FLEET_YAML.replace("MODELS", "m").replace("  - name: rest\n", "")
    fleet = Fleet.from_config(load_config(write(tmp_path, raw), environ={}))
    fleet.push_batch([Reading(f"x{i}", "q", 1.0, 1.0) for i in range(ROUTE_CACHE_MAX + 10)])
    assert len(fleet._route) <= ROUTE_CACHE_MAX
    assert len(fleet.unrouted) == 1000 and fleet.counters[DropReason.NO_GROUP] == ROUTE_CACHE_MAX + 10


def test_a_swap_in_one_group_leaves_the_other_untouched(tmp_path):
    fleet = Fleet.from_config(fleet_cfg(tmp_path))
    fleet.install("pumps", model(["a", "b"], "p1"))
    fleet.install("motors", model(["x", "y", "z"], "m1"))
    fleet.push_batch(feed(PUMPS + MOTORS, n=40))
    motors_before = fleet.pipeline("motors")
    state_before = dict(motors_before.streams)
    leftovers = fleet.install("pumps", model(["a", "b"], "p2"))
    assert leftovers.group == "pumps" and len(leftovers.scores) > 0  # old model scored its due windows
    assert fleet.model("pumps").version == "p2" and fleet.model("motors").version == "m1"
    assert fleet.pipeline("motors") is motors_before and fleet.pipeline("motors").streams == state_before
    assert fleet.pipeline("motors").pending > 0  # motors' due windows still wait for its own flush


def test_default_fleet_through_the_runner_equals_the_bare_pipeline(tmp_path):
    cfg = load_config(write(tmp_path, "stream: {channels: [a, b], period_seconds: 1.0}\nalarm: {k: 2, n: 3}\n"))
    items = feed(PUMPS, n=150, fault=("pump-2", 50, 70), seed=3)
    pipe = Pipeline(model(["a", "b"], "v"), cfg.stream, cfg.alarm, online=cfg.calibration.online)
    pipe.push_batch(items)
    scores, alerts = pipe.flush()
    got_alerts, got_scores = [], []
    fleet = Fleet.from_config(cfg)
    runner = Runner(fleet, on_scores=lambda r: got_scores.extend(r.scores), on_alert=got_alerts.append)
    runner.install("default", model(["a", "b"], "v"))
    for at in range(0, len(items), 37):  # batch boundaries change nothing
        runner.feed(items[at : at + 37])
    assert [a.to_dict() for a in got_alerts] == [a.to_dict() for a in alerts] and len(alerts) == 2
    assert all(a.group == "default" for a in got_alerts)
    key = lambda s: (s.stream, s.timestamp)  # noqa: E731
    assert [(s.stream, s.timestamp, s.score) for s in sorted(got_scores, key=key)] == [
        (s.stream, s.timestamp, s.score) for s in sorted(scores, key=key)
    ]
    assert runner.windows == len(scores) and runner.alerts == 2
