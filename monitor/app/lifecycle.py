"""Model lifecycle: notice a new `current` bundle, verify, load, test-score, hand over.

The watcher runs off the scoring thread; it only *prepares* a `ScoringModel`. The
scoring thread swaps it in between batches, so no reading is dropped by a swap. A bundle
that fails any check is refused, counted and logged once, and the old model keeps serving
until the pointer moves again.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monitor.core.model.bundle import CURRENT, BundleError, current_bundle_path, load_bundle
from monitor.core.scoring_model import ScoringModel

log = logging.getLogger(__name__)


class ModelRejected(Exception):
    """A bundle loaded but failed the checks before serving."""


def check_channels(model: ScoringModel, required_channels: list[str] | None) -> None:
    """Refuse a model trained on other channels (or another order) than ``stream.channels``
    names; None or [] (the config names none): any. The daemon, backtest and replay share it."""
    if required_channels and list(required_channels) != list(model.channels):
        raise ModelRejected(
            f"model {model.version} was trained on channels {list(model.channels)}, but stream.channels "
            f"is {list(required_channels)}: train a model on these channels, or give the one that matches"
        )


def smoke_test(model: ScoringModel, required_channels: list[str] | None = None) -> None:
    """Score a few windows; refuse a model whose outputs are not finite or whose channels differ."""
    check_channels(model, required_channels)
    if not (np.all(np.isfinite(model.mean)) and np.all(np.isfinite(model.std)) and np.all(model.std > 0)):
        raise ModelRejected("scaler statistics are not finite and positive")
    if not (np.isfinite(model.threshold) and model.threshold > 0):
        raise ModelRejected(f"threshold {model.threshold!r} is not a positive number")
    if model.scorer is None:
        raise ModelRejected("model has no scorer (geometry only)")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, model.window_size, len(model.channels))).astype(np.float32)
    raw, per_channel, recon = model.scorer.errors(x)
    if not (np.all(np.isfinite(raw)) and np.all(np.isfinite(per_channel)) and np.all(np.isfinite(recon))):
        raise ModelRejected("model produces non-finite scores on test windows")


def _signature(path: Path) -> tuple:
    """What identifies a bundle's content cheaply: resolved path and file mtimes."""
    try:
        return (str(path.resolve()), *(os.stat(path / f).st_mtime_ns for f in ("manifest.json",)))
    except OSError:
        return (str(path),)


@dataclass
class LoadResult:
    model: ScoringModel | None
    error: str | None
    seconds: float


class ModelWatcher:
    """Polls a models directory's `current` pointer and prepares verified models."""

    def __init__(
        self,
        models_dir: str | Path,
        *,
        required_channels: list[str] | None = None,
        on_result: Callable[[LoadResult], None] | None = None,
        pointer: str = CURRENT,
    ):
        self.models_dir = Path(models_dir)
        self.pointer = pointer  # `current`, or `shadow` (a candidate scored beside it)
        self.required_channels = required_channels
        self.on_result = on_result
        self._seen: tuple | None = None
        self.last_error: str | None = None
        self.verified_once = False  # has this watcher ever handed over a model (one may be serving)?

    def load(self, path: Path) -> LoadResult:
        started = time.monotonic()
        try:
            model = ScoringModel.from_bundle(load_bundle(path))
            smoke_test(model, self.required_channels)
        except (BundleError, ModelRejected, ValueError, KeyError, TypeError, OSError) as exc:
            result = LoadResult(None, f"{path}: {exc}", time.monotonic() - started)
        else:
            result = LoadResult(model, None, time.monotonic() - started)
        if self.on_result:
            self.on_result(result)
        return result

    def poll(self, force: bool = False) -> LoadResult | None:
        """Check the pointer; returns a result only when it points somewhere new (or `force`)."""
        path = current_bundle_path(self.models_dir, self.pointer)
        if path is None:
            if self._seen != ("<none>",):
                self._seen = ("<none>",)
                if self.pointer == CURRENT:
                    self.last_error = f"no model bundle in {self.models_dir} (run `monitor train`)"
                    log.warning("%s", self.last_error)
            return None
        sig = _signature(path)
        if sig == self._seen and not force:
            return None
        self._seen = sig
        result = self.load(path)
        if result.error:
            self.last_error = result.error
            if self.verified_once:
                log.error("model bundle refused, the previous model keeps serving: %s", result.error)
            else:
                log.error("model bundle refused; no model is serving yet (not ready): %s", result.error)
        else:
            assert result.model is not None  # a result without an error carries its model
            self.last_error = None
            self.verified_once = True
            log.info("model %s verified in %.3fs", result.model.version, result.seconds)
        return result
