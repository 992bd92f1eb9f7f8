"""What the pipeline needs from a model bundle: channels, geometry, scaler, threshold, scorer.

`ScoringModel.from_bundle` is the one place a loaded bundle becomes something that scores;
a geometry-only model (`scorer=None`) serves training and tests that only cut frames and
windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from monitor.core.config import FilterConfig
from monitor.core.interfaces import Scorer
from monitor.core.model.latent import LatentModel
from monitor.core.model.manifest import Manifest
from monitor.core.sensor_health import SensorLimits
from monitor.core.stream.context import context_width
from monitor.core.types import FloatArray

if TYPE_CHECKING:
    from monitor.core.model.adapters import StreamAdapters
    from monitor.core.model.bundle import Bundle


@dataclass
class ScoringModel:
    """Everything the pipeline needs from a model bundle."""

    version: str
    channels: list[str]
    period_seconds: float
    window_size: int
    stride: int
    filters: list[FilterConfig]
    mean: FloatArray
    std: FloatArray
    threshold: float
    scorer: Scorer | None  # None: frame and window geometry only, cannot score
    manifest: Manifest | None = None  # None for geometry-only models (training, tests)
    alignment: str = "bucket"  # StreamConfig.alignment the bundle was trained with
    context: list[str] = field(default_factory=list)  # ModelConfig.context: extra input channels
    adapters: StreamAdapters | None = None  # per-stream scaler and threshold; None: the group's for all
    sensor_limits: SensorLimits | None = None  # learned sensor limits of the bundle (None: none)
    latent: LatentModel | None = None  # code size, map and operating states (None: older bundles)
    score_reduction: str = "mean"  # how per-channel errors make the raw error ("mean" or "channel_max")

    @property
    def input_channels(self) -> int:
        """Columns of a window: the channels, then the context features' channels."""
        return len(self.channels) + context_width(self.context)

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> ScoringModel:
        # torch (~2 s to import) only when a model is loaded: replay --to-broker and the
        # parser of every command import this module without scoring anything
        from monitor.core.model.scorer import AutoencoderScorer  # noqa: PLC0415

        m = bundle.manifest
        return cls(
            version=bundle.version,
            channels=list(m.channels),
            period_seconds=m.period_seconds,
            window_size=m.window_size,
            stride=m.stride,
            filters=[FilterConfig(**f) for f in m.filters],
            mean=np.asarray(m.scaler_mean, dtype=np.float64),
            std=np.asarray(m.scaler_std, dtype=np.float64),
            threshold=m.threshold,
            scorer=AutoencoderScorer(bundle.module),
            manifest=m,
            alignment=m.alignment,
            context=list(m.context),
            adapters=bundle.adapters,
            sensor_limits=bundle.sensor_limits,
            latent=m.latent_model,
            score_reduction=str(m.architecture.get("score_reduction", "mean")),
        )

    def offline_threshold(self, stream: str) -> float:
        """`stream`'s offline threshold: its adapter's, else the group's (no adapter, or a
        stream the bundle never saw). What `Pipeline.threshold_for` decides by, and the
        prior of an online per-stream calibration."""
        adapters = self.adapters
        if adapters is not None:
            i = adapters.index.get(stream)
            if i is not None:
                return float(adapters.threshold[i])
        return self.threshold

    def compatible_with(self, other: ScoringModel) -> bool:
        """Same frame and window geometry: stream state can carry over a swap."""
        return (
            self.channels == other.channels
            and self.period_seconds == other.period_seconds
            and self.window_size == other.window_size
            and self.stride == other.stride
            and self.filters == other.filters
            and self.alignment == other.alignment
            and self.context == other.context
        )
