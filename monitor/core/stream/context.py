"""Long-context input channels computed from a frame's timestamp (``model.context``).

Each feature is a sin/cos pair of a phase in [0, 1): ``time_of_day`` is the UTC time of
day over one day, ``day_of_week`` the time since Monday 00:00 UTC over one week (1970-01-01
was a Thursday, so Monday 00:00 UTC is ``t = 4 days`` mod one week). A sin/cos pair turns
any fixed offset (a local time zone, a shift start) into a rotation the model can learn,
so no offset is configured. Timestamps are data: live, replay, backtest and training get
the same numbers from the same frame times, computed one frame at a time with `math` (no
vectorized path that could round differently).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

DAY_SECONDS = 86_400.0
WEEK_SECONDS = 7 * DAY_SECONDS
_MONDAY = 4 * DAY_SECONDS  # 1970-01-05 00:00 UTC
_TAU = 2.0 * math.pi


def context_width(names: Sequence[str]) -> int:
    """Input channels the features `names` add (two each)."""
    return 2 * len(names)


def context_row(t: float, names: Sequence[str]) -> list[float]:
    """[sin, cos] per feature of the frame time `t` (epoch seconds), in the order of `names`."""
    out: list[float] = []
    for name in names:
        if name == "time_of_day":
            phase = (t % DAY_SECONDS) / DAY_SECONDS
        elif name == "day_of_week":
            phase = ((t - _MONDAY) % WEEK_SECONDS) / WEEK_SECONDS
        else:
            raise ValueError(f"model.context: unknown feature {name!r}; use time_of_day or day_of_week")
        angle = _TAU * phase
        out.append(math.sin(angle))
        out.append(math.cos(angle))
    return out


def context_rows(times: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """`context_row` for every time of `times`: (n, context_width(names)) float64."""
    rows = [context_row(float(t), names) for t in np.asarray(times, dtype=np.float64).ravel()]
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), context_width(names))
