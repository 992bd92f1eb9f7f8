"""The re-standardization folded into the shadow candidate's dense network
(`monitor.core.shadow_fold`): the same scores as the candidate scoring alone, up to float32
rounding, and the same alarm as the shadow that maps every window batch."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from monitor.core.config import AlarmConfig, StreamConfig
from monitor.core.model.bundle import load_bundle
from monitor.core.model.scorer import AutoencoderScorer
from monitor.core.pipeline import Pipeline
from monitor.core.scoring_model import ScoringModel
from monitor.core.shadow import Shadow, ShadowSettings
from monitor.core.shadow_fold import fold_dense
from monitor.core.synthetic import CHANNELS, Fault, pump
from tests.daemon_support import train_small_model

ALARM = AlarmConfig(k=3, n=5, resolve_m=10)
CFG = StreamConfig(channels=list(CHANNELS), period_seconds=1.0)
# float32 keeps 24 bits (relative 6e-8 a rounding); the reconstruction error is a difference
# of values of order 1 that agree to about 1e-1 to 1e-2, so the two orders of summation and
# the folded weights may differ by some 1e-6 relative (measured: at most 2e-6 over this feed,
# the shadow that maps the windows in float32 differed by 1.2e-6 from the candidate too)
RTOL = 1e-5


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> ScoringModel:
    return ScoringModel.from_bundle(load_bundle(train_small_model(tmp_path_factory.mktemp("m") / "models")))


def _candidate(model: ScoringModel, reduction: str) -> ScoringModel:
    """Another scaler and threshold (the windows need re-standardizing); with "channel_max"
    a copy of the network whose per-channel errors are scaled before their maximum."""
    cand = dataclasses.replace(
        model, version="cand", mean=model.mean + 0.3 * model.std, std=model.std * 1.2, threshold=model.threshold * 0.8
    )
    if reduction == "channel_max":
        assert model.scorer is not None
        scorer = AutoencoderScorer(copy.deepcopy(model.scorer.module))
        scorer.channel_scale = torch.tensor([0.5, 1.0, 2.0, 1.5, 0.8])
        cand = dataclasses.replace(cand, scorer=scorer, score_reduction="channel_max", threshold=model.threshold * 3)
    return cand


def _push(pipes: list[Pipeline], rows: int, streams: int, flush_at: int = 64) -> dict[int, list]:
    t, v, _ = pump(rows, seed=5, steps_per_hour=0, faults=[Fault(300, 420, "cavitation")])
    out: dict[int, list] = {i: [] for i in range(len(pipes))}
    for i in range(rows):
        for s in range(streams):
            for p in pipes:
                p.push_row(f"p{s}", float(t[i]), v[i])
        if pipes[0].pending >= flush_at:
            for k, p in enumerate(pipes):
                out[k].append(p.flush())
    for k, p in enumerate(pipes):
        out[k].append(p.flush())
    return out


@pytest.mark.parametrize("reduction", ["mean", "channel_max"])
def test_the_folded_shadow_scores_each_window_as_the_candidate_serving_alone(model, reduction):
    cand = _candidate(model, reduction)
    live, alone = Pipeline(model, CFG, ALARM), Pipeline(cand, CFG, ALARM)
    live.shadow = sh = Shadow(cand, model, ALARM, ShadowSettings(seconds=100.0, min_windows=10))
    got: list = []
    add = sh._hist.add  # the candidate's scores, as settled (in window order)
    sh._hist.add = lambda s: (got.append(np.array(s)), add(s))  # type: ignore[method-assign]
    served = _push([live, alone], 600, 3)[1]
    assert live.shadow is sh and live.shadow_error is None
    assert sh._uniform is not None and sh._uniform.folded is not None  # the folded network scored
    assert sh.hist.n == sh.windows  # settled
    want = np.concatenate([scores.score for scores, _ in served])
    assert len(want) == sh.windows == 3 * (600 - model.window_size + 1)
    np.testing.assert_allclose(np.concatenate(got), want, rtol=RTOL)
    firing = [a for _, alerts in served for a in alerts if a.state == "firing" and a.kind == "anomaly"]
    assert firing and sh.episodes == len(firing)


@pytest.mark.parametrize("reduction", ["mean", "channel_max"])
def test_the_folded_network_gives_the_candidate_scorer_outputs_in_the_candidate_units(model, reduction):
    cand = _candidate(model, reduction)
    rng = np.random.default_rng(4)
    live_x = rng.normal(0.0, 1.0, (1000, model.window_size, len(CHANNELS))).astype(np.float32)
    live_inv = 1.0 / model.std
    a, b = (1.0 / cand.std) / live_inv, (model.mean - cand.mean) / cand.std
    folded = fold_dense(cand.scorer, a, b)
    assert folded is not None and folded.chunk < 1000  # in pieces, as the scorer runs big batches
    cand_x = (live_x.astype(np.float64) * a + b).astype(np.float32)  # the candidate's own standardization
    assert cand.scorer is not None
    raw_c, pc_c, last_c = cand.scorer.errors(cand_x)
    raw, kept = folded.raw(live_x.copy())
    pc, last = folded.details(kept)
    np.testing.assert_allclose(raw, raw_c, rtol=RTOL)
    np.testing.assert_allclose(pc, pc_c, rtol=RTOL, atol=1e-7)
    np.testing.assert_allclose(last, last_c, rtol=RTOL, atol=1e-5)
    assert raw.dtype == pc.dtype == last.dtype == np.float32


def test_the_folded_shadow_alarms_as_the_shadow_that_maps_every_batch(model):
    cand = _candidate(model, "mean")
    fast, mapped = Pipeline(model, CFG, ALARM), Pipeline(model, CFG, ALARM)
    fast.shadow = Shadow(cand, model, ALARM, ShadowSettings(seconds=100.0, min_windows=10))
    mapped.shadow = ref = Shadow(cand, model, ALARM, ShadowSettings(seconds=100.0, min_windows=10))
    ref._fold_ok = False  # the in-place affine map and the candidate's scorer
    _push([fast, mapped], 700, 3, flush_at=50)
    sh = fast.shadow
    assert sh is not None and sh._uniform is not None and sh._uniform.folded is not None
    assert ref._uniform is not None and ref._uniform.folded is None
    assert sh.episodes == ref.episodes >= 1 and sh.windows == ref.windows
    assert sh.last_max == pytest.approx(ref.last_max, rel=RTOL)
    # a score within rounding of a bin edge may land in the neighbouring bin
    assert np.abs(sh.hist.counts - ref.hist.counts).sum() <= 2
    np.testing.assert_array_equal(sh.live_hist.counts, ref.live_hist.counts)
    for stream, st in ref.alarm.states.items():
        mine = sh.alarm.states[stream]
        assert (mine.episode and mine.episode.alert_id) == (st.episode and st.episode.alert_id)
        assert mine.last_resolved_at == st.last_resolved_at


def test_only_a_dense_network_on_the_cpu_without_context_is_folded(model):
    assert model.scorer is not None
    ones, zeros = np.ones(len(CHANNELS)), np.zeros(len(CHANNELS))
    assert fold_dense(model.scorer, ones, zeros) is not None
    with_context = copy.copy(model.scorer)
    with_context.n_scored = len(CHANNELS) - 2
    assert fold_dense(with_context, ones, zeros) is None
    assert fold_dense(object(), ones, zeros) is None  # no module: a stand-in scorer is left alone
