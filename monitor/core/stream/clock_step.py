"""A sensor clock that steps back: told from late readings, and the stream re-synced.

A device whose clock is corrected backwards (NTP after a cold boot, a hand-set RTC, a
time-zone mistake fixed on the device) sends timestamps older than what the stream
already saw. Without this every later reading is refused as ``out_of_order`` (or
``late``) until data time catches up with the old clock: the stream is blind for as long
as the step. The fault matrix measured 500 of 500 readings dropped.

The rule (decision 0023): a stream whose last `readings` rejected readings in a row were
all more than `step_seconds` older than its newest reading has had its clock stepped
back. The stream is then re-synced: its assembler, filters and window buffer start
afresh (the windows would otherwise mix two clocks), and the held readings are pushed
again into the new state, so none of them is lost. The alarm and the calibrator keep
their per-stream state: an open episode goes on, and is judged by the scores after the
step. An ordinary late or reordered reading is never taken for a step: it is younger
than `step_seconds`, or an accepted reading comes between. Pure and deterministic, so
live, replay and backtest re-sync at the same reading.
"""

from __future__ import annotations

from typing import Any

DEFAULT_READINGS = 5  # rejected readings in a row that make a step
MIN_STEP_SECONDS = 60.0  # the default step: at least a minute ...
STEP_PERIODS = 10  # ... and at least ten periods


def step_seconds(configured: float | None, period_seconds: float) -> float:
    """`stream.clock_step_seconds` with its default filled in (0: detection off)."""
    if configured is not None:
        return float(configured)
    return max(MIN_STEP_SECONDS, STEP_PERIODS * period_seconds)


class ClockStepDetector:
    """Holds a stream's rejected readings that lie far behind it; says when they make a step.

    A held reading is not yet counted as dropped: `rejected` and `accepted` hand back the
    readings that turned out to be only late, with their reasons, for the caller to count
    (so a re-synced reading is never counted both as dropped and as accepted).
    """

    __slots__ = ("held", "readings", "step_seconds")

    def __init__(self, step_seconds: float, readings: int = DEFAULT_READINGS):
        if readings < 1:
            raise ValueError("a clock step needs at least one reading")
        self.step_seconds = float(step_seconds)
        self.readings = int(readings)
        self.held: list[tuple[Any, str]] = []  # (reading, the reason it was refused for)

    def rejected(self, newest: float, timestamp: float, item: Any, reason: str) -> tuple[bool, list[tuple[Any, str]]]:
        """A reading at `timestamp` was refused for `reason` while the stream's newest is `newest`.

        Returns (step, readings): (True, the held readings, this one last) when they make a
        step; else (False, the readings to count as dropped now: none while this one is held).
        """
        if timestamp < newest - self.step_seconds:
            self.held.append((item, reason))
            if len(self.held) >= self.readings:
                held, self.held = self.held, []
                return True, held
            return False, []
        cleared, self.held = self.held, []
        cleared.append((item, reason))
        return False, cleared

    def accepted(self) -> list[tuple[Any, str]]:
        """A reading was accepted: the held ones before it were only late (count them)."""
        cleared, self.held = self.held, []
        return cleared
