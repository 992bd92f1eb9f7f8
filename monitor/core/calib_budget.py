"""The alert budget of `monitor.core.calibrate.OnlineCalibrator`: a stream over its budget
of alert onsets per week has its threshold raised by `BUDGET_STEP` per over-budget onset, up
to `BUDGET_MAX`; the multiplier decays toward 1 with a one-week time constant.

A mixin: `OnlineCalibrator` owns the state declared here and sets it in its ``__init__``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from monitor.core.calib_stream import BUDGET_MAX, BUDGET_STEP, WEEK_SECONDS, _Stream
from monitor.core.types import FloatArray


class AlertBudget:
    """Budget multipliers per stream (see the module docstring)."""

    budget: float | None
    streams: dict[str, _Stream]

    def _apply_budget(
        self,
        score: FloatArray,
        segs: list[tuple[_Stream, int, int, int, bool]],
        times: Sequence[float] | FloatArray,
    ) -> FloatArray:
        """Divide each segment's scores by its stream's multiplier at that chunk; count
        onsets and move the multiplier at chunk ends (batch boundaries do not matter)."""
        budget = self.budget
        assert budget is not None  # only called with a budget
        starts = np.fromiter((seg[1] for seg in segs), dtype=np.intp, count=len(segs))
        peaks = np.maximum.reduceat(score, starts).tolist()
        mults: list[float] = []
        for j, (st, a, m, _, end) in enumerate(segs):
            mults.append(st.mult)
            if peaks[j] >= st.mult:
                st.chunk_hot = True
            if not end:
                continue
            t = float(times[a + m - 1])
            dt = 0.0 if math.isnan(st.rate_at) else max(t - st.rate_at, 0.0)
            keep = math.exp(-dt / WEEK_SECONDS)
            onset = st.chunk_hot and not st.hot_prev
            st.rate = st.rate * keep + (1.0 if onset else 0.0)
            st.rate_at = t
            st.mult = 1.0 + (st.mult - 1.0) * keep
            if onset and st.rate > budget:
                st.mult = min(BUDGET_MAX, st.mult * BUDGET_STEP)
            st.hot_prev, st.chunk_hot = st.chunk_hot, False
        out: FloatArray = score / (mults[0] if len(segs) == 1 else np.repeat(mults, [seg[2] for seg in segs]))
        return out

    def budget_use(self, key: str) -> float | None:
        """Onsets in the last week (one-week memory) over the budget; None: no budget."""
        st = self.streams.get(key)
        if st is None or self.budget is None:
            return None
        return st.rate / self.budget
