"""Alignment, windows and filters: the live path's frame and window geometry."""

import numpy as np
import pytest

from monitor.core.config import FilterConfig
from monitor.core.stream.assembler import StreamAssembler
from monitor.core.stream.filters import EMAFilter, FilterChain, HampelFilter, MedianFilter
from monitor.core.stream.windows import WindowBuffer, even_sample, window_ends, window_runs, windows_at


def feed(asm, readings):
    """Push (t, channel, value) readings; return [(reason, [(t, values, stale), ...]) per reading]."""
    log = []
    for t, ch, v in readings:
        out = []
        reason = asm.push(t, ch, v, out)
        log.append((reason, [(ft, fv.tolist(), fs) for ft, fv, fs in out]))
    return log


def test_frame_emitted_as_soon_as_every_channel_reported_its_bucket():
    #  t:    0.0   0.1  | 1.0   1.2
    #  ch0:  1          | 3
    #  ch1:        2    |       4
    #  frame 0 completes at 0.1, frame 1 at 1.2
    asm = StreamAssembler(2, period_seconds=1.0, max_gap_seconds=5.0, lateness_seconds=1.0)
    log = feed(asm, [(0.0, 0, 1.0), (0.1, 1, 2.0), (1.0, 0, 3.0), (1.2, 1, 4.0)])
    assert log == [
        (None, []),
        (None, [(0.0, [1.0, 2.0], False)]),
        (None, []),
        (None, [(1.0, [3.0, 4.0], False)]),
    ]


def test_silent_channel_holds_last_value_until_lateness_passes():
    #  bucket:  0     1     2     3     4
    #  ch0:     1     3     5     6     7
    #  ch1:     2     4     .     .     8     <- silent in buckets 2 and 3
    # frame 2 is forced out once a reading at >= 2 + 1 + lateness(1) = 4.0 arrives
    asm = StreamAssembler(2, 1.0, max_gap_seconds=5.0, lateness_seconds=1.0)
    feed(asm, [(0.0, 0, 1.0), (0.1, 1, 2.0), (1.0, 0, 3.0), (1.1, 1, 4.0)])
    log = feed(asm, [(2.0, 0, 5.0), (3.0, 0, 6.0), (4.5, 0, 7.0), (4.6, 1, 8.0)])
    assert log[0] == (None, []) and log[1] == (None, [])
    assert log[2] == (None, [(2.0, [5.0, 4.0], False)])
    assert log[3] == (None, [(3.0, [6.0, 4.0], False), (4.0, [7.0, 8.0], False)])


def test_value_older_than_max_gap_makes_frame_stale():
    asm = StreamAssembler(2, 1.0, max_gap_seconds=2.0, lateness_seconds=0.0)
    feed(asm, [(0.0, 0, 1.0), (0.0, 1, 2.0)])
    log = feed(asm, [(1.0, 0, 1.0), (2.0, 0, 1.0), (3.0, 0, 1.0), (4.0, 0, 1.0)])
    frames = [f for _, fr in log for f in fr]
    # ch1 last reported at t=0: frames 1 and 2 are fresh (age <= 2 s), frame 3 is stale
    assert [(t, s) for t, _, s in frames] == [(1.0, False), (2.0, False), (3.0, True)]


def test_duplicate_out_of_order_and_late_readings_are_rejected_by_reason():
    asm = StreamAssembler(1, 1.0, 5.0, 0.0)
    log = feed(asm, [(5.0, 0, 1.0), (5.0, 0, 1.0), (4.5, 0, 1.0), (6.0, 0, 2.0)])
    assert [r for r, _ in log] == [None, "duplicate", "out_of_order", None]
    asm2 = StreamAssembler(2, 1.0, 5.0, 0.0)
    # ch0 at bucket 3 forces frames 0..2 out (lateness 0); ch1's reading for bucket 1 is late
    log = feed(asm2, [(0.0, 0, 1.0), (0.0, 1, 1.0), (3.0, 0, 1.0), (1.5, 1, 1.0)])
    assert [r for r, _ in log] == [None, None, None, "late"]


def test_row_gap_shorter_than_max_gap_is_filled_and_long_gap_skipped():
    #  rows at t = 0 1 3 | 100 101 ...   (gap of 97 s > max_gap 5 s)
    asm = StreamAssembler(1, 1.0, max_gap_seconds=5.0, lateness_seconds=1.0)
    out = []
    for t, v in [(0, 1.0), (1, 2.0), (3, 3.0), (100, 4.0), (101, 5.0)]:
        assert asm.push_row(float(t), np.array([v]), out) is None
    times = [t for t, _, _ in out]
    stale = [s for _, _, s in out]
    # frame 2 holds the value of t=1; frames 4..8 hold t=3's value (age <= 5 s);
    # frame 9 is the one stale frame of the gap, then the next data at 100
    assert times == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 100.0, 101.0]
    assert out[2][1].tolist() == [2.0]
    assert stale == [False] * 9 + [True, False, False]


def test_nan_cell_keeps_the_held_value():
    asm = StreamAssembler(2, 1.0, 5.0, 1.0)
    out = []
    asm.push_row(0.0, np.array([1.0, 2.0]), out)
    asm.push_row(1.0, np.array([np.nan, 3.0]), out)
    assert [f[1].tolist() for f in out] == [[1.0, 2.0], [1.0, 3.0]]


def test_flush_emits_frames_waiting_for_a_silent_channel():
    asm = StreamAssembler(2, 1.0, 5.0, 10.0)
    out = []
    asm.push(0.0, 0, 1.0, out)
    asm.push(0.0, 1, 1.0, out)
    asm.push(1.0, 0, 2.0, out)
    assert len(out) == 1
    asm.flush(out)
    assert [f[0] for f in out] == [0.0, 1.0]


@pytest.mark.parametrize("window_size,stride", [(3, 1), (3, 2), (4, 3), (2, 5)])
def test_window_buffer_matches_batch_windows(window_size, stride):
    #  frames  0 1 2 3 4 5 [6 stale] 7 8 9 10 11 12 13 ...
    #  W=3,s=2 [0 1 2]  [2 3 4]   reset  [7 8 9] [9 10 11] ...
    rng = np.random.default_rng(1)
    values = rng.normal(size=(40, 2)).astype(np.float32)
    stale = np.zeros(40, dtype=bool)
    stale[[6, 20, 21, 33]] = True
    buf = WindowBuffer(window_size, 2, stride)
    live, live_ends = [], []
    for i, (v, s) in enumerate(zip(values, stale, strict=True)):
        if s:
            buf.reset()
            continue
        w = buf.push(v)
        if w is not None:
            live.append(w.copy())
            live_ends.append(i)
    batch, ends = window_runs(values, stale, window_size, stride)
    assert len(live) == len(batch) > 0
    np.testing.assert_array_equal(np.stack(live), batch)
    assert list(ends) == live_ends
    for w, e in zip(batch, ends, strict=True):  # each window is the frames ending at its end index, oldest first
        np.testing.assert_array_equal(w, values[e - window_size + 1 : e + 1])
    # training counts and samples windows by their end frames before cutting any (a month of
    # them would not fit): the same windows as the live buffer's, at the same ends
    only_ends = window_ends(stale, window_size, stride)
    assert list(only_ends) == live_ends
    np.testing.assert_array_equal(windows_at(values, only_ends, window_size), np.stack(live))
    pick = only_ends[[0, len(only_ends) // 2, -1]]
    np.testing.assert_array_equal(windows_at(values, pick, window_size), np.stack(live)[[0, len(live) // 2, -1]])


def test_even_sample_spreads_over_the_whole_range():
    got = even_sample(1000, 11)
    assert (got[0], got[-1], len(got)) == (0, 999, 11)
    assert set(np.diff(got).tolist()) <= {99, 100}  # evenly spread, not the first 11
    assert list(even_sample(5, 10)) == [0, 1, 2, 3, 4]  # under the bound: all
    assert list(even_sample(5, 0)) == [0, 1, 2, 3, 4]  # 0: no bound


def test_window_buffer_first_window_and_stride():
    #  push 1..7, W=3, s=2:  [1 2 3] at 3, [3 4 5] at 5, [5 6 7] at 7
    buf = WindowBuffer(3, 1, stride=2)
    got = {}
    for v in range(1, 8):
        w = buf.push(np.array([v]))
        if w is not None:
            got[v] = w[:, 0].tolist()
    assert got == {3: [1, 2, 3], 5: [3, 4, 5], 7: [5, 6, 7]}


def test_median_filter_removes_a_single_spike_and_follows_a_step():
    f = MedianFilter(3)
    xs = [0, 0, 10, 0, 0, 5, 5, 5]
    ys = [float(f(np.array([x], dtype=float))[0]) for x in xs]
    assert ys[2] == 0.0  # spike of one frame removed
    assert ys[-1] == 5.0  # a lasting step goes through


def test_ema_filter_matches_the_recurrence():
    f = EMAFilter(0.5)
    ys = [float(f(np.array([x], dtype=float))[0]) for x in [4.0, 0.0, 0.0]]
    assert ys == [4.0, 2.0, 1.0]


def test_hampel_filter_replaces_outlier_keeps_normal_values():
    f = HampelFilter(5, 3.0)
    xs = [1.0, 1.1, 0.9, 1.0, 1.05, 50.0, 1.0]
    ys = [float(f(np.array([x]))[0]) for x in xs]
    assert ys[:5] == xs[:5]
    assert ys[5] != 50.0 and abs(ys[5] - 1.0) < 0.1
    assert ys[6] == 1.0


def test_filter_chain_reset_forgets_history():
    chain = FilterChain([FilterConfig(type="ema", alpha=0.5)])
    chain(np.array([10.0]))
    chain.reset()
    assert chain(np.array([2.0]))[0] == 2.0
    assert not FilterChain([])


@pytest.mark.parametrize(
    "make",
    [
        lambda: MedianFilter(1),
        lambda: MedianFilter(3),
        lambda: MedianFilter(4),
        lambda: MedianFilter(7),
        lambda: EMAFilter(0.3),
        lambda: HampelFilter(5, 2.0),
        lambda: HampelFilter(4, 1.0),
        lambda: FilterChain(
            [
                FilterConfig(type="median", size=3),
                FilterConfig(type="hampel", size=5, n_sigmas=2.0),
                FilterConfig(type="ema", alpha=0.5),
            ]
        ),
    ],
    ids=["median1", "median3", "median4", "median7", "ema", "hampel5", "hampel4", "chain"],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_filter_many_equals_frame_by_frame(make, seed):
    """The vectorized `many` gives bit-identical outputs and leaves the same history,
    whatever the chunking (chunks shorter and longer than the window, after resets)."""
    rng = np.random.default_rng(seed)
    one, many = make(), make()
    frames = rng.normal(size=(600, 3))
    frames[rng.random(600) < 0.05] *= 20  # spikes for Hampel
    frames[rng.random(600) < 0.2, 1] = 1.0  # ties for the medians
    i = 0
    while i < len(frames):
        chunk = frames[i : i + int(rng.choice([1, 2, 3, 5, 8, 40]))]
        expected = np.array([one(f) for f in chunk])
        got = many.many(chunk)
        np.testing.assert_array_equal(got, expected)
        if rng.random() < 0.05:
            one.reset()
            many.reset()
        i += len(chunk)
    nxt = rng.normal(size=3)
    np.testing.assert_array_equal(one(nxt), many(nxt))  # the same history afterwards
