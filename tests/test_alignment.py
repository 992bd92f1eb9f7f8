"""Alignment rules (stream.alignment: bucket | nearest | interpolate) and period inference under jitter.

Timelines: one character per 0.1 s, grid period 1 s; letters are readings.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from monitor.core.config import AlarmConfig, ConfigError, StreamConfig, load_config
from monitor.core.pipeline import Pipeline
from monitor.core.scoring_model import ScoringModel
from monitor.core.stream.assembler import StreamAssembler
from monitor.core.stream.interpolate import InterpolatingAssembler
from monitor.core.stream.period import SNAP_TOLERANCE, IrregularTimestamps, infer_period_seconds, round_step
from monitor.core.stream.state import StreamState
from monitor.core.types import Reading


def make(alignment: str, n_channels: int = 1, max_gap: float = 5.0, lateness: float = 1.0):
    if alignment == "interpolate":
        return InterpolatingAssembler(n_channels, 1.0, max_gap, lateness)
    return StreamAssembler(n_channels, 1.0, max_gap, lateness, alignment)


def feed(asm, readings):
    """Push (t, channel, value); return (reasons, frames as (t, values, stale)), then flush."""
    reasons, out = [], []
    for t, ch, v in readings:
        reasons.append(asm.push(t, ch, v, out))
    asm.flush(out)
    return reasons, [(t, [round(x, 9) for x in v.tolist()], s) for t, v, s in out]


#  time     0         1         2         3         4
#           |---------|---------|---------|---------|
#  reading  a        b            c     d            e        values 10 t: a=0 b=9 c=22 d=28 e=41
#  bucket   [0       )[1       )[2       )[3       )[4        floor(t): b shares 0 with a, d shares 2 with c
#  nearest [0   )[1       )[2       )[3       )[4             floor(t + 1/2): one reading per bucket
#  interp.  0         1         2         3         4         line between the readings around each grid time
JITTERED = [(0.0, 0, 0.0), (0.9, 0, 9.0), (2.2, 0, 22.0), (2.8, 0, 28.0), (4.1, 0, 41.0)]
CASES = {
    # the second reading of a bucket is late once its frame is out; frames 1 and 3 hold
    "bucket": (
        [None, "late", None, "late", None],
        [(0.0, [0.0], False), (1.0, [0.0], False), (2.0, [22.0], False), (3.0, [22.0], False), (4.0, [41.0], False)],
    ),
    # each reading is on its own nearest grid time
    "nearest": (
        [None] * 5,
        [(0.0, [0.0], False), (1.0, [9.0], False), (2.0, [22.0], False), (3.0, [28.0], False), (4.0, [41.0], False)],
    ),
    # nothing late; the line through b and c gives 10 at 1 and 20 at 2
    "interpolate": (
        [None] * 5,
        [(0.0, [0.0], False), (1.0, [10.0], False), (2.0, [20.0], False), (3.0, [30.0], False), (4.0, [40.0], False)],
    ),
}


@pytest.mark.parametrize("alignment", list(CASES))
def test_jittered_readings_per_alignment(alignment):
    reasons, frames = feed(make(alignment), JITTERED)
    assert (reasons, frames) == CASES[alignment]


def test_nearest_forces_a_silent_channels_frame_half_a_period_earlier():
    #  time     0         1         2         3
    #           |---------|---------|---------|
    #  ch0      a         b         c    d            nearest buckets: a 0, b 1, c 2, d 3 (at 2.5)
    #  ch1      x                                     silent after x
    # frame 0 is final at b? no: ch1 has not reported in bucket >= 1. Forced once a reading
    # at >= end(0) + lateness = 0.5 + 1 = 1.5 arrives: c at 2.0 forces frames 0 and 1
    # (end(1) + 1 = 2.5 > 2.0 keeps frame 1 waiting); d at 2.5 forces frame 1.
    asm = make("nearest", n_channels=2)
    out: list = []
    for t, ch, v in [(0.0, 0, 1.0), (0.0, 1, 5.0), (1.0, 0, 2.0), (2.0, 0, 3.0)]:
        asm.push(t, ch, v, out)
    assert [(t, v.tolist()) for t, v, _ in out] == [(0.0, [1.0, 5.0])]
    asm.push(2.5, 0, 4.0, out)
    assert [(t, v.tolist()) for t, v, _ in out] == [(0.0, [1.0, 5.0]), (1.0, [2.0, 5.0])]


def test_interpolate_accepts_a_reading_older_than_a_forced_frame_as_the_next_anchor():
    #  time     0         1         2         3         4
    #           |---------|---------|---------|---------|
    #  ch0      a         b         c         d               values 0, 1, 2, 3
    #  ch1      x                        y         z          x=0 at 0, y=25 at 2.5, z=35 at 3.5
    # d at 3.0 >= (1 + 1) + lateness 1 forces frame 1 with ch1 holding x; y (older than
    # frame 1? no: 2.5 > 1) is accepted; frame 2 = line x..y at 2 -> 20; frame 3 y..z -> 30.
    asm = make("interpolate", n_channels=2)
    out: list = []
    reasons = [asm.push(t, ch, v, out) for t, ch, v in [(0.0, 0, 0.0), (0.0, 1, 0.0), (1.0, 0, 1.0)]]
    reasons += [asm.push(t, ch, v, out) for t, ch, v in [(2.0, 0, 2.0), (3.0, 0, 3.0)]]
    assert [(t, v.tolist()) for t, v, _ in out] == [(0.0, [0.0, 0.0]), (1.0, [1.0, 0.0])]
    reasons += [asm.push(t, ch, v, out) for t, ch, v in [(2.5, 1, 25.0), (3.5, 1, 35.0)]]
    assert reasons == [None] * 7
    assert [(t, [round(x, 9) for x in v.tolist()]) for t, v, _ in out[2:]] == [(2.0, [2.0, 20.0]), (3.0, [3.0, 30.0])]


def test_interpolate_older_than_an_emitted_frame_is_accepted_not_late():
    # ch1's reading at 0.5 arrives after frame 1 was forced out: accepted, anchor of frame 2
    asm = make("interpolate", n_channels=2, lateness=0.0)
    out: list = []
    seq = [(0.0, 0, 0.0), (0.0, 1, 0.0), (2.0, 0, 2.0), (0.5, 1, 5.0), (2.5, 1, 25.0), (3.0, 0, 3.0)]
    reasons = [asm.push(t, ch, v, out) for t, ch, v in seq]
    assert reasons == [None] * 6
    frames = {t: [round(x, 9) for x in v.tolist()] for t, v, _ in out}
    assert frames[1.0] == [1.0, 0.0]  # forced: ch1 held x
    assert frames[2.0] == [2.0, 20.0]  # line (0.5, 5) .. (2.5, 25) at 2


def test_duplicate_and_out_of_order_per_channel_under_interpolate():
    asm = make("interpolate")
    reasons, _ = feed(asm, [(5.0, 0, 1.0), (5.0, 0, 1.0), (4.5, 0, 1.0), (6.0, 0, 2.0)])
    assert reasons == [None, "duplicate", "out_of_order", None]


def test_interpolate_bridges_gaps_up_to_max_gap_plus_a_period_and_skips_longer_ones():
    #  time     0    1    2 ... 6    7          20   21
    #  reading  a    b                c          d    e          a..c: 6 s (<= 5 + 1): bridged
    #                                 c..d: 13 s > 6: stale once, then skip to d
    readings = [(0.0, 0, 0.0), (1.0, 0, 1.0), (7.0, 0, 7.0), (20.0, 0, 20.0), (21.0, 0, 21.0)]
    _, frames = feed(make("interpolate", max_gap=5.0), readings)
    assert [(t, s) for t, _, s in frames] == [(float(k), False) for k in range(8)] + [
        (8.0, True),
        (20.0, False),
        (21.0, False),
    ]
    assert frames[4][1] == [4.0]  # on the line b..c


def test_interpolate_nan_moves_the_clock_and_holds():
    #  a=1 at 0, NaN at 1.2, b=3 at 2.5: frame 1 is final at the NaN and holds a
    _, frames = feed(make("interpolate"), [(0.0, 0, 1.0), (1.2, 0, math.nan), (2.5, 0, 3.0)])
    assert frames[:2] == [(0.0, [1.0], False), (1.0, [1.0], False)]


def test_push_row_matches_push_under_every_alignment():
    rng = np.random.default_rng(3)
    t = np.sort(np.arange(200) + rng.uniform(-0.45, 0.45, 200))
    v = rng.normal(size=200)
    for alignment in CASES:
        a, b = make(alignment), make(alignment)
        out_a: list = []
        out_b: list = []
        for ti, vi in zip(t, v, strict=True):
            assert a.push(float(ti), 0, float(vi), out_a) == b.push_row(float(ti), np.array([vi]), out_b)
        assert [(x, y.tolist(), s) for x, y, s in out_a] == [(x, y.tolist(), s) for x, y, s in out_b]


class _Scorer:
    def errors(self, x):
        per_channel = (np.asarray(x, dtype=np.float32) ** 2).mean(axis=1)
        return per_channel.mean(axis=1), per_channel, x[:, -1, :]


def _model(alignment: str) -> ScoringModel:
    return ScoringModel("t", ["v"], 1.0, 5, 1, [], np.zeros(1), np.ones(1), 0.5, _Scorer(), alignment=alignment)


@pytest.mark.parametrize("alignment", ["nearest", "interpolate"])
def test_batched_path_agrees_with_per_reading_path(alignment):
    rng = np.random.default_rng(7)
    cfg = StreamConfig(channels=["v"], period_seconds=1.0, max_gap_seconds=5)
    one, many = Pipeline(_model(alignment), cfg, AlarmConfig()), Pipeline(_model(alignment), cfg, AlarmConfig())
    t = 1000.0
    got_one, got_many = [], []
    for _ in range(60):
        msg = []
        for _ in range(int(rng.integers(1, 40))):
            t += float(rng.choice([1.0, 1.0, 1.0, 0.6, 1.4, 0.0, -2.0, 9.0]))
            msg.append(Reading("s", "v", t, float(rng.normal())))
        for r in msg:
            one.push_reading(r)
        many.push_batch(msg)
        got_one.append(one.flush()[0])
        got_many.append(many.flush()[0])
    assert one.counters == many.counters and one.counters["windows_scored"] > 250
    assert [(list(s.times), list(s.score)) for s in got_one] == [(list(s.times), list(s.score)) for s in got_many]


def test_pipeline_takes_the_alignment_from_the_model():
    assert isinstance(StreamState(_model("interpolate"), 5.0, 1.0).assembler, InterpolatingAssembler)
    asm = StreamState(_model("nearest"), 5.0, 1.0).assembler
    assert isinstance(asm, StreamAssembler) and asm.bucket(0.5) == 1 and asm.bucket(0.49) == 0


def test_alignment_key_is_validated_by_name(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("stream: {alignment: linear}\n")
    with pytest.raises(ConfigError, match=r"^stream\.alignment: must be one of 'bucket', 'nearest', 'interpolate'"):
        load_config(path, environ={})
    with pytest.raises(ConfigError, match=r"stream\.alignment"):
        StreamConfig(alignment="linear")
    assert StreamConfig().alignment == "bucket"


# --------------------------------------------------------------------------- period


@pytest.mark.parametrize(
    "p,expected",
    [(60.02, 60.0), (59.1, 60.0), (0.995, 1.0), (7.31, 7.31), (7.3149, 7.31), (3590, 3600.0), (86.0, 86.0)],
)
def test_round_step_snaps_near_round_values_and_keeps_three_digits_otherwise(p, expected):
    assert round_step(p) == expected


def _jittered(rng, period, n, jitter, gaps, phase):
    k = np.arange(n, dtype=np.float64)
    keep = np.ones(n, dtype=bool)
    for start in rng.integers(0, n, gaps):
        keep[start : start + int(rng.integers(2, 20))] = False
    return (1_000_000 + k + phase + rng.uniform(-jitter, jitter, n))[keep] * period


def _error_bound(t: np.ndarray, period: float, jitter: float) -> float:
    """The estimator's proven relative error for `_jittered` data (module doc of period.py, point 2).

    Jitter of at most 0.2 keeps every gap-free step inside ``[0.6, 1.4] p`` and every step across
    a gap (two or more readings missing) above ``2.6 p``, so ``runs`` and ``steps`` below are exactly
    the estimator's regular runs and regular steps.
    """
    d = np.diff(t)
    runs, steps = 1 + int((d > 2 * period).sum()), int((d <= 2 * period).sum())
    return 2 * jitter * runs / steps if steps else math.inf


# Deterministic (derandomize): the examples are a fixed function of the test, so CI cannot
# flake on a draw nobody saw locally. The property itself is unchanged from run to run.
@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    period=st.sampled_from([0.1, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 300.0, 600.0, 3600.0]),
    jitter=st.floats(0.0, 0.2),
    gaps=st.integers(0, 15),
    phase=st.floats(0.0, 1.0),
    n=st.integers(150, 2000),
    seed=st.integers(0, 2**32 - 1),
)
@example(period=60.0, jitter=0.2, gaps=0, phase=0.5, n=150, seed=0)
@example(period=0.1, jitter=0.2, gaps=15, phase=0.076, n=2000, seed=2204713992)
def test_period_inference_recovers_round_periods_exactly_under_jitter_and_gaps(period, jitter, gaps, phase, n, seed):
    """Exact whenever the proven error bound is inside the snap tolerance (any other round step is >= 20 % away).

    The bound is not vacuous here: it fails, and the draw is skipped, only when the gaps leave
    short runs (e.g. 15 gaps cutting 150 readings down to 49 in 15 runs: their endpoint jitter
    no longer telescopes out; at +-29 % jitter such a feed came out as 0.102 s for 0.1 s).
    """
    t = _jittered(np.random.default_rng(seed), period, n, jitter, gaps, phase)
    assume(_error_bound(t, period, jitter) <= SNAP_TOLERANCE)
    assert infer_period_seconds([t]) == period


@settings(max_examples=100, deadline=None, derandomize=True)
@given(
    period=st.floats(0.01, 1e5),
    jitter=st.floats(0.0, 0.2),
    n=st.integers(150, 2000),
    seed=st.integers(0, 2**32 - 1),
)
def test_period_inference_is_within_snap_tolerance_of_any_period(period, jitter, n, seed):
    """Off by at most the estimator's bound plus the snap (or the rounding to 3 digits, which is less)."""
    t = _jittered(np.random.default_rng(seed), period, n, jitter, 3, 0.0)
    bound = _error_bound(t, period, jitter)
    estimate = infer_period_seconds([t])
    assert abs(estimate - period) / period <= (1 + bound) / (1 - SNAP_TOLERANCE) - 1 + 1e-12


def test_period_inference_at_30_percent_jitter_on_a_long_feed_is_exact():
    """The module doc's example: a 60 s feed with +-30 % jitter gets exactly 60 (here 2000 readings, 5 gaps)."""
    for seed in range(20):
        assert infer_period_seconds([_jittered(np.random.default_rng(seed), 60.0, 2000, 0.3, 5, 0.3)]) == 60.0


def test_period_inference_refuses_poisson_sampling_with_the_measured_figures():
    rng = np.random.default_rng(0)
    t = np.cumsum(rng.exponential(60.0, 2000))
    with pytest.raises(IrregularTimestamps, match=r"too irregular for a grid step: median step"):
        infer_period_seconds([t])
    assert infer_period_seconds([_jittered(rng, 60.0, 2000, 0.4, 5, 0.3)]) == 60.0  # +-40 % still passes
