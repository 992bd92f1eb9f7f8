"""Canary faults (monitor.core.canary): each kind does what its docstring says, deterministically."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.core import canary
from monitor.core.synthetic import pump

T, V, _ = pump(600, seed=2, steps_per_hour=0)
SPANS = [(T[100], T[164]), (T[300], T[364])]


def test_plan_is_deterministic_and_covers_every_kind():
    a = canary.plan(V, SPANS, per_kind=2, seed=7)
    b = canary.plan(V, SPANS, per_kind=2, seed=7)
    assert a == b
    assert len(a) == 12
    assert [c.kind for c in a[:6]] == list(canary.KINDS)
    assert {(c.start, c.end) for c in a} == {(float(s), float(e)) for s, e in SPANS}
    assert canary.plan(V, SPANS, per_kind=2, seed=8) != a  # the seed picks the channels


def test_plan_refuses_unknown_kinds_and_no_span():
    with pytest.raises(ValueError, match="unknown canary kind"):
        canary.plan(V, SPANS, kinds=["meteor"])
    with pytest.raises(ValueError, match="no span"):
        canary.plan(V, [])


@pytest.mark.parametrize("kind", canary.KINDS)
def test_each_kind_changes_only_its_channel_inside_its_span(kind):
    (c,) = [c for c in canary.plan(V, SPANS[:1], per_kind=1, seed=1) if c.kind == kind]
    out = canary.inject(c, T, V)
    inside = (c.start <= T) & (c.end > T)
    others = [j for j in range(V.shape[1]) if j != c.channel]
    assert np.array_equal(out[:, others], V[:, others])
    assert np.array_equal(out[~inside], V[~inside])
    assert not np.allclose(out[inside, c.channel], V[inside, c.channel])
    assert np.array_equal(canary.inject(c, T, V), out)  # seeded noise: the same every time


def test_the_kinds_have_their_documented_shapes():
    by = {c.kind: c for c in canary.plan(V, SPANS[:1], per_kind=1, seed=1)}
    inside = (SPANS[0][0] <= T) & (SPANS[0][1] > T)
    idx = np.flatnonzero(inside)

    def delta(kind):
        c = by[kind]
        return canary.inject(c, T, V)[:, c.channel] - V[:, c.channel], c

    d, c = delta("spike")
    assert np.flatnonzero(d).tolist() == [idx[0]] and d[idx[0]] == pytest.approx(canary.SPIKE_SIGMA * c.sigma)
    d, c = delta("step")
    assert np.allclose(d[idx], canary.STEP_SIGMA * c.sigma)
    d, c = delta("drift")
    assert d[idx[0]] == 0 and np.all(np.diff(d[idx]) > 0) and d[idx[-1]] < canary.DRIFT_SIGMA * c.sigma
    c = by["stuck"]
    assert np.all(canary.inject(c, T, V)[idx, c.channel] == V[idx[0], c.channel])
    c = by["broken_correlation"]
    assert {c.channel, c.partner} == set(canary.most_correlated_pair(V))  # on all the data planned on
    out = canary.inject(c, T, V)
    assert out[idx, c.channel].mean() == pytest.approx(V[idx, c.channel].mean())
    before = np.corrcoef(V[idx, c.channel], V[idx, c.partner])[0, 1]
    after = np.corrcoef(out[idx, c.channel], V[idx, c.partner])[0, 1]
    assert before > 0.5 and after == pytest.approx(-before)


def test_robust_sigma_falls_back_for_flat_data():
    assert canary.robust_sigma(np.full(50, 3.0)) == 1.0
    assert canary.robust_sigma(np.r_[np.zeros(90), np.ones(10)]) == pytest.approx(
        np.std(np.r_[np.zeros(90), np.ones(10)])
    )
    rng = np.random.default_rng(0)
    assert canary.robust_sigma(rng.normal(0, 2.0, 20000)) == pytest.approx(2.0, rel=0.05)
