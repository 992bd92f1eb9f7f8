"""The training job: data files -> frames -> windows -> autoencoder -> calibrated bundle.

Frames are built by the same assembler and filters the live pipeline uses
(`StreamState`), and windows by `window_runs`, which a test holds equal to the live
`WindowBuffer`. The newest `calibration.holdout_fraction` of each stream's frames is kept
out of training and scaling and used to calibrate the threshold (with
`calibration.source: all`, together with the training windows' errors).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from monitor.app.columns import ReadingColumns, load_recording_columns
from monitor.app.latent import fit_latent, latent_line, latent_map_png, latent_summary
from monitor.app.plots import png_bytes, pyplot
from monitor.core.config import CalibrationConfig, Config, ConfigError, ModelConfig
from monitor.core.drift import reference_quantiles
from monitor.core.fleet import Fleet
from monitor.core.model.adapters import ADAPTERS_FILE, StreamAdapters, has_enough
from monitor.core.model.calibrate import fit_threshold
from monitor.core.model.holdout import HoldoutPlan, plan_holdout
from monitor.core.model.manifest import Manifest
from monitor.core.scoring_model import ScoringModel
from monitor.core.sensor_health import LIMITS_FILE, learn_limits
from monitor.core.stream.context import auto_context, context_rows, rhythm_ratio
from monitor.core.stream.period import IrregularTimestamps, infer_period_seconds
from monitor.core.stream.state import StreamState, stream_timing
from monitor.core.stream.windows import even_sample, window_ends, windows_at
from monitor.io.codec import Codec
from monitor.io.files import read_csv

log = logging.getLogger(__name__)


@dataclass
class StreamData:
    """Raw data of one stream: either wide rows or individual readings."""

    stream: str
    channels: list[str]
    timestamps: np.ndarray | None = None  # wide rows: (N,)
    values: np.ndarray | None = None  # wide rows: (N, C)
    readings: ReadingColumns = field(default_factory=ReadingColumns)  # from recordings, as columns

    def __post_init__(self) -> None:
        if not isinstance(self.readings, ReadingColumns):  # a list of Reading objects
            self.readings = ReadingColumns.from_readings(self.readings, self.stream)
        self.readings.stream = self.stream


@dataclass
class FrameSet:
    """Filtered frames of one stream in raw units, with staleness."""

    stream: str
    times: np.ndarray
    values: np.ndarray
    stale: np.ndarray


def load_training_data(paths: Sequence[str | Path], cfg: Config) -> list[StreamData]:
    """Read CSV files and recordings into per-stream data (one CSV file = one stream's rows)."""
    out: dict[str, StreamData] = {}
    recordings: list[Path] = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise FileNotFoundError(f"training data {p} does not exist")
        if p.is_dir() or p.name.endswith((".jsonl", ".jsonl.gz")):
            recordings.append(p)
            continue
        csv = read_csv(p, cfg.data)
        channels = cfg.stream.channels or csv.channels
        missing = [c for c in channels if c not in csv.channels]
        if missing:
            raise ConfigError("stream.channels", f"{p} has no column(s) {missing}; it has {csv.channels}")
        cols = [csv.channels.index(c) for c in channels]
        sd = out.setdefault(cfg.data.stream, StreamData(cfg.data.stream, list(channels)))
        if sd.channels != list(channels):
            raise ConfigError("stream.channels", f"{p} has channels {channels}, earlier files {sd.channels}")
        ts, vals = csv.timestamps, csv.values[:, cols]
        sd.timestamps = ts if sd.timestamps is None else np.concatenate([sd.timestamps, ts])
        sd.values = vals if sd.values is None else np.concatenate([sd.values, vals])
    if recordings:
        codec = Codec(cfg.topics, cfg.mqtt.max_payload_bytes, cfg.stream.max_future_seconds)
        for stream, columns in load_recording_columns(recordings, codec)[0].items():
            if stream in out:  # a CSV stream of the same name: its rows stay, readings join them
                out[stream].readings = columns
            else:
                out[stream] = StreamData(stream, [], readings=columns)
        seen = sorted({n for sd in out.values() for n in seen_channels(sd.readings)})
        channels = cfg.stream.channels or seen
        for sd in out.values():
            if not sd.channels:
                sd.channels = list(channels)
    if not out:
        raise ValueError("no training data: give CSV files or recordings")
    return list(out.values())


def group_training_data(paths: Sequence[str | Path], cfg: Config, group: str) -> list[StreamData]:
    """The training data of one group: `paths` read with the group's settings, only the
    streams that route to it (`Fleet.route`). Channels of recordings without configured
    ``stream.channels`` are those seen in the group's own streams."""
    gcfg = cfg.for_group(group)
    fleet = Fleet.from_config(cfg)
    data = [sd for sd in load_training_data(paths, gcfg) if fleet.route(sd.stream) == group]
    if not gcfg.stream.channels:
        seen = sorted({n for sd in data for n in seen_channels(sd.readings)})
        for sd in data:
            if sd.readings and sd.timestamps is None:
                sd.channels = list(seen)
    return data


def seen_channels(cols: ReadingColumns) -> list[str]:
    """The channel names that have at least one reading."""
    present = np.unique(cols.chan) if len(cols) else np.zeros(0, dtype=np.int64)
    return [cols.names[int(i)] for i in present]


def _sorted_timestamp_runs(data: list[StreamData]) -> list[np.ndarray]:
    parts = []
    for sd in data:
        if sd.timestamps is not None:
            parts.append(np.sort(sd.timestamps))
        cols = sd.readings
        for i in np.unique(cols.chan) if len(cols) else []:
            parts.append(np.sort(cols.times[cols.chan == i]))
    return parts


def infer_period(data: list[StreamData], cfg: Config) -> float:
    """The configured period, or for "auto" the step `infer_period_seconds` finds in every channel's timestamps."""
    if cfg.stream.period_seconds != "auto":
        return float(cfg.stream.period_seconds)
    try:
        return infer_period_seconds(_sorted_timestamp_runs(data))
    except IrregularTimestamps as exc:
        raise ConfigError(
            "stream.period_seconds",
            f'"auto" {exc}; set stream.period_seconds to the step frames should have, and '
            "stream.alignment: interpolate for readings that do not sit on a grid",
        ) from None


_RHYTHM_MAX_POINTS = 200_000  # per channel and stream: the rhythm test reads an even sample


def resolve_auto_context(data: Sequence[StreamData], period_seconds: float) -> tuple[list[str], str]:
    """``model.context: auto`` for this training data (`auto_context`): the longest span of
    one stream's data, and the rhythm ratio of each feature it spans, over every channel of
    every stream."""
    series: list[tuple[np.ndarray, np.ndarray]] = []
    spacing = period_seconds  # of the sampled points: the rhythm test's tolerance is half of it
    for sd in data:
        if sd.timestamps is not None and sd.values is not None:
            cols = [
                (np.asarray(sd.timestamps, dtype=np.float64), np.asarray(sd.values, dtype=np.float64)[:, c])
                for c in range(np.shape(sd.values)[1])
            ]
        else:
            r = sd.readings
            cols = [(r.times[r.chan == c], r.values[r.chan == c]) for c in range(len(r.names))]
        for t, v in cols:
            keep = np.isfinite(t) & np.isfinite(v)
            t, v = t[keep], v[keep]
            order = np.argsort(t, kind="stable")
            step = max(1, len(t) // _RHYTHM_MAX_POINTS)
            spacing = max(spacing, step * period_seconds)
            series.append((t[order][::step], v[order][::step]))
    span = max((float(t[-1] - t[0]) for t, _ in series if len(t)), default=0.0)
    spanned, _ = auto_context(span)
    ratios = {name: rhythm_ratio(series, name, spacing) for name in spanned}
    return auto_context(span, ratios)


def build_frames(sd: StreamData, geometry: ScoringModel, cfg: Config) -> FrameSet:
    """Run one stream's data through the live assembler and filters."""
    max_gap, lateness = stream_timing(cfg.stream, geometry.period_seconds)
    state = StreamState(geometry, max_gap, lateness)
    asm = state.assembler
    frames = state.frames
    if sd.timestamps is not None and sd.values is not None:  # wide rows: both or neither
        order = np.argsort(sd.timestamps, kind="stable")
        for i in order:
            asm.push_row(float(sd.timestamps[i]), sd.values[i], frames)
    c = len(geometry.channels)
    out_t: list[np.ndarray] = []
    out_v: list[np.ndarray] = []
    out_s: list[np.ndarray] = []

    def drain() -> None:  # frames so far -> arrays, so the list of frame objects stays short
        n = len(frames)
        if not n:
            return
        times = np.empty(n)
        values = np.full((n, c), np.nan)
        stale = np.zeros(n, dtype=bool)
        for i, (t, v, s) in enumerate(frames):
            times[i] = t
            f = state.filtered(v, s)
            stale[i] = f is None
            if f is not None:
                values[i] = f
        frames.clear()
        out_t.append(times)
        out_v.append(values)
        out_s.append(stale)

    drain()
    cols = sd.readings.ordered()  # stable: what sorted(readings, key=timestamp) gave
    idx_all = cols.channel_index(list(geometry.channels))
    keep = idx_all >= 0
    ts_all, idx_kept, v_all = cols.times[keep], idx_all[keep], cols.values[keep]
    for at in range(0, len(ts_all), _CHUNK_READINGS):
        end = at + _CHUNK_READINGS
        for t, i, v in zip(ts_all[at:end].tolist(), idx_kept[at:end].tolist(), v_all[at:end].tolist(), strict=True):
            asm.push(t, i, v, frames)
        drain()
    asm.flush(frames)
    drain()
    if not out_t:
        return FrameSet(sd.stream, np.empty(0), np.full((0, c), np.nan), np.zeros(0, dtype=bool))
    return FrameSet(sd.stream, np.concatenate(out_t), np.concatenate(out_v), np.concatenate(out_s))


_CHUNK_READINGS = 200_000  # readings pushed between two drains of the frame list


@dataclass
class Prepared:
    train_windows: np.ndarray
    calib_windows: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    fingerprint: str
    n_frames: int
    n_stale: int
    holdout: HoldoutPlan
    # per stream, in the order its windows are concatenated: (stream, train windows, calibration windows)
    counts: list[tuple[str, int, int]] = field(default_factory=list)
    own_scalers: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # adapters: (mean, std)
    fallback: dict[str, int] = field(default_factory=dict)  # streams without: their fit windows
    sampled: dict[str, int] = field(default_factory=dict)  # windows used of available (model.max_*_windows)


def scaler_std(rows: np.ndarray, cfg: Config, channels: Sequence[str] | None = None) -> np.ndarray:
    """Per-channel std of `rows`, floored by `model.min_std` and `model.channel_min_std`."""
    std = np.maximum(rows.std(axis=0), cfg.model.min_std)
    if channels is not None:
        for i, name in enumerate(channels):
            floor = cfg.model.channel_min_std.get(name)
            if floor is not None:
                std[i] = max(std[i], floor)
    return std


def prepare_windows(
    frames: list[FrameSet], cfg: Config, window_size: int, stride: int, channels: Sequence[str] | None = None
) -> Prepared:
    """Split each stream in time (`plan_holdout`: short data hold out more, or fit the
    threshold on all windows), fit the scaler on the older part, cut windows; with
    `model.context` the context channels follow the data channels.

    `channels` (the frames' column names) is needed for `model.channel_min_std`.

    With ``model.adapters: auto`` and more than one stream, a stream with at least ``model.adapter_min_windows``
    windows to fit a threshold on (its calibration windows; with the plan's ``fit_on``
    "all", its training windows too) is standardized by its own
    scaler (fitted on its own older fresh frames, the same floors); the others by the
    group's, which is fitted on every stream's older fresh frames either way.
    """
    plan = plan_holdout(
        [f.stale for f in frames], window_size, stride, cfg.calibration.holdout_fraction, cfg.calibration.source
    )
    cuts = plan.cuts
    fit_rows = np.concatenate([f.values[:cut][~f.stale[:cut]] for f, cut in zip(frames, cuts, strict=True)])
    if len(fit_rows) < window_size:
        raise ValueError(
            f"only {len(fit_rows)} fresh frames to train on; need well over window_size={window_size}. "
            "Give more data, a smaller model.window_size, or a larger stream.max_gap_seconds."
        )
    mean = fit_rows.mean(axis=0)
    std = scaler_std(fit_rows, cfg, channels)
    ends = [
        (window_ends(f.stale[:cut], window_size, stride), cut + window_ends(f.stale[cut:], window_size, stride))
        for f, cut in zip(frames, cuts, strict=True)
    ]
    pick_train = _quota([len(e[0]) for e in ends], cfg.model.max_train_windows)
    pick_calib = _quota([len(e[1]) for e in ends], cfg.model.max_calibration_windows)
    train, calib = [], []
    counts: list[tuple[str, int, int]] = []
    own: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    fallback: dict[str, int] = {}
    # one stream: the group's scaler and threshold are its own, an adapter would repeat them
    adapters = cfg.model.adapters == "auto" and len(frames) > 1
    digest = hashlib.sha256()
    for f, cut, (e_train, e_calib), k_train, k_calib in zip(frames, cuts, ends, pick_train, pick_calib, strict=True):
        e_train = e_train[even_sample(len(e_train), k_train)]
        e_calib = e_calib[even_sample(len(e_calib), k_calib)]
        scaler = (mean, std)
        if adapters:
            n_fit = len(e_calib) if plan.fit_on == "holdout" else len(e_train) + len(e_calib)
            rows = f.values[:cut][~f.stale[:cut]]
            if has_enough(n_fit, cfg.model.adapter_min_windows) and len(rows) >= window_size:
                scaler = own[f.stream] = (rows.mean(axis=0), scaler_std(rows, cfg, channels))
            else:
                fallback[f.stream] = n_fit
        w_train, w_calib = _cut_windows(f, *scaler, cfg, window_size, e_train, e_calib)
        train.append(w_train)
        calib.append(w_calib)
        counts.append((f.stream, len(w_train), len(w_calib)))
        digest.update(f.stream.encode())
        digest.update(np.ascontiguousarray(f.times).tobytes())
        digest.update(np.nan_to_num(f.values).tobytes())
    sampled = {
        "max_train_windows": cfg.model.max_train_windows,
        "max_calibration_windows": cfg.model.max_calibration_windows,
        "train_windows_used": sum(c[1] for c in counts),
        "train_windows_available": sum(len(e[0]) for e in ends),
        "calibration_windows_used": sum(c[2] for c in counts),
        "calibration_windows_available": sum(len(e[1]) for e in ends),
    }
    return Prepared(
        np.concatenate(train),
        np.concatenate(calib),
        mean,
        std,
        digest.hexdigest(),
        sum(len(f.times) for f in frames),
        int(sum(f.stale.sum() for f in frames)),
        plan,
        counts,
        own,
        fallback,
        sampled,
    )


def _cut_windows(
    f: FrameSet,
    mean: np.ndarray,
    std: np.ndarray,
    cfg: Config,
    window_size: int,
    ends_train: np.ndarray,
    ends_calib: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(training windows, calibration windows) of one stream standardized by (mean, std),
    the windows `window_runs` gives that end at the frames `ends_*`."""
    z = (f.values - mean) / std
    if cfg.model.context:
        z = np.concatenate([z, context_rows(f.times, cfg.model.context)], axis=1)
    z = z.astype(np.float32)
    z[f.stale] = 0.0
    return windows_at(z, ends_train, window_size), windows_at(z, ends_calib, window_size)


def _quota(available: list[int], bound: int) -> list[int]:
    """Per stream how many windows to keep: all when the total is within `bound` (0: no
    bound), else each stream its share of it (at least one window of a stream that has any)."""
    total = sum(available)
    if bound <= 0 or total <= bound:
        return available
    return [min(n, max(1 if n else 0, n * bound // total)) for n in available]


def fit_adapters(
    prep: Prepared, train_err: np.ndarray, calib_err: np.ndarray, calibration_cfg: CalibrationConfig, min_windows: int
) -> StreamAdapters | None:
    """Each adapter stream's own threshold, fitted on its own windows' errors (the
    slices of `train_err` / `calib_err`, which follow `prep.counts`) like the group's;
    None when no stream has enough windows for one."""
    if not prep.own_scalers:
        return None
    names, means, stds, thresholds, n_windows = [], [], [], [], []
    t0 = c0 = 0
    for stream, n_train, n_calib in prep.counts:
        t1, c1 = t0 + n_train, c0 + n_calib
        if stream in prep.own_scalers:
            own = (
                calib_err[c0:c1]
                if prep.holdout.fit_on == "holdout"
                else np.concatenate([train_err[t0:t1], calib_err[c0:c1]])
            )
            mean, std = prep.own_scalers[stream]
            names.append(stream)
            means.append(mean)
            stds.append(std)
            thresholds.append(fit_threshold(own, calibration_cfg)["threshold"])
            n_windows.append(len(own))
        t0, c0 = t1, c1
    return StreamAdapters(
        names, np.array(means), np.array(stds), np.array(thresholds), n_windows, min_windows, prep.fallback
    )


@dataclass
class TrainOutcome:
    bundle_path: Path
    manifest: Manifest
    report: dict


def threads_arg(text: str) -> int | str:
    """argparse type of ``--threads``: a whole number >= 1 or "auto" (see `model.threads`)."""
    if text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f'expected a whole number >= 1 or "auto", got {text!r}')
    return n


def train_bundle(
    data: list[StreamData],
    cfg: Config,
    models_dir: Path,
    *,
    progress: Callable[[dict], None] | None = None,
    make_current: bool = True,
    sources: Iterable[str] = (),
    write_plots: bool = True,
) -> TrainOutcome:
    """Train, calibrate and save a bundle from already-loaded data."""
    # torch (~2 s to import) only when training: this module also loads training data for
    # commands that do not train (`monitor retrain --help` builds the parser from it)
    import torch  # noqa: PLC0415

    from monitor.core.model.bundle import read_manifest, save_bundle  # noqa: PLC0415  # torch
    from monitor.core.model.nets import architecture_spec  # noqa: PLC0415  # torch
    from monitor.core.model.scorer import Scorer  # noqa: PLC0415  # torch
    from monitor.core.model.threads import use_threads  # noqa: PLC0415  # torch
    from monitor.core.model.train import train_autoencoder  # noqa: PLC0415  # torch

    threads = use_threads(cfg.model.threads)
    started = time.monotonic()
    channels = data[0].channels
    if any(sd.channels != channels for sd in data):
        raise ConfigError(
            "stream.channels", "all streams of one model must have the same channels; set stream.channels"
        )
    if not channels:
        raise ValueError("no channels found in the training data")
    period = infer_period(data, cfg)
    if cfg.model.context == "auto":
        names, line = resolve_auto_context(data, period)
        log.info("%s", line)
        cfg = replace(cfg, model=replace(cfg.model, context=names))
    mc = cfg.model
    geometry = ScoringModel(
        "",
        channels,
        period,
        mc.window_size,
        mc.stride,
        cfg.filters,
        np.zeros(len(channels)),
        np.ones(len(channels)),
        1.0,
        None,
        alignment=cfg.stream.alignment,
        context=list(mc.context),
    )
    frames = [build_frames(sd, geometry, cfg) for sd in data]
    prep = prepare_windows(frames, cfg, mc.window_size, mc.stride, channels)
    plan = prep.holdout
    sm = prep.sampled
    if sm["train_windows_used"] < sm["train_windows_available"] or (
        sm["calibration_windows_used"] < sm["calibration_windows_available"]
    ):
        log.info(
            "windows sampled evenly over the data: training on %d of %d (model.max_train_windows), "
            "calibrating on %d of %d (model.max_calibration_windows)",
            sm["train_windows_used"],
            sm["train_windows_available"],
            sm["calibration_windows_used"],
            sm["calibration_windows_available"],
        )
    if plan.message:
        log.warning("%s", plan.message)
    calibration_cfg = cfg.calibration
    if plan.fallback == "quantile_all" and calibration_cfg.method != "quantile":
        calibration_cfg = replace(calibration_cfg, method="quantile")
    result = train_autoencoder(prep.train_windows, mc, progress=progress)
    scale = getattr(result.module, "channel_error_scale", None)
    if scale is not None:  # score_reduction "channel_max": each channel's median training-window error
        _, pc_train, _ = Scorer(result.module).errors(prep.train_windows)
        _, pc_calib, _ = Scorer(result.module).errors(prep.calib_windows)
        med = np.median(np.concatenate([pc_train, pc_calib]), axis=0)
        scale.copy_(torch.from_numpy(np.maximum(med, 1e-12).astype(np.float32)))
    scorer = Scorer(result.module)
    # the codes come from the same passes that give the errors (decision 0020)
    calib_err, _, _, calib_codes = scorer.errors_and_codes(prep.calib_windows)
    train_err, _, _, train_codes = scorer.errors_and_codes(prep.train_windows)
    fit_err = calib_err if plan.fit_on == "holdout" else np.concatenate([train_err, calib_err])
    threshold = fit_threshold(fit_err, calibration_cfg)
    threshold["source"] = plan.fit_on
    # the drift reference: errors of windows spread over the whole training span, not only
    # the newest hold-out (a wandering process's hold-out sees part of its regimes; 0021)
    threshold["drift_quantiles"] = reference_quantiles(
        train_err,
        calib_err,
        sm["train_windows_available"] / max(1, sm["train_windows_used"]),
        sm["calibration_windows_available"] / max(1, sm["calibration_windows_used"]),
    )
    threshold["drift_reference"] = {
        "source": "training span",
        "train_windows": len(train_err),
        "calibration_windows": len(calib_err),
    }
    thr = threshold["threshold"]
    adapters = fit_adapters(prep, train_err, calib_err, calibration_cfg, mc.adapter_min_windows)
    # each window judged by its stream's threshold, as the daemon will (the group's without an adapter)
    thr_train, thr_calib = _window_thresholds(prep, adapters, thr)
    calibration = {
        "holdout_fraction": cfg.calibration.holdout_fraction,
        "holdout_fraction_used": plan.fraction,
        "fit_on": plan.fit_on,
        "method_used": calibration_cfg.method,
        "n_train_windows": plan.n_train_windows,
        "n_calibration_windows": plan.n_calibration_windows,
        "fallback": plan.fallback,
        "warning": plan.message,
        "windows_sampled": prep.sampled,
    }
    validation = {
        "calibration_windows": len(calib_err),
        "calibration_error_median": float(np.median(calib_err)) if len(calib_err) else None,
        "calibration_exceedance_rate": float(np.mean(calib_err >= thr_calib)) if len(calib_err) else None,
        "training_exceedance_rate": float(np.mean(train_err >= thr_train)),
        "best_val_loss": float(min(result.history["val_loss"])),
    }
    manifest = {
        "streams": [sd.stream for sd in data],
        "channels": channels,
        "period_seconds": period,
        "alignment": cfg.stream.alignment,
        "context": list(mc.context),
        "window_size": mc.window_size,
        "stride": mc.stride,
        "filters": [asdict(f) for f in cfg.filters],
        "scaler": {"mean": prep.mean.tolist(), "std": prep.std.tolist()},
        "architecture": architecture_spec(mc, len(channels)),
        "training": {
            **asdict(mc),
            "device_used": result.device,
            "threads_used": threads,
            "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch,
            "seconds": result.seconds,
            "n_train_windows": result.n_train,
            "n_val_windows": result.n_val,
        },
        "threshold": threshold,
        "calibration": calibration,
        "data_fingerprint": prep.fingerprint,
        "data_sources": [str(s) for s in sources],
        "frames": {"total": prep.n_frames, "stale": prep.n_stale},
        "data_span": _data_span(data),
        "validation": validation,
    }
    report = {
        "history": result.history,
        "threshold": threshold,
        "calibration": calibration,
        "validation": validation,
        "seconds_total": time.monotonic() - started,
    }
    latent = fit_latent(train_codes, prep.train_windows, mc, channels[0])
    manifest["latent"] = latent.to_json()
    report["latent"] = latent_summary(latent)
    log.info("%s", latent_line(latent))
    extra = {}
    if adapters is not None:
        data_bytes = adapters.to_json(channels)
        manifest["adapters"] = adapters.manifest_entry(data_bytes)
        extra[ADAPTERS_FILE] = data_bytes
    summary = _adapter_summary(prep, mc)
    report["adapters"] = summary
    log.info("%s", adapters_line(summary))
    extra["report.json"] = json.dumps(report, indent=2).encode()
    limits = learn_limits([(f.times, f.values, ~f.stale) for f in frames], channels, cfg.sensors)
    extra[LIMITS_FILE] = limits.to_bytes()
    manifest["sensor_limits"] = {"file": LIMITS_FILE, "sha256": hashlib.sha256(extra[LIMITS_FILE]).hexdigest()}
    if write_plots:
        extra.update(_plots(result.history, fit_err, thr))  # the errors the threshold was fitted on
        png = latent_map_png(latent, train_codes, calib_codes)
        if png is not None:
            extra["latent.png"] = png
    state_dict = {k: v.detach().cpu() for k, v in result.module.state_dict().items()}
    path = save_bundle(Path(models_dir), manifest, state_dict, extra_files=extra, make_current=make_current)
    report["seconds_total"] = time.monotonic() - started
    return TrainOutcome(path, read_manifest(path), report)


def _data_span(data: list[StreamData]) -> dict[str, float] | None:
    """First and last timestamp (Unix seconds) of the training data over every stream, None without any."""
    firsts, lasts = [], []
    for sd in data:
        if sd.timestamps is not None and len(sd.timestamps):
            firsts.append(float(np.min(sd.timestamps)))
            lasts.append(float(np.max(sd.timestamps)))
        elif len(sd.readings):
            firsts.append(float(np.min(sd.readings.times)))
            lasts.append(float(np.max(sd.readings.times)))
    return {"start": min(firsts), "end": max(lasts)} if firsts else None


def _window_thresholds(prep: Prepared, adapters: StreamAdapters | None, group: float) -> tuple[np.ndarray, np.ndarray]:
    """(per training window, per calibration window) the threshold of the window's stream."""
    own = {} if adapters is None else {s: float(adapters.threshold[i]) for s, i in adapters.index.items()}
    train = [np.full(n_train, own.get(s, group)) for s, n_train, _ in prep.counts]
    calib = [np.full(n_calib, own.get(s, group)) for s, _, n_calib in prep.counts]
    return np.concatenate(train or [np.zeros(0)]), np.concatenate(calib or [np.zeros(0)])


def adapters_line(summary: dict) -> str:
    """How many streams got their own adapter and how many use the group's scaler and threshold."""
    if summary["mode"] == "off":
        return f"adapters off: {summary['streams']} stream(s) on the group's scaler and threshold"
    if summary["streams"] == 1:
        return "adapters: none (one stream: the group's scaler and threshold are its own)"
    line = (
        f"adapters: {summary['own']} stream(s) with their own scaler and threshold, "
        f"{summary['fallback']} on the group's (fewer than {summary['min_windows']} windows)"
    )
    if summary["fallback_streams"]:
        more = summary["fallback"] - len(summary["fallback_streams"])
        line += ": " + ", ".join(summary["fallback_streams"]) + (f" and {more} more" if more > 0 else "")
    return line


def _adapter_summary(prep: Prepared, mc: ModelConfig) -> dict:
    """What `monitor train` reports of the adapters: counts, the rule, the streams that fell back."""
    return {
        "mode": mc.adapters,
        "min_windows": mc.adapter_min_windows,
        "streams": len(prep.counts),
        "own": len(prep.own_scalers),
        "fallback": len(prep.counts) - len(prep.own_scalers),
        "fallback_streams": sorted(prep.fallback)[:20],
    }


def _plots(history: dict, calib_err: np.ndarray, threshold: float) -> dict[str, bytes]:
    plt = pyplot()
    if plt is None:
        return {}
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(history["train_loss"], label="train (denoising)")
    ax.plot(history["val_loss"], label="validation (clean)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (MSE, standardized)")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    files = {"loss.png": png_bytes(fig)}
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(calib_err, bins=40, color="tab:blue", alpha=0.8)
    ax.axvline(threshold, color="tab:red", label=f"threshold {threshold:.4g}")
    ax.set_xlabel("reconstruction error of calibration windows")
    ax.set_ylabel("windows")
    ax.legend()
    fig.tight_layout()
    files["scores.png"] = png_bytes(fig)
    return files
