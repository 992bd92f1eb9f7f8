"""The alarm state machine: k of n to fire, m below to resolve, cooldown, explicit time."""

import math

import numpy as np
import pytest

from monitor.core.alarm import AlarmMachine
from monitor.core.config import AlarmConfig
from monitor.core.types import ScoreBatch

CH = ["a", "b"]


def run(cfg, scores, start=0.0, step=1.0):
    """Feed scores at t = start, start+step, ...; return [(t, state)] of the transitions."""
    m = AlarmMachine(cfg, threshold=0.5, model_version="v1", channels=CH)
    events = []
    for i, s in enumerate(scores):
        t = start + i * step
        a = m.update("pump", t, s, np.array([s * 0.75, s * 0.25]), np.array([1.0, 2.0]), np.array([0.9, 2.1]))
        if a:
            events.append((t, a.state))
    return events, m


@pytest.mark.parametrize(
    "k,n,m,scores,expected",
    [
        # k=2 of n=3: one hot score alone never fires
        (2, 3, 2, [0, 2, 0, 0, 2, 0, 0], []),
        # two hot within three fire on the second one; two cold in a row resolve
        (2, 3, 2, [0, 2, 0, 2, 0, 0, 0], [(3.0, "firing"), (5.0, "resolved")]),
        # k=1 fires immediately; a cold score between hot ones resets the resolve run
        (1, 1, 3, [2, 0, 0, 2, 0, 0, 0], [(0.0, "firing"), (6.0, "resolved")]),
        # exactly 1.0 counts as at threshold (>=)
        (1, 1, 1, [1.0, 0.99], [(0.0, "firing"), (1.0, "resolved")]),
    ],
)
def test_k_of_n_fire_and_m_below_resolve(k, n, m, scores, expected):
    events, _ = run(AlarmConfig(k=k, n=n, resolve_m=m), scores)
    assert events == expected


def test_cooldown_suppresses_refiring_until_it_has_passed():
    cfg = AlarmConfig(k=1, n=1, resolve_m=1, cooldown_seconds=3.0)
    #  t:      0  1  2  3  4  5
    #  score:  2  0  2  2  2  0
    #  state:  F  R  (cool) F(at t=4: 4-1 >= 3) R
    events, _ = run(cfg, [2, 0, 2, 2, 2, 0])
    assert events == [(0.0, "firing"), (1.0, "resolved"), (4.0, "firing"), (5.0, "resolved")]


def test_alert_carries_peak_top_channels_and_deterministic_id():
    cfg = AlarmConfig(k=1, n=1, resolve_m=1)
    m = AlarmMachine(cfg, threshold=0.5, model_version="v7", channels=["a", "b", "c"], top_n=2)
    fire = m.update("s", 10.0, 2.0, np.array([0.2, 1.5, 0.3]), np.array([1, 2, 3.0]), np.array([1, 9, 3.0]))
    m.update("s", 11.0, 5.0, np.array([4.0, 0.5, 0.5]), np.array([7, 2, 3.0]), np.array([1, 2, 3.0]))
    res = m.update("s", 12.0, 0.1, np.array([0.05, 0.03, 0.02]), np.array([1, 2, 3.0]), np.array([1, 2, 3.0]))
    assert fire.state == "firing" and fire.started_at == 10.0 and fire.ended_at is None
    assert [c["channel"] for c in fire.top_channels] == ["b", "c"]
    assert fire.top_channels[0]["observed"] == 2.0 and fire.top_channels[0]["reconstructed"] == 9.0
    assert res.state == "resolved" and res.ended_at == 12.0 and res.alert_id == fire.alert_id
    assert res.peak_score == 5.0 and res.top_channels[0]["channel"] == "a"
    assert res.threshold == 0.5 and res.model_version == "v7"
    m2 = AlarmMachine(cfg, threshold=0.5, model_version="v7", channels=["a", "b", "c"])
    again = m2.update("s", 10.0, 2.0, np.zeros(3), np.zeros(3), np.zeros(3))
    assert again.alert_id == fire.alert_id  # same feed + model -> same id on replay


def test_streams_are_independent_and_reading_state_does_not_change_it():
    cfg = AlarmConfig(k=1, n=1, resolve_m=1)
    m = AlarmMachine(cfg, 1.0, "v", CH)
    m.update("a", 0.0, 3.0, np.zeros(2), np.zeros(2), np.zeros(2))
    for _ in range(3):
        assert m.firing("a") and not m.firing("b")
    assert m.firing_streams() == ["a"]


def _batch(streams, scores):
    n = len(streams)
    s = np.asarray(scores, dtype=float)
    return ScoreBatch(
        list(streams),
        [float(i) for i in range(n)],
        s,
        s * 0.5,
        np.tile(s[:, None], (1, 2)) / 2,
        [np.array([1.0, 2.0])] * n,
        np.zeros((n, 2)),
    )


@pytest.mark.parametrize("seed", range(6))
def test_batch_update_matches_window_by_window_through_long_episodes(seed):
    """Long hot stretches (episodes spanning batches, peaks rising and tying, resolve runs
    cut by batch ends, NaN scores): the same alerts to the last field and the same state."""
    rng = np.random.default_rng(100 + seed)
    cfg = AlarmConfig(
        k=int(rng.integers(1, 4)),
        n=4,
        resolve_m=int(rng.integers(1, 6)),
        resolve_below=float(rng.choice([0.5, 1.0])),
        cooldown_seconds=float(rng.integers(0, 4)),
    )
    one = AlarmMachine(cfg, 1.0, "v", ["a", "b", "c"])
    many = AlarmMachine(cfg, 1.0, "v", ["a", "b", "c"])
    t = 0
    hot_until = {f"s{i}": -1 for i in range(3)}
    n_alerts = 0
    for _ in range(60):
        size = int(rng.integers(1, 60))
        streams = [f"s{int(i)}" for i in rng.integers(0, 3, size)]
        scores = []
        for k, stream in enumerate(streams):
            if hot_until[stream] < t + k and rng.random() < 0.03:
                hot_until[stream] = t + k + int(rng.integers(5, 80))
            hot = hot_until[stream] >= t + k
            if rng.random() < 0.1:
                x = float(rng.choice([0.5, 1.0]))  # exactly at resolve_below / the threshold
            elif hot and rng.random() < 0.3:
                x = float(rng.choice([1.5, 2.5, 3.0]))  # ties for the peak
            else:
                x = float(rng.uniform(0.6, 4.0) if hot else rng.uniform(0, 1.2))
            scores.append(math.nan if rng.random() < 0.01 else x)
        s = np.asarray(scores, dtype=np.float32)
        b = ScoreBatch(
            streams,
            [float(t + i) for i in range(size)],
            s,
            s * 0.5,
            rng.uniform(0, 1, (size, 3)),
            list(rng.normal(size=(size, 3))),
            rng.normal(size=(size, 3)),
        )
        expected = []
        for i in range(size):
            a = one.update(streams[i], b.times[i], float(s[i]), b.channel_scores[i], b.observed[i], b.reconstructed[i])
            if a:
                expected.append(a.to_dict())
        got = [a.to_dict() for a in many.update_batch(b)]
        key = lambda a: (a["stream"], a["started_at"], a["state"] == "resolved")  # noqa: E731
        assert sorted(got, key=key) == sorted(expected, key=key)
        n_alerts += len(got)
        t += size
    assert n_alerts >= 4
    assert one.firing_streams() == many.firing_streams()
    assert one._armed == many._armed
    for stream, st in one.states.items():
        other = many.states[stream]
        assert (list(st.recent), st.above, st.below_run, st.last_resolved_at) == (
            list(other.recent),
            other.above,
            other.below_run,
            other.last_resolved_at,
        )
        assert (st.episode is None) == (other.episode is None)
        if st.episode:
            assert (st.episode.peak_score, st.episode.peak_channels) == (
                other.episode.peak_score,
                other.episode.peak_channels,
            )


@pytest.mark.parametrize("seed", range(6))
def test_batch_update_takes_the_same_decisions_as_window_by_window(seed):
    """The batch path (cold streams in one step) equals calling update per window, in order."""
    rng = np.random.default_rng(seed)
    cfg = AlarmConfig(k=2, n=4, resolve_m=3, cooldown_seconds=float(rng.integers(0, 6)))
    one = AlarmMachine(cfg, 1.0, "v", CH)
    many = AlarmMachine(cfg, 1.0, "v", CH)
    t = 0
    for _ in range(40):
        size = int(rng.integers(1, 30))
        streams = [f"s{int(i)}" for i in rng.integers(0, 4, size)]
        # mostly cold, with bursts of hot scores
        scores = np.where(rng.random(size) < 0.15, rng.uniform(1.0, 3.0, size), rng.uniform(0, 0.99, size))
        b = _batch(streams, scores)
        b.times = [float(t + i) for i in range(size)]
        expected = []
        for i in range(size):
            a = one.update(
                streams[i], b.times[i], float(scores[i]), b.channel_scores[i], b.observed[i], b.reconstructed[i]
            )
            if a:
                expected.append(a)
        got = many.update_batch(b)
        assert sorted((a.stream, a.state, a.started_at, a.ended_at) for a in got) == sorted(
            (a.stream, a.state, a.started_at, a.ended_at) for a in expected
        )
        t += size
    assert one.firing_streams() == many.firing_streams()
    for s, st in one.states.items():
        other = many.states[s]
        assert list(st.recent) == list(other.recent) and st.above == other.above


def test_batch_update_fires_a_stream_held_back_by_cooldown_on_a_cold_score_after_it():
    #  t:      0   1   2   3   4    | 20 (next batch, cold)
    #  score:  2   2   0   2   2    | 0.5
    #  state:      F   R  (hot x2 inside the 10 s cooldown: held back, k=2 of n=4) -> fires at t=20
    cfg = AlarmConfig(k=2, n=4, resolve_m=1, cooldown_seconds=10.0)
    for machine_batches in (False, True):
        m = AlarmMachine(cfg, 1.0, "v", CH)
        first = _batch(["a"] * 5, [2.0, 2.0, 0.0, 2.0, 2.0])
        events = [(a.state, a.started_at) for a in m.update_batch(first)] if machine_batches else []
        if not machine_batches:
            for i in range(5):
                a = m.update(
                    "a",
                    first.times[i],
                    float(first.score[i]),
                    first.channel_scores[i],
                    first.observed[i],
                    first.reconstructed[i],
                )
                if a:
                    events.append((a.state, a.started_at))
        assert events == [("firing", 1.0), ("resolved", 1.0)]
        later = _batch(["a"], [0.5])
        later.times = [20.0]
        assert [(a.state, a.started_at) for a in m.update_batch(later)] == [("firing", 20.0)]
