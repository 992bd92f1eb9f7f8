"""Backtest: stream a CSV file row by row through the live runner and record what it did.

Rows are pushed in input order exactly as the daemon would receive them; windows are
scored in batches of up to `chunk_rows` rows (batching changes nothing but speed: the
alarm still sees scores in order). Output has one row per input row.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monitor.app.plots import png_bytes, pyplot
from monitor.core.config import Config, ConfigError
from monitor.core.evaluate import Quality, evaluate, segments
from monitor.core.fleet import Fleet
from monitor.core.runner import Runner
from monitor.core.scoring_model import ScoringModel
from monitor.core.types import Alert

log = logging.getLogger(__name__)


@dataclass
class BacktestResult:
    times: np.ndarray  # (N,) epoch seconds, input order
    score: np.ndarray  # (N,) threshold units, NaN before the first window
    alert: np.ndarray  # (N,) 0/1 alarm state after the row
    contributions: np.ndarray  # (N, C) per-channel share of the score
    channels: list[str]
    phase: np.ndarray  # (N,) "train" / "test"
    labels: np.ndarray | None
    alerts: list[Alert]
    counters: dict
    values: np.ndarray  # (N, C) input values, for plots
    quality: Quality | None = None
    codes: np.ndarray | None = None  # (N, code_size) with --latent: the code of the row's window, NaN before
    window_codes: np.ndarray | None = None  # (W, code_size) with --latent: every scored window's code
    window_alert: np.ndarray | None = None  # (W,) 0/1 alarm state after each scored window


def run_backtest(
    cfg: Config,
    times: np.ndarray,
    values: np.ndarray,
    channels: list[str],
    model: ScoringModel,
    *,
    labels: np.ndarray | None = None,
    train_rows: int = 0,
    chunk_rows: int = 256,
    group: str | None = None,
    latent: bool = False,
    sensors: bool = True,
) -> BacktestResult:
    """Push rows (times (N,), values (N, C) with columns `channels`) through the runner.

    The rows are stream ``data.stream``; with `groups:` it is scored with the alarm and
    stream settings of its group (`group`, default: the group it routes to) by `model`;
    `sensors`: with the group's sensor checks and masked scoring, as the daemon (the
    retrain gates pass False: they judge the model alone).
    `latent`: also keep each scored window's code (the scoring pass's own, decision 0020).
    """
    missing = [c for c in model.channels if c not in channels]
    if missing:
        raise ConfigError("stream.channels", f"the data has no column(s) {missing} that model {model.version} needs")
    cols = [channels.index(c) for c in model.channels]
    values = np.asarray(values, dtype=np.float64)[:, cols]
    n, c = values.shape
    stream = cfg.data.stream
    gcfg = cfg.fleet()[0] if not cfg.groups else cfg.group(group or _route(cfg, stream))
    fleet = Fleet.single(model, gcfg, sensors=sensors, latent=latent)
    scores: list = []
    code_parts: list[np.ndarray] = []
    alerts: list[Alert] = []

    def scored(r) -> None:
        scores.extend(r.scores)
        if r.scores.codes is not None:
            code_parts.append(r.scores.codes)

    runner = Runner(fleet, on_scores=scored, on_alert=alerts.append)

    row_windows = np.zeros(n, dtype=np.int64)  # windows due after each row
    for i in range(n):
        runner.push_row(stream, float(times[i]), values[i])
        row_windows[i] = runner.windows + runner.pending
        if (i + 1) % chunk_rows == 0 and runner.pending:
            runner.flush()
    runner.finish()
    if n:
        row_windows[-1] = len(scores)

    # Per window: its score, contributions and the alarm state after it.
    w_score = np.array([sc.score for sc in scores], dtype=np.float64)
    w_contrib = np.array([sc.channel_scores for sc in scores]).reshape(len(scores), c)
    w_state = np.zeros(len(scores), dtype=np.int8)
    changes = {  # regime_change events are no alarm state: they neither start nor end an episode
        (al.started_at if al.state == "firing" else al.ended_at): al.state for al in alerts if al.kind == "anomaly"
    }
    firing = 0
    for j, sc in enumerate(scores):
        state = changes.get(sc.timestamp)
        if state is not None:
            firing = 1 if state == "firing" else 0
        w_state[j] = firing

    score = np.full(n, np.nan)
    alert = np.zeros(n, dtype=np.int8)
    contrib = np.full((n, c), np.nan)
    has = row_windows > 0
    last = row_windows[has] - 1
    score[has] = w_score[last]
    alert[has] = w_state[last]
    contrib[has] = w_contrib[last]
    phase = np.where(np.arange(n) < train_rows, "train", "test")
    result = BacktestResult(
        times, score, alert, contrib, list(model.channels), phase, labels, alerts, dict(fleet.totals()), values
    )
    if latent:
        k = model.latent.code_size if model.latent is not None else (code_parts[0].shape[1] if code_parts else 0)
        w_codes = np.concatenate(code_parts) if code_parts else np.zeros((0, k), dtype=np.float32)
        codes = np.full((n, w_codes.shape[1]), np.nan)
        codes[has] = w_codes[last]
        result.codes, result.window_codes, result.window_alert = codes, w_codes, w_state
    if labels is not None:
        test = slice(train_rows, n)
        result.quality = evaluate(times[test], labels[test], alert[test])
    return result


def _route(cfg: Config, stream: str) -> str:
    """The group stream `stream` routes to; a ConfigError when none takes it."""
    name = Fleet.from_config(cfg).route(stream)
    if name is None:
        raise ConfigError("data.stream", f"stream {stream!r} matches no group; give --group or fix groups[].streams")
    return name


def write_scores_csv(result: BacktestResult, path: Path) -> None:
    """timestamp, phase, score, alert[, label], contrib_<channel>...[, code_0...] — one row per input row."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        header = ["timestamp", "phase", "score", "alert"]
        if result.labels is not None:
            header.append("label")
        header += [f"contrib_{ch}" for ch in result.channels]
        codes = result.codes
        if codes is not None:
            header += [f"code_{j}" for j in range(codes.shape[1])]
        w.writerow(header)
        for i in range(len(result.times)):
            row = [
                f"{result.times[i]:.3f}",
                result.phase[i],
                "" if np.isnan(result.score[i]) else f"{result.score[i]:.6g}",
                int(result.alert[i]),
            ]
            if result.labels is not None:
                lab = result.labels[i]
                row.append("" if np.isnan(lab) else int(lab))
            row += ["" if np.isnan(v) else f"{v:.6g}" for v in result.contributions[i]]
            if codes is not None:  # full precision: equal to the live codes of the same windows
                row += ["" if np.isnan(v) else repr(float(v)) for v in codes[i]]
            w.writerow(row)
    tmp.replace(path)


def format_quality(q: Quality) -> str:
    delay = "n/a" if q.mean_delay is None else f"{q.mean_delay:.1f} s"
    return (
        f"precision {q.precision:.3f}  recall {q.recall:.3f}  F1 {q.f1:.3f}  "
        f"FAR {q.far:.2f} %  MAR {q.mar:.2f} %  mean detection delay {delay} "
        f"({q.segments - q.missed_segments}/{q.segments} labelled segments detected)"
    )


def plot_timeline(result: BacktestResult, path: Path, title: str = "") -> bool:
    """Channels, score vs threshold, alert spans and labelled spans; False without matplotlib."""
    plt = pyplot()
    if plt is None:
        return False
    t = (result.times - result.times[0]) / 60.0
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 6), sharex=True, height_ratios=[3, 2])
    v = result.values
    z = (v - np.nanmean(v, axis=0)) / np.where(np.nanstd(v, axis=0) > 0, np.nanstd(v, axis=0), 1.0)
    for j, ch in enumerate(result.channels):
        ax1.plot(t, z[:, j] + 4 * j, lw=0.7, label=ch)
    ax1.set_yticks([])
    ax1.set_ylabel("channels (standardized, offset)")
    ax1.legend(fontsize=7, loc="upper left", ncol=min(4, len(result.channels)))
    ax2.plot(t, result.score, lw=0.8, color="black", label="score")
    ax2.axhline(1.0, color="tab:red", ls="--", lw=1, label="threshold")
    ax2.set_yscale("log")
    ax2.set_ylabel("score (threshold units)")
    ax2.set_xlabel("minutes from start")
    for ax in (ax1, ax2):
        for s, e in segments(result.alert):
            ax.axvspan(t[s], t[min(e, len(t) - 1)], color="tab:red", alpha=0.15)
        if result.labels is not None:
            for s, e in segments(np.nan_to_num(result.labels)):
                ax.axvspan(t[s], t[min(e, len(t) - 1)], ymin=0, ymax=0.04, color="tab:purple", alpha=0.8)
        train_end = np.flatnonzero(result.phase == "train")
        if train_end.size:
            ax.axvline(t[train_end[-1]], color="gray", lw=0.8, ls=":")
    ax2.legend(fontsize=7, loc="upper left")
    fig.suptitle(title or "backtest: red = alert, purple bar = label, dotted = end of training", fontsize=9)
    fig.tight_layout()
    Path(path).write_bytes(png_bytes(fig))
    return True
