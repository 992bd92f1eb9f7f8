"""The one driver of the fleet: readings in, per-group scores and alerts out.

The daemon (`monitor.app.service`), ``replay --offline``, ``backtest`` and the retrain
gate all go through a `Runner`, so they take the same decisions by construction: items
are pushed in arrival order, a flush scores every due window with one forward pass per
group, and the results go to the callbacks in the order they were produced (per group:
its scores, then its alerts). Batching changes nothing but speed: each stream's alarm
sees its scores in time order whatever the batch boundaries are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from monitor.core.fleet import Fleet, GroupResult
from monitor.core.scoring_model import ScoringModel
from monitor.core.types import Alert, BatchItem, FloatArray

__all__ = ["Runner"]


class Runner:
    """Drives a `Fleet`; `on_scores` gets each non-empty `GroupResult`, `on_alert` each alert."""

    def __init__(
        self,
        fleet: Fleet,
        *,
        on_scores: Callable[[GroupResult], None] | None = None,
        on_alert: Callable[[Alert], None] | None = None,
    ):
        self.fleet = fleet
        self.on_scores = on_scores
        self.on_alert = on_alert
        self.windows = 0  # windows scored so far
        self.alerts = 0  # alert state changes so far

    def feed(self, items: Sequence[BatchItem]) -> list[GroupResult]:
        """Push one batch (arrival order) and score it: one forward pass per group."""
        if items:
            self.fleet.push_batch(items)
        return self.flush()

    def run(self, batches: Iterable[Sequence[BatchItem]]) -> None:
        """`feed` every batch, in order (a recording, a file)."""
        for batch in batches:
            self.feed(batch)

    def push_row(self, stream: str, timestamp: float, values: FloatArray) -> str | None:
        """A wide row (backtest); scored at the next `flush`. The drop reason or None."""
        return self.fleet.push_row(stream, timestamp, values)

    @property
    def pending(self) -> int:
        """Windows due and not yet scored."""
        return self.fleet.pending

    def flush(self) -> list[GroupResult]:
        return self._emit(self.fleet.flush())

    def finish(self) -> list[GroupResult]:
        """End of data (a file or a recording): emit waiting frames, score what is due."""
        self.fleet.end_of_data()
        return self.flush()

    def tick(self, now: float) -> list[GroupResult]:
        """The sensor stale check at `now` (wall clock in the daemon); its alerts go to `on_alert`."""
        return self._emit(self.fleet.sensor_tick(now))

    def install(self, group: str, model: ScoringModel) -> GroupResult:
        """Swap `model` into `group`; the windows the old model still had are emitted."""
        result = self.fleet.install(group, model)
        self._emit([result])
        return result

    def _emit(self, results: list[GroupResult]) -> list[GroupResult]:
        on_scores, on_alert = self.on_scores, self.on_alert
        for result in results:
            self.windows += len(result.scores)
            self.alerts += len(result.alerts)
            if on_scores is not None and len(result.scores):
                on_scores(result)
            if on_alert is not None:
                for alert in result.alerts:
                    on_alert(alert)
        return results
