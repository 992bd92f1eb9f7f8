"""The vectorized paths (WindowBuffer.push_many, Pipeline.push_batch, the codec's json_array
fast path and its columnar ReadingBlocks) give exactly what the one-at-a-time paths give:
frames, windows, scores, alerts and drop/reject counts. Streams are independent, so the
batched path may queue different streams' windows in another order; each stream's own
sequence of windows, scores and alerts is compared exactly."""

from __future__ import annotations

import json
import math

import numpy as np
import orjson
import pytest

from monitor.core.config import AlarmConfig, FilterConfig, StreamConfig, TopicRule
from monitor.core.pipeline import Pipeline
from monitor.core.scoring_model import ScoringModel
from monitor.core.stream.windows import WindowBuffer
from monitor.core.types import FrameBlock, Reading, ReadingBlock, Rejected, ScoreBatch
from monitor.io.codec import Codec


@pytest.mark.parametrize("window_size,stride", [(1, 1), (4, 1), (5, 2), (6, 3), (3, 5)])
def test_window_push_many_matches_push(window_size, stride):
    rng = np.random.default_rng(window_size * 10 + stride)
    one = WindowBuffer(window_size, 2, stride)
    many = WindowBuffer(window_size, 2, stride)
    frames = rng.normal(size=(400, 2))
    i = 0
    while i < len(frames):
        m = int(rng.integers(1, 3 * window_size + 3))
        chunk = frames[i : i + m]
        expected = []
        for j, f in enumerate(chunk):
            w = one.push(f)
            if w is not None:
                expected.append((j, w.copy()))
        index, windows = many.push_many(chunk)
        assert index.tolist() == [j for j, _ in expected]
        assert windows.shape == (len(expected), window_size, 2)
        for (_, w), got in zip(expected, windows, strict=True):
            np.testing.assert_array_equal(w, got)
        assert (many._filled, many._since, many._pos) == (one._filled, one._since, one._pos)
        if rng.random() < 0.15:
            one.reset()
            many.reset()
        i += m


class _Scorer:
    """Deterministic stand-in for the torch scorer (depends on every window value)."""

    def errors(self, x):
        x = np.asarray(x, dtype=np.float32)
        per_channel = (x**2).mean(axis=1) + 0.01 * x[:, 0, :]
        return per_channel.mean(axis=1), per_channel, x[:, -1, :] * 0.5


def _model(channels=("v",)) -> ScoringModel:
    n = len(channels)
    return ScoringModel(
        version="t1",
        channels=list(channels),
        period_seconds=1.0,
        window_size=5,
        stride=1,
        filters=[],
        mean=np.full(n, 0.5),
        std=np.full(n, 2.0),
        threshold=0.2,
        scorer=_Scorer(),
    )


def _messages(seed: int) -> list[list[Reading]]:
    """Batched messages of univariate streams, mostly clean runs, with every kind of trouble."""
    rng = np.random.default_rng(seed)
    msgs: list[list[Reading]] = []
    t = {f"s{i}": 1000.0 for i in range(4)}
    for _ in range(120):
        stream = f"s{int(rng.integers(0, 4))}"
        n = int(rng.integers(1, 30))
        kind = rng.random()
        out = []
        for _ in range(n):
            step = 1.0
            r = rng.random()
            if kind < 0.3:  # troubled message
                if r < 0.1:
                    step = 0.0  # duplicate
                elif r < 0.15:
                    step = -3.0  # out of order / late
                elif r < 0.25:
                    step = 0.4  # two readings in one bucket
                elif r < 0.3:
                    step = 9.0  # a gap longer than max_gap: stale frames
            t[stream] += step
            value = float(rng.normal() * (6 if rng.random() < 0.05 else 1))
            channel = "v"
            if kind < 0.3 and rng.random() < 0.05:
                value = math.nan
            if kind < 0.3 and rng.random() < 0.03:
                channel = "other"  # unknown channel
            out.append(Reading(stream if rng.random() > 0.02 else "s9", channel, t[stream], value))
        msgs.append(out)
    return msgs


@pytest.mark.parametrize("seed", [1, *(pytest.param(s, marks=pytest.mark.slow) for s in (2, 3, 4))])
def test_pipeline_push_batch_of_one_message_matches_push_reading(seed):
    cfg = StreamConfig(channels=["v"], period_seconds=1.0, max_gap_seconds=5, max_streams=4)
    alarm = AlarmConfig(k=2, n=3, resolve_m=3)
    one = Pipeline(_model(), cfg, alarm)
    many = Pipeline(_model(), cfg, alarm)
    got_one, got_many = [], []
    for i, msg in enumerate(_messages(seed)):
        for r in msg:
            one.push_reading(r)
        many.push_batch(msg)
        if i % 7 == 6:
            got_one.append(one.flush())
            got_many.append(many.flush())
    got_one.append(one.flush())
    got_many.append(many.flush())
    assert one.counters == many.counters
    assert one.counters["accepted"] > 1000 and one.counters["duplicate"] and one.counters["stale_frames"]
    assert _assert_same_results(got_one, got_many) > 1000
    assert any(a for _, a in got_one)  # alerts fired and resolved on both paths


def test_pipeline_push_batch_multichannel_falls_back_to_per_reading():
    cfg = StreamConfig(channels=["a", "b"], period_seconds=1.0, max_gap_seconds=5)
    one = Pipeline(_model(("a", "b")), cfg, AlarmConfig())
    many = Pipeline(_model(("a", "b")), cfg, AlarmConfig())
    msg = [Reading("s", c, 100.0 + k, float(k)) for k in range(40) for c in ("a", "b")]
    for r in msg:
        one.push_reading(r)
    many.push_batch(msg)
    s1, _ = one.flush()
    s2, _ = many.flush()
    assert one.counters == many.counters
    assert [(s.timestamp, s.score) for s in s1] == [(s.timestamp, s.score) for s in s2]


def test_codec_array_fast_path_matches_single_objects():
    rules = [TopicRule(template="p/{stream}/{channel}", format="auto")]
    codec = Codec(rules, max_future_seconds=300.0)
    now = 1_700_000_000.0
    elements = [
        {"ts": now - 5, "value": 1.5},
        {"ts": int(now) - 4, "value": 2},
        {"ts": (now - 3) * 1000, "value": 3.0},  # milliseconds: the slow path
        {"ts": now + 1000, "value": 4.0},  # future
        {"ts": now - 2, "value": True},  # bool: malformed
        {"ts": now - 2, "value": "7.5"},
        {"ts": now - 1, "value": 2**70},
        {"ts": "2023-11-14T22:13:00Z", "value": 1.0},
        {"ts": now, "value": 1.0, "channel": "x"},
        {"value": 8.0},
        {"ts": None, "value": 9.0},
        {"ts": -(2**60), "value": 1.0},
        {"ts": now, "value": None},
        {"ts": now, "temp": 3.0},  # json_multi element
        [1, 2],
    ]
    payload = json.dumps(elements).encode()  # the stdlib: 2**70 is beyond orjson
    got_r, got_j = codec.decode("p/s1/c1", payload, now)
    exp_r, exp_j = [], []
    for e in elements:  # each object as its own payload: `_single` / `_multi`, never the array loop
        if isinstance(e, dict):
            r, j = codec.decode("p/s1/c1", json.dumps(e).encode(), now)
        else:
            r, j = [], [Rejected("malformed", "not an object")]
        exp_r += r
        exp_j += j
    assert got_r == exp_r
    assert [x.reason for x in got_j] == [x.reason for x in exp_j]
    fast = codec.decode(
        "p/s1/c1", orjson.dumps([{"ts": now - 9, "value": 0.25}, {"ts": int(now) - 8, "value": 3}]), now
    )
    assert fast == ([Reading("s1", "c1", now - 9, 0.25), Reading("s1", "c1", float(int(now) - 8), 3.0)], [])


def _interleaved(seed: int, n_streams: int = 6, n: int = 6000) -> list[Reading]:
    """Single readings of univariate streams, interleaved (round robin, random picks and
    bursts of one stream), with every kind of trouble on some streams at some times."""
    rng = np.random.default_rng(seed)
    t = {f"s{i}": 1000.0 + i * 0.25 for i in range(n_streams)}
    out: list[Reading] = []
    rr = 0
    while len(out) < n:
        mode = rng.random()
        if mode < 0.5:  # a round of round robin
            order = [f"s{(rr + k) % n_streams}" for k in range(n_streams)]
            rr += 1
        elif mode < 0.8:  # random picks
            order = [f"s{int(x)}" for x in rng.integers(0, n_streams, size=int(rng.integers(1, 12)))]
        else:  # a burst of one stream
            order = [f"s{int(rng.integers(0, n_streams))}"] * int(rng.integers(2, 40))
        troubled = rng.random() < 0.25
        for stream in order:
            step, value, channel = 1.0, float(rng.normal() * (6 if rng.random() < 0.05 else 1)), "v"
            if troubled:
                r = rng.random()
                if r < 0.08:
                    step = 0.0  # duplicate
                elif r < 0.13:
                    step = -3.0  # out of order / late
                elif r < 0.2:
                    step = 0.4  # two readings in one bucket
                elif r < 0.26:
                    step = 3.0  # a short gap: several held frames (and windows) from one reading
                elif r < 0.3:
                    step = 9.0  # a gap longer than max_gap: stale frames
                if rng.random() < 0.05:
                    value = math.nan
                if rng.random() < 0.03:
                    channel = "other"  # unknown channel
            t[stream] += step
            out.append(Reading(stream, channel, t[stream], value))
    return out


def _by_stream(items, key) -> dict[str, list]:
    out: dict[str, list] = {}
    for item in items:
        out.setdefault(key(item), []).append(item)
    return out


def _assert_same_results(got_one, got_many):
    """Per flushed batch: the same windows, scores and alerts for every stream, in the same
    order within the stream; and `runs` describing the batch's rows."""
    n_scores = 0
    for (s1, a1), (s2, a2) in zip(got_one, got_many, strict=True):
        assert len(s1) == len(s2)
        for b in (s1, s2):
            assert [name for name, start, stop in b.runs for _ in range(start, stop)] == b.streams
            assert b.runs == [] or (b.runs[0][1] == 0 and b.runs[-1][2] == len(b))
        one, many = _by_stream(s1, lambda s: s.stream), _by_stream(s2, lambda s: s.stream)
        assert one.keys() == many.keys()
        for stream in one:
            x1, x2 = one[stream], many[stream]
            assert [(s.timestamp, s.score, s.raw_error) for s in x1] == [
                (s.timestamp, s.score, s.raw_error) for s in x2
            ]
            assert [s.timestamp for s in x1] == sorted(s.timestamp for s in x1)
            for x, y in zip(x1, x2, strict=True):
                np.testing.assert_array_equal(x.observed, y.observed)
                np.testing.assert_array_equal(x.reconstructed, y.reconstructed)
                np.testing.assert_array_equal(x.channel_scores, y.channel_scores)
        alerts1 = _by_stream([a.to_dict() for a in a1], lambda a: a["stream"])
        alerts2 = _by_stream([a.to_dict() for a in a2], lambda a: a["stream"])
        assert alerts1 == alerts2
        n_scores += len(s1)
    return n_scores


@pytest.mark.parametrize(
    "seed,window_size,stride,n_streams,max_streams",
    [
        (1, 5, 1, 6, 5),
        pytest.param(2, 5, 1, 10, 10, marks=pytest.mark.slow),
        pytest.param(3, 4, 2, 6, 4, marks=pytest.mark.slow),
        pytest.param(4, 1, 1, 3, 3, marks=pytest.mark.slow),
        pytest.param(5, 6, 3, 10, 7, marks=pytest.mark.slow),
        pytest.param(6, 5, 1, 1, 1, marks=pytest.mark.slow),
    ],
)
def test_pipeline_push_batch_matches_push_reading(seed, window_size, stride, n_streams, max_streams):
    cfg = StreamConfig(channels=["v"], period_seconds=1.0, max_gap_seconds=5, max_streams=max_streams)
    alarm = AlarmConfig(k=2, n=3, resolve_m=3)

    def model():
        m = _model()
        m.window_size, m.stride = window_size, stride
        return m

    one = Pipeline(model(), cfg, alarm)
    many = Pipeline(model(), cfg, alarm)
    runs = []
    run = many._push_frames
    many._push_frames = lambda *a: runs.append((run(*a), len(a[1]))) or runs[-1][0]
    feed = _interleaved(seed, n_streams)
    rng = np.random.default_rng(seed + 100)
    got_one, got_many = [], []
    i = 0
    while i < len(feed):
        size = int(rng.choice([1, 2, 7, 8, 30, 60, 120, 256, 700]))
        batch = feed[i : i + size]
        for r in batch:
            one.push_reading(r)
        many.push_batch(batch)
        assert one.pending == many.pending
        got_one.append(one.flush())
        got_many.append(many.flush())
        i += size
    assert one.counters == many.counters
    assert list(one.streams) == list(many.streams)
    c = one.counters
    assert c["accepted"] > 3000 and c["duplicate"] and c["stale_frames"] and c["unknown_channel"]
    if n_streams > max_streams:
        assert c["stream_cap"]
    for s in one.streams:  # same stream state afterwards
        a, b = one.streams[s], many.streams[s]
        assert (a.assembler._next, a.assembler._last_ts, a.assembler._hold) == (
            b.assembler._next,
            b.assembler._last_ts,
            b.assembler._hold,
        )
        assert (a.windows._filled, a.windows._since, a.windows._pos) == (
            b.windows._filled,
            b.windows._since,
            b.windows._pos,
        )
    assert _assert_same_results(got_one, got_many) > 1000
    assert any(a for _, a in got_one)  # alerts fired on both paths
    assert sum(done > 0 for done, _ in runs) > 3  # the vectorized path was taken
    assert any(done < n for done, n in runs)  # and stopped short for troubled groups


def test_pipeline_push_batch_several_windows_per_reading_keep_stream_order():
    """A reading after a short gap emits several held frames (windows) at once; readings of
    other streams in between: each stream's windows come out in frame order, as one by one."""
    cfg = StreamConfig(channels=["v"], period_seconds=1.0, max_gap_seconds=5)
    one = Pipeline(_model(), cfg, AlarmConfig())
    many = Pipeline(_model(), cfg, AlarmConfig())
    feed = []
    for k in range(40):
        for s in ("a", "b", "c"):
            jump = 2 * (k // 9) if s == "b" else 0  # b skips two buckets every 9 readings
            feed.append(Reading(s, "v", 100.0 + k + jump, float(k % 5)))
    for r in feed:
        one.push_reading(r)
    many.push_batch(feed)
    s1, a1 = one.flush()
    s2, a2 = many.flush()
    assert one.counters == many.counters
    assert _assert_same_results([(s1, a1)], [(s2, a2)]) == len(s1)
    assert len({s.stream for s in s1[:6]}) > 1  # one by one: interleaved
    assert [r[0] for r in s2.runs] == ["a", "b", "c"]  # batched: one run per stream
    assert len(s1) > 100 and one.counters["frames"] > one.counters["accepted"]  # held frames


def test_pipeline_push_batch_of_multichannel_readings_and_filtered_models_matches_push_reading():
    cfg = StreamConfig(channels=["a", "b"], period_seconds=1.0, max_gap_seconds=5)
    for model in (_model(("a", "b")), _model()):
        if len(model.channels) == 1:
            model.filters = [FilterConfig(type="median", size=3)]
        one = Pipeline(model, cfg, AlarmConfig())
        many = Pipeline(model, cfg, AlarmConfig())
        feed = [Reading(s, c, 100.0 + k, float(k % 7)) for k in range(60) for s in ("x", "y") for c in model.channels]
        for r in feed:
            one.push_reading(r)
        many.push_batch(feed)
        got_one, got_many = one.flush(), many.flush()
        assert one.counters == many.counters
        assert _assert_same_results([got_one], [got_many]) > 50


# ---------------------------------------------------------------- columnar blocks


def _columns_codec() -> tuple[Codec, Codec]:
    rules = [TopicRule(template="p/{stream}/{channel}", format="auto")]
    return Codec(rules, max_future_seconds=300.0, columns=True), Codec(rules, max_future_seconds=300.0)


def test_codec_columns_clean_array_is_one_block_holding_the_same_readings():
    columns, plain = _columns_codec()
    now = 1_700_000_000.0
    elements = [{"ts": now - 100 + k, "value": 0.5 * k} for k in range(50)]
    elements[3] = {"ts": int(now) - 97, "value": 7}  # ints are exact: same readings
    elements[4] = {"value": -1e300, "ts": now - 96}  # key order and huge floats do not matter
    elements[5] = {"ts": now - 95, "value": 2.5, "unit": "bar"}  # nor metadata fields
    payload = orjson.dumps(elements)
    block, rejects = columns.decode("p/s1/c1", payload, now)
    readings, plain_rejects = plain.decode("p/s1/c1", payload, now)
    assert type(block) is ReadingBlock and rejects == plain_rejects == []
    assert (block.stream, block.channel, len(block)) == ("s1", "c1", 50)
    assert block.timestamps.dtype == block.values.dtype == np.float64
    assert list(block) == readings and block == readings and block[3] == readings[3]
    assert [type(r.value) for r in block] == [float] * 50


@pytest.mark.parametrize(
    "odd",
    [
        {"ts": 1_700_000_000_000, "value": 3.0},  # milliseconds
        {"ts": 1_700_001_000.0, "value": 4.0},  # future
        {"ts": 1_699_999_999.0, "value": True},  # bool: malformed
        {"ts": 1_699_999_999.0, "value": "7.5"},  # numeric string
        {"ts": 1_699_999_999.0, "value": 2**60},  # an int beyond 2**53
        {"ts": "2023-11-14T22:13:00Z", "value": 1.0},  # ISO time
        {"ts": 1_699_999_999.0, "value": 1.0, "channel": "x"},  # its own channel
        {"ts": 1_699_999_999.0, "value": 1.0, "channel": None},
        {"value": 8.0},  # no timestamp: the receive time
        {"ts": None, "value": 9.0},
        {"ts": -(2**60), "value": 1.0},
        {"ts": 1_699_999_999.0, "value": None},
        {"ts": 1_699_999_999.0, "temp": 3.0},  # a json_multi element
        [1, 2],
        "text",
        None,
    ],
)
def test_codec_columns_fall_back_to_the_per_element_path_for_anything_uncommon(odd):
    columns, plain = _columns_codec()
    now = 1_700_000_000.0
    elements = [{"ts": now - 50 + k, "value": float(k)} for k in range(20)]
    elements.insert(7, odd)
    payload = json.dumps(elements).encode()
    got, got_rejects = columns.decode("p/s1/c1", payload, now)
    expected, expected_rejects = plain.decode("p/s1/c1", payload, now)
    assert list(got) == expected and got_rejects == expected_rejects
    assert type(got) is list  # anything uncommon: judged element by element, as without columns
    assert len(expected) + len(expected_rejects) >= 20


def test_codec_columns_nan_and_overflow_in_arrays_are_rejected_per_element():
    columns, plain = _columns_codec()
    now = 1_700_000_000.0
    payload = (
        b'[{"ts": 1699999990, "value": 1.0}, {"ts": 1699999991, "value": NaN}, '
        b'{"ts": 1699999992, "value": 1e999}, {"ts": 1699999993, "value": 2.0}]'
    )
    got, rejects = columns.decode("p/s1/c1", payload, now)
    assert list(got) == [Reading("s1", "c1", 1699999990.0, 1.0), Reading("s1", "c1", 1699999993.0, 2.0)]
    assert [r.reason for r in rejects] == ["non_finite", "non_finite"]
    assert (got, rejects) == plain.decode("p/s1/c1", payload, now)


def _as_blocks(feed: list[Reading], rng) -> list:
    """The same readings, as items a batch could hold: runs of one stream and channel become
    ReadingBlocks of random length (NaN values included: the pipeline must cope), the rest
    single Readings."""
    items: list = []
    i = 0
    while i < len(feed):
        j = i + 1
        while j < len(feed) and feed[j][:2] == feed[i][:2]:
            j += 1
        k = i
        while k < j:
            size = int(rng.integers(1, j - k + 1))
            if size >= 2 and rng.random() < 0.7:
                chunk = feed[k : k + size]
                items.append(
                    ReadingBlock(
                        chunk[0].stream,
                        chunk[0].channel,
                        np.array([r.timestamp for r in chunk]),
                        np.array([r.value for r in chunk]),
                    )
                )
            else:
                items += feed[k : k + size]
            k += size
        i = j
    return items


def _drive(one: Pipeline, many: Pipeline, items: list, rng, sizes: list[int]) -> tuple[list, list]:
    """Push `items` in batches of random `sizes`: reading by reading into `one`, as whole
    batches (blocks kept) into `many`; flush both after each batch. Returns their flushes."""
    got_one, got_many = [], []
    i = 0
    while i < len(items):
        batch = items[i : i + int(rng.choice(sizes))]
        for item in batch:
            for r in item if isinstance(item, (ReadingBlock, FrameBlock)) else [item]:
                one.push_reading(r)
        many.push_batch(batch)
        assert one.pending == many.pending
        got_one.append(one.flush())
        got_many.append(many.flush())
        i += len(batch)
    return got_one, got_many


def _bursty(seed: int, n_streams: int = 5, n: int = 8000) -> list[Reading]:
    """Streams taking turns in bursts (what batched messages look like), with trouble."""
    rng = np.random.default_rng(seed)
    t = {f"s{i}": 1000.0 + i for i in range(n_streams)}
    out: list[Reading] = []
    while len(out) < n:
        stream = f"s{int(rng.integers(0, n_streams))}"
        troubled = rng.random() < 0.3
        for _ in range(int(rng.integers(1, 120))):
            step, value = 1.0, float(rng.normal() * (8 if rng.random() < 0.03 else 1))
            if troubled:
                r = rng.random()
                step = 0.0 if r < 0.05 else -3.0 if r < 0.08 else 3.0 if r < 0.12 else 9.0 if r < 0.14 else 1.0
                if rng.random() < 0.03:
                    value = math.nan
            t[stream] += step
            out.append(Reading(stream, "v" if not troubled or rng.random() > 0.02 else "other", t[stream], value))
    return out


FILTERS = [FilterConfig(type="median", size=3), FilterConfig(type="hampel", size=5, n_sigmas=2.0)]


@pytest.mark.parametrize(
    "seed,window_size,stride,max_streams,filters",
    [
        (1, 5, 1, 5, []),
        pytest.param(2, 4, 2, 3, [], marks=pytest.mark.slow),
        pytest.param(3, 1, 1, 5, [], marks=pytest.mark.slow),
        pytest.param(4, 6, 3, 5, [], marks=pytest.mark.slow),
        pytest.param(5, 5, 1, 5, FILTERS, marks=pytest.mark.slow),
        pytest.param(6, 4, 2, 3, [FilterConfig(type="ema", alpha=0.3)], marks=pytest.mark.slow),
    ],
)
def test_pipeline_push_batch_with_blocks_matches_push_reading(seed, window_size, stride, max_streams, filters):
    cfg = StreamConfig(channels=["v"], period_seconds=1.0, max_gap_seconds=5, max_streams=max_streams)
    alarm = AlarmConfig(k=2, n=3, resolve_m=3)

    def model():
        m = _model()
        m.window_size, m.stride, m.filters = window_size, stride, list(filters)
        return m

    one = Pipeline(model(), cfg, alarm)
    many = Pipeline(model(), cfg, alarm)
    rng = np.random.default_rng(seed)
    items = _as_blocks(_bursty(seed), rng)
    assert sum(type(x) is ReadingBlock for x in items) > 50
    got_one, got_many = _drive(one, many, items, rng, [1, 3, 10, 40, 200])
    assert one.counters == many.counters
    c = one.counters
    assert c["accepted"] > 4000 and c["duplicate"] and c["stale_frames"] and c["unknown_channel"]
    assert _assert_same_results(got_one, got_many) > 1000
    assert any(a for _, a in got_one)
    for s in one.streams:
        a, b = one.streams[s], many.streams[s]
        assert (a.assembler._next, a.assembler._last_ts) == (b.assembler._next, b.assembler._last_ts)
        assert (a.windows._filled, a.windows._since, a.windows._pos) == (
            b.windows._filled,
            b.windows._since,
            b.windows._pos,
        )


def test_pipeline_blocks_for_a_multichannel_model_are_pushed_reading_by_reading():
    cfg = StreamConfig(channels=["a", "b"], period_seconds=1.0, max_gap_seconds=5, lateness_seconds=60)
    one = Pipeline(_model(("a", "b")), cfg, AlarmConfig())
    many = Pipeline(_model(("a", "b")), cfg, AlarmConfig())
    ts = 100.0 + np.arange(30)
    items = [ReadingBlock("s", c, ts[k : k + 10], np.sin(ts[k : k + 10])) for k in (0, 10, 20) for c in ("a", "b")]
    for item in items:
        for r in item:
            one.push_reading(r)
    many.push_batch(items)
    assert one.counters == many.counters and one.counters["accepted"] == 60
    assert _assert_same_results([one.flush()], [many.flush()]) > 0


def test_score_batch_runs_streams_and_last_by_stream():
    score = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    cs = np.zeros((5, 1))
    listed = ScoreBatch(["a", "a", "b", "a", "a"], [1.0, 2.0, 1.0, 3.0, 4.0], score, score, cs, list(cs), cs)
    assert listed.runs == [("a", 0, 2), ("b", 2, 3), ("a", 3, 5)]
    ran = ScoreBatch(None, np.array([1.0, 2.0, 1.0, 3.0, 4.0]), score, score, cs, cs, cs, runs=listed.runs)
    assert ran.streams == listed.streams == ["a", "a", "b", "a", "a"]
    assert ran.last_by_stream() == listed.last_by_stream() == {"a": 0.5, "b": 0.3}
    assert list(ran.last_by_stream()) == ["a", "b"]
    assert [(s.stream, s.timestamp, s.score) for s in ran] == [(s.stream, s.timestamp, s.score) for s in listed]
    assert type(ran[0].timestamp) is float and len(ran) == 5 and len(ScoreBatch.empty()) == 0


# ---------------------------------------------------------------- json_multi rows as FrameBlocks


def _multi_codec() -> tuple[Codec, Codec]:
    rules = [TopicRule(template="m/{stream}", format="auto", channel="")]
    return Codec(rules, max_future_seconds=300.0, columns=True), Codec(rules, max_future_seconds=300.0)


def test_codec_columns_json_multi_rows_are_one_frame_block_holding_the_same_readings():
    columns, plain = _multi_codec()
    now = 1_700_000_000.0
    rows = [{"flow": 1.0 + k, "ts": now - 60 + k, "pressure": -2.5 * k, "rpm": 1480 + k} for k in range(20)]
    payload = orjson.dumps(rows)
    block, rejects = columns.decode("m/p1", payload, now)
    readings, plain_rejects = plain.decode("m/p1", payload, now)
    assert type(block) is FrameBlock and rejects == plain_rejects == []
    assert block.channels == ("flow", "pressure", "rpm") and block.values.shape == (20, 3)
    assert list(block) == readings and len(block) == 60 and block[4] == readings[4] and block[-1] == readings[-1]
    assert block.rows(18) == readings[54:]


@pytest.mark.parametrize(
    "odd",
    [
        {"ts": 1_699_999_999.0, "flow": 1.0, "pressure": 2.0, "unit": "bar"},  # metadata
        {"ts": 1_699_999_999.0, "pressure": 2.0, "flow": 1.0},  # another key order
        {"ts": 1_699_999_999.0, "flow": 1.0},  # a channel missing
        {"ts": 1_699_999_999.0, "flow": True, "pressure": 2.0},
        {"ts": 1_699_999_999.0, "flow": None, "pressure": 2.0},
        {"ts": 1_699_999_999_000, "flow": 1.0, "pressure": 2.0},  # milliseconds
        {"ts": 1_700_001_000.0, "flow": 1.0, "pressure": 2.0},  # future
        {"ts": "2023-11-14T22:13:00Z", "flow": 1.0, "pressure": 2.0},
        {"ts": 1_699_999_999.0, "flow": 2**60, "pressure": 2.0},
        {"flow": 1.0, "pressure": 2.0, "ts2": 5.0},  # no timestamp
        {"ts": 1_699_999_999.0, "value": 1.0, "pressure": 2.0},  # a json element
        [1, 2],
    ],
)
def test_codec_columns_json_multi_falls_back_per_element_for_anything_uncommon(odd):
    columns, plain = _multi_codec()
    now = 1_700_000_000.0
    rows = [{"ts": now - 50 + k, "flow": float(k), "pressure": 0.5} for k in range(10)]
    rows.insert(4, odd)
    payload = json.dumps(rows).encode()
    got, got_rejects = columns.decode("m/p1", payload, now)
    expected, expected_rejects = plain.decode("m/p1", payload, now)
    assert type(got) is list and got == expected and got_rejects == expected_rejects


def test_codec_columns_json_multi_non_finite_is_rejected_per_channel():
    columns, plain = _multi_codec()
    payload = b'[{"ts": 1699999990, "a": 1.0, "b": NaN}, {"ts": 1699999991, "a": 2.0, "b": 3.0}]'
    got, rejects = columns.decode("m/p1", payload, 1_700_000_000.0)
    assert [r.reason for r in rejects] == ["non_finite"] and len(got) == 3
    assert (got, rejects) == plain.decode("m/p1", payload, 1_700_000_000.0)


def _multi_feed(seed: int, channels=("a", "b", "c"), n_streams: int = 4, n_items: int = 400) -> list:
    """Items of a multichannel feed as a batch could hold them: FrameBlocks of random
    length (channel order shuffled per block; sometimes a channel missing or an extra one;
    gaps, duplicates, NaN), and single Readings, streams taking turns."""
    rng = np.random.default_rng(seed)
    t = {f"s{i}": 1000.0 + i for i in range(n_streams)}
    items: list = []
    for _ in range(n_items):
        stream = f"s{int(rng.integers(0, n_streams))}"
        troubled = rng.random() < 0.25
        if rng.random() < 0.75:
            rows = int(rng.integers(1, 25))
            steps = np.ones(rows)
            if troubled:
                steps[rng.random(rows) < 0.1] = 0.0
                steps[rng.random(rows) < 0.05] = 4.0
                steps[rng.random(rows) < 0.03] = 9.0
            ts = t[stream] + np.cumsum(steps)
            t[stream] = float(ts[-1])
            chans = list(channels)
            if troubled and rng.random() < 0.2:
                chans = chans[:-1] if rng.random() < 0.5 else [*chans, "extra"]
            order = rng.permutation(len(chans))
            chans = tuple(chans[i] for i in order)
            values = rng.normal(size=(rows, len(chans))) * (6 if rng.random() < 0.05 else 1)
            if troubled and rng.random() < 0.3:
                values[int(rng.integers(0, rows)), 0] = math.nan
            items.append(FrameBlock(stream, chans, ts, values))
        else:
            t[stream] += 1.0
            for c in channels:
                items.append(Reading(stream, c, t[stream], float(rng.normal())))
    return items


@pytest.mark.parametrize(
    "seed,window_size,stride,max_streams,filters",
    [
        (1, 5, 1, 4, []),
        pytest.param(2, 4, 2, 3, [], marks=pytest.mark.slow),
        pytest.param(3, 1, 1, 4, [], marks=pytest.mark.slow),
        pytest.param(4, 5, 1, 4, FILTERS, marks=pytest.mark.slow),
        pytest.param(
            5,
            3,
            1,
            4,
            [FilterConfig(type="median", size=4), FilterConfig(type="ema", alpha=0.5)],
            marks=pytest.mark.slow,
        ),
    ],
)
def test_pipeline_push_batch_with_frame_blocks_matches_push_reading(seed, window_size, stride, max_streams, filters):
    channels = ("a", "b", "c")
    cfg = StreamConfig(channels=list(channels), period_seconds=1.0, max_gap_seconds=5, max_streams=max_streams)
    alarm = AlarmConfig(k=2, n=3, resolve_m=3)

    def model():
        m = _model(channels)
        m.window_size, m.stride, m.filters = window_size, stride, list(filters)
        return m

    one = Pipeline(model(), cfg, alarm)
    many = Pipeline(model(), cfg, alarm)
    frames = []
    run = many._push_frames
    many._push_frames = lambda *a: frames.append((run(*a), len(a[1]))) or frames[-1][0]
    rng = np.random.default_rng(seed)
    items = _multi_feed(seed)
    got_one, got_many = _drive(one, many, items, rng, [1, 4, 16, 60])
    assert one.counters == many.counters
    c = one.counters
    assert c["accepted"] > 4000 and c["duplicate"] and c["stale_frames"] and c["unknown_channel"]
    assert _assert_same_results(got_one, got_many) > 1000
    assert any(a for _, a in got_one)
    assert sum(done for done, _ in frames) > 1000  # most rows took the vectorized path
    for s in one.streams:
        a, b = one.streams[s], many.streams[s]
        assert (
            a.assembler._next,
            a.assembler._last_ts,
            a.assembler._hold,
            a.assembler._hold_time,
            a.assembler._last_bucket,
            a.assembler._max_ts,
        ) == (
            b.assembler._next,
            b.assembler._last_ts,
            b.assembler._hold,
            b.assembler._hold_time,
            b.assembler._last_bucket,
            b.assembler._max_ts,
        )
        assert (a.windows._filled, a.windows._since, a.windows._pos) == (
            b.windows._filled,
            b.windows._since,
            b.windows._pos,
        )
