"""Latent features in the commands: fitting a bundle's latent facts, the maps, code columns.

The pure parts (pooling, PCA, k-means, states) are `monitor.core.model.latent`; this module
fits them at training time, draws ``latent.png`` (training report and backtest) and
writes codes beside scores (``backtest --latent``, ``replay --offline --latent``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from monitor.app.plots import png_bytes, pyplot
from monitor.core.config import ModelConfig
from monitor.core.model.latent import LatentModel, fit_projection, fit_states
from monitor.core.types import ScoreBatch


def fit_latent(codes: np.ndarray, windows: np.ndarray, mc: ModelConfig, first_channel: str) -> LatentModel:
    """The map and operating states of training `codes` (windows: the standardized training
    windows they came from; their first channel's mean level names the states)."""
    level = windows[:, :, 0].mean(axis=1) if len(windows) else np.zeros(0)
    states = fit_states(codes, level, mc.states, mc.seed, first_channel)
    pooling = "time_mean" if mc.architecture == "conv1d" else "none"
    return LatentModel(int(codes.shape[1]), pooling, fit_projection(codes), states)


def latent_summary(latent: LatentModel) -> dict[str, Any]:
    """What the training report says of the codes."""
    s = latent.states
    return {
        "code_size": latent.code_size,
        "map": latent.projection.method,
        "explained_variance": latent.projection.explained,
        "states": None if s is None else {"k": s.k, "rule": s.rule, "silhouette": s.silhouette, "names": s.names},
    }


def latent_line(latent: LatentModel) -> str:
    """One log line: code size, the map's explained variance, the states."""
    p, s = latent.projection, latent.states
    head = f"latent: code_size {latent.code_size}, map {p.method} explains {100 * p.explained:.1f} % of the variance"
    if s is None:
        return head + "; operating states off"
    how = f"silhouette {s.silhouette:.3f}" if s.rule == "silhouette" and s.silhouette is not None else "model.states"
    return head + f"; {s.k} operating state(s) ({how}): " + ", ".join(s.names)


def centroid_codes(latent: LatentModel) -> np.ndarray | None:
    """The state centroids in code units (k, code_size); None without states."""
    s = latent.states
    return None if s is None else s.centroids * s.scale_std + s.scale_mean


def _draw_states(ax: Any, latent: LatentModel) -> None:
    cents = centroid_codes(latent)
    if cents is None or latent.states is None:
        return
    xy = latent.projection(cents)
    ax.scatter(xy[:, 0], xy[:, 1], marker="*", s=180, c="gold", edgecolors="black", zorder=4, label="states")
    for i, (x, y) in enumerate(xy):
        ax.annotate(f"{i + 1}: {latent.states.names[i]}", (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")


def _axes_labels(ax: Any, latent: LatentModel) -> None:
    p = latent.projection
    if p.method == "code":
        ax.set_xlabel("code_0")
        ax.set_ylabel("code_1" if latent.code_size > 1 else "(none)")
    else:
        ax.set_xlabel("principal axis 1")
        ax.set_ylabel("principal axis 2")


def latent_map_png(latent: LatentModel, train_codes: np.ndarray, calib_codes: np.ndarray) -> bytes | None:
    """Training windows on the map coloured by time, calibration windows marked; None without matplotlib."""
    plt = pyplot()
    if plt is None:
        return None
    p = latent.projection
    fig, ax = plt.subplots(figsize=(6.5, 5))
    xy = p(train_codes)
    pts = ax.scatter(xy[:, 0], xy[:, 1], c=np.arange(len(xy)), cmap="viridis", s=6, alpha=0.7, label="training")
    fig.colorbar(pts, ax=ax, label="training window (time order)")
    if len(calib_codes):
        cxy = p(calib_codes)
        ax.scatter(cxy[:, 0], cxy[:, 1], marker="x", s=14, c="tab:red", alpha=0.8, label="calibration (held out)")
    _draw_states(ax, latent)
    _axes_labels(ax, latent)
    ax.set_title(f"operating-state map: {p.method}, {100 * p.explained:.1f} % of code variance shown", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return png_bytes(fig)


def backtest_map_png(latent: LatentModel, codes: np.ndarray, alerted: np.ndarray, path: Path) -> bool:
    """Scored windows on the bundle's map, alerted ones highlighted; False without matplotlib."""
    plt = pyplot()
    if plt is None:
        return False
    p = latent.projection
    fig, ax = plt.subplots(figsize=(6.5, 5))
    xy = p(codes)
    quiet = ~alerted.astype(bool)
    ax.scatter(xy[quiet, 0], xy[quiet, 1], s=6, c="tab:gray", alpha=0.5, label="windows, no alert")
    ax.scatter(xy[~quiet, 0], xy[~quiet, 1], s=10, c="tab:red", alpha=0.9, label="windows while alerting")
    _draw_states(ax, latent)
    _axes_labels(ax, latent)
    ax.set_title(f"backtest on the operating-state map ({100 * p.explained:.1f} % of code variance)", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    Path(path).write_bytes(png_bytes(fig))
    return True


class LatentCsv:
    """``stream, timestamp, score, state, novelty, code_0 … code_{k-1}``, one row per scored window."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "w", newline="")  # noqa: SIM115  # closed by close()
        self._w = csv.writer(self._fh)
        self._k: int | None = None
        self.rows = 0

    def write(self, scores: ScoreBatch) -> None:
        codes = scores.codes
        if codes is None or not len(scores):
            return
        if self._k is None:
            self._k = codes.shape[1]
            self._w.writerow(["stream", "timestamp", "score", "state", "novelty", *code_columns(self._k)])
        states, novelty = scores.states, scores.novelty
        for i, stream in enumerate(scores.streams):
            state = "" if states is None else int(states[i]) + 1
            nov = "" if novelty is None else f"{float(novelty[i]):.6g}"
            self._w.writerow(
                [stream, f"{float(scores.times[i]):.3f}", f"{float(scores.score[i]):.6g}", state, nov]
                + [repr(float(v)) for v in codes[i]]
            )
        self.rows += len(scores)

    def close(self) -> None:
        self._fh.close()


def code_columns(k: int) -> Iterable[str]:
    return (f"code_{j}" for j in range(k))
