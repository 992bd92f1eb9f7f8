"""One stream's state in a pipeline: assembler, filters, scaler and window buffer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from monitor.core.config import StreamConfig
from monitor.core.stream.assembler import AssembledFrame, StreamAssembler
from monitor.core.stream.clock_step import ClockStepDetector
from monitor.core.stream.filters import FilterChain
from monitor.core.stream.interpolate import InterpolatingAssembler
from monitor.core.stream.windows import WindowBuffer
from monitor.core.types import FloatArray

if TYPE_CHECKING:
    from monitor.core.scoring_model import ScoringModel


class StreamState:
    """One stream's assembler, filters, scaler (its adapter's, or the group's) and window buffer."""

    __slots__ = ("assembler", "clock", "filters", "frames", "inv_std", "mean", "windows")

    def __init__(
        self,
        model: ScoringModel,
        max_gap_seconds: float,
        lateness_seconds: float,
        scaler: tuple[FloatArray, FloatArray] | None = None,
    ):
        n = len(model.channels)
        self.assembler: StreamAssembler | InterpolatingAssembler
        if model.alignment == "interpolate":
            self.assembler = InterpolatingAssembler(n, model.period_seconds, max_gap_seconds, lateness_seconds)
        else:
            self.assembler = StreamAssembler(
                n, model.period_seconds, max_gap_seconds, lateness_seconds, model.alignment
            )
        self.filters = FilterChain(model.filters)
        self.windows = WindowBuffer(model.window_size, model.input_channels, model.stride)
        self.frames: list[AssembledFrame] = []  # scratch list the assembler appends completed frames to
        self.clock: ClockStepDetector | None = None  # set by the pipeline (stream.clock_step_seconds > 0)
        # (mean, 1 / std) the stream's frames are standardized with
        self.mean, self.inv_std = scaler if scaler is not None else (model.mean, 1.0 / model.std)

    def filtered(self, values: FloatArray, stale: bool) -> FloatArray | None:
        """Run the filters over one frame; None (and a reset) for a stale frame."""
        if stale:
            self.filters.reset()
            self.windows.reset()
            return None
        return self.filters(values) if self.filters else values


def stream_timing(stream_cfg: StreamConfig, period_seconds: float) -> tuple[float, float]:
    """(max_gap_seconds, lateness_seconds) with the documented defaults filled in."""
    max_gap = stream_cfg.max_gap_seconds if stream_cfg.max_gap_seconds is not None else 5 * period_seconds
    lateness = stream_cfg.lateness_seconds if stream_cfg.lateness_seconds is not None else period_seconds
    return max_gap, lateness
