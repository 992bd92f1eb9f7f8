"""The pure pipeline: readings -> frames -> filtered, standardized windows -> scores -> alerts.

No I/O and no clocks: the live daemon, `replay` and `backtest` all drive this object, so
what a backtest shows is what the daemon does. Readings are pushed one by one (or as
wide rows); windows that become due wait in a batch until `flush()` scores them all in
one forward pass and runs the alarm state machine over the results in order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
from numpy.typing import NDArray

from monitor.core.alarm import AlarmMachine
from monitor.core.alert_context import with_operating_states, with_regime_changes
from monitor.core.calibrate import OnlineCalibrator
from monitor.core.config import (
    AlarmConfig,
    ConfigError,
    OnlineCalibrationConfig,
    SensorsConfig,
    StreamConfig,
)
from monitor.core.input_baseline import U_SCALE, fixed_point
from monitor.core.masking import exclude_masked, keep_one_judge, mask_windows, name_masked
from monitor.core.scoring_model import ScoringModel
from monitor.core.sensor_health import SensorHealth
from monitor.core.shadow import Shadow
from monitor.core.stream.assembler import StreamAssembler
from monitor.core.stream.clock_step import ClockStepDetector, step_seconds
from monitor.core.stream.context import context_row, context_rows
from monitor.core.stream.due import Run, Window, all_readings, columns_of, push_each
from monitor.core.stream.state import StreamState, stream_timing
from monitor.core.types import (
    Alert,
    BatchItem,
    DropReason,
    Float32Array,
    FloatArray,
    Floats,
    FrameBlock,
    Reading,
    ReadingBlock,
    ScoreBatch,
    runs_of,
)

if TYPE_CHECKING:
    pass

#: Keys of `Pipeline.counters` that tally work done; every other key is a `DropReason`.
TALLIES = ("accepted", "frames", "windows_scored", "regime_changes", "clock_steps")

_MIN_RUN = 8  # shorter runs of one stream's readings: reading by reading is as fast
_MISSING = object()


class Pipeline:
    """Scores many streams with one model. Not thread-safe: drive it from one thread."""

    def __init__(
        self,
        model: ScoringModel,
        stream_cfg: StreamConfig,
        alarm_cfg: AlarmConfig,
        top_channels: int = 3,
        online: OnlineCalibrationConfig | None = None,
        sensors: SensorsConfig | None = None,
        latent: bool = False,
    ):
        """`online`: per-stream online calibration (None: off, scores are ``raw / prior``).
        `sensors`: sensor-health checks (None: none). `latent`: every scored batch carries
        its windows' codes (`ScoreBatch.codes`); with a bundle that has operating states
        they are computed anyway (states and novelty per window, the state in alerts)."""
        self.latent = latent
        self.stream_cfg = stream_cfg
        self.sensors_cfg = sensors
        self.sensors: SensorHealth | None = None
        self.alarm_cfg = alarm_cfg
        self.top_channels = top_channels
        self.online_cfg = online if online is not None else OnlineCalibrationConfig(enabled=False)
        if alarm_cfg.budget is not None and not self.online_cfg.enabled:
            raise ConfigError("alarm.budget", "needs calibration.online.enabled: true (the budget moves its threshold)")
        self.counters: Counter[str] = Counter()  # dropped inputs by `DropReason`, and the `TALLIES`
        self.streams: dict[str, StreamState] = {}
        # Due windows wait in a preallocated (capacity, W, C) float32 buffer (no per-window
        # copy + np.stack); their (stream, timestamp, observed raw) in `_meta`.
        self._meta: list[Window | Run] = []  # (stream, time, observed) per window, or a Run of windows
        self._n = 0  # windows queued (rows of `_x` in use)
        self._x = np.empty((0, 1, 1), dtype=np.float32)
        # a candidate scoring the same windows without sending anything (core/shadow.py); None: off
        self.shadow: Shadow | None = None
        self.shadow_error: str | None = None  # why the shadow was dropped (the service rejects it)
        self._install(model)

    def _install(self, model: ScoringModel) -> None:
        self.model = model
        self.channel_index = {c: i for i, c in enumerate(model.channels)}
        self._perms: dict[tuple[str, ...], NDArray[np.intp] | None] = {}  # FrameBlock channels -> model column order
        self.max_gap, self.lateness = stream_timing(self.stream_cfg, model.period_seconds)
        self.clock_step = step_seconds(self.stream_cfg.clock_step_seconds, model.period_seconds)
        self._inv_std = 1.0 / model.std
        self._u_scale = self._inv_std * U_SCALE  # fixed point of the input re-baseline's sums
        adapters = model.adapters
        if adapters is not None and len(adapters):
            if adapters.mean.shape[1] != len(model.channels):
                raise ValueError(
                    f"model {model.version!r}: adapters have {adapters.mean.shape[1]} channel(s), "
                    f"the model {len(model.channels)}"
                )
            # row i: adapter i; the last row: the group's (streams without an adapter)
            self._row_mean: FloatArray | None = np.vstack([adapters.mean, model.mean])
            self._row_std: FloatArray | None = np.vstack([adapters.std, model.std])
        else:
            self._row_mean = self._row_std = None
        shape = (model.window_size, model.input_channels)
        if self._x.shape[1:] != shape:
            self._x = np.empty((max(256, self._n), *shape), dtype=np.float32)
        self.alarm = AlarmMachine(
            self.alarm_cfg,
            model.threshold,
            model.version,
            model.channels,
            self.top_channels,
            threshold_for=self.threshold_for,
        )
        # a new model's errors have a new distribution: calibration starts again from the prior
        self.calibrator = OnlineCalibrator(
            self.online_cfg, self.prior_threshold, model.period_seconds, self.alarm_cfg.budget, len(model.channels)
        )
        # codes come from the scoring pass itself (errors_and_codes), never from a second one
        self._states = model.latent.states if model.latent is not None else None
        codes_fn = getattr(model.scorer, "errors_and_codes", None)
        self._codes_fn = codes_fn if (self.latent or self._states is not None) else None
        old, cfg = self.sensors, self.sensors_cfg
        self.sensors = None
        if cfg is not None and cfg.enabled:
            self.sensors = SensorHealth(
                cfg,
                model.channels,
                model.version,
                model.period_seconds,
                model.sensor_limits,
                mask_hold_seconds=(model.window_size - 1) * model.period_seconds,
            )
            if old is not None:
                self.sensors.carry_from(old)  # same channels: open sensor episodes carry over

    # ------------------------------------------------------------------ per-stream adapters

    def threshold_for(self, stream: str) -> float:
        """The threshold (raw error units) `stream`'s windows are decided by, for every
        model (with or without adapters): the one place alarm decisions take a stream's
        threshold from. `flush` calls it once per run of a stream's windows (scores are
        ``raw / threshold_for(stream)``) and alerts carry it. Today it is the offline one
        (`ScoringModel.offline_threshold`: the stream's adapter's, else the group's);
        online per-stream calibration plugs in here, with that value as its prior."""
        return self.model.offline_threshold(stream)

    def prior_threshold(self, stream: str) -> float:
        """The prior of `stream`'s online calibration (raw units), and its whole calibration
        when that is off: its offline threshold (`threshold_for`). Alerts carry this one,
        not the moving effective threshold, so they do not depend on where batches are cut
        (the effective one is exported as a metric)."""
        return self.model.offline_threshold(stream)

    def scaler_for(self, stream: str) -> tuple[FloatArray, FloatArray]:
        """(mean, 1 / std) that `stream`'s frames are standardized with: its adapter's, else the group's."""
        adapters = self.model.adapters
        if adapters is not None:
            i = adapters.index.get(stream)
            if i is not None:
                return adapters.mean[i], adapters.inv_std[i]
        return self.model.mean, self._inv_std

    # ------------------------------------------------------------------ model swap

    def swap_model(self, model: ScoringModel) -> tuple[ScoreBatch, list[Alert]]:
        """Score with `model` from now on.

        Windows already due are scored by the old model first (returned, like `flush`).
        Alarm episodes carry over; stream state (assembler, filters, windows) carries
        over when the geometry is the same, else streams restart from empty windows.
        """
        leftovers = self.flush()
        old_states = self.alarm.states
        compatible = model.compatible_with(self.model)
        self._install(model)
        self.alarm.states = old_states
        if self.shadow is not None:  # compared against the new serving model from now on
            if self.shadow.model.compatible_with(model):
                self.shadow.reset(model)
            else:
                self.shadow, self.shadow_error = None, f"the serving model {model.version} has another geometry"
        if not compatible:
            self.streams.clear()
        else:  # the new model's scaler for each stream (its adapter's or the group's)
            for stream, state in self.streams.items():
                state.mean, state.inv_std = self.scaler_for(stream)
        return leftovers

    # ------------------------------------------------------------------ input

    def _state(self, stream: str) -> StreamState | None:
        state = self.streams.get(stream)
        if state is None:
            if len(self.streams) >= self.stream_cfg.max_streams:
                return None
            state = self.streams[stream] = StreamState(self.model, self.max_gap, self.lateness, self.scaler_for(stream))
            if self.clock_step > 0:
                state.clock = ClockStepDetector(self.clock_step, self.stream_cfg.clock_step_readings)
        return state

    def _clock(self, stream: str, state: StreamState, timestamp: float, item: Any, reason: str | None) -> bool:
        """Feed the stream's clock-step detector (clock_step.py). Counts what it let go of;
        True when `item` is held (not counted now: a step may re-push it)."""
        clock = state.clock
        assert clock is not None
        if reason is None:
            cleared = clock.accepted()
        elif reason in (DropReason.OUT_OF_ORDER, DropReason.LATE):
            step, cleared = clock.rejected(max(state.assembler.last_times()), timestamp, item, reason)
            if step:
                self._resync(stream, state, cleared)
                return True
            if not cleared:
                return True
            cleared.pop()  # this one: counted by the caller
        else:
            return False
        for _, why in cleared:
            self.counters[why] += 1
        return False

    def _resync(self, stream: str, old: StreamState, held: list[tuple[Any, str]]) -> None:
        """The stream's clock stepped back: start its frames and windows afresh (the alarm
        and calibrator keep their state) and push the held readings into the new state."""
        state = StreamState(self.model, self.max_gap, self.lateness, (old.mean, old.inv_std))
        state.clock = old.clock
        self.streams[stream] = state
        self.counters["clock_steps"] += 1
        for item, _ in held:
            if isinstance(item, Reading):
                self.push_reading(item)
            else:
                self.push_row(stream, item[0], item[1])

    def push_reading(self, reading: Reading) -> str | None:
        """Add one reading; returns None if accepted, else the reason it was dropped."""
        idx = self.channel_index.get(reading.channel)
        reason: str | None
        if idx is None:
            reason = DropReason.UNKNOWN_CHANNEL
        else:
            state = self._state(reading.stream)
            if state is None:
                reason = DropReason.STREAM_CAP
            else:
                reason = state.assembler.push(reading.timestamp, idx, reading.value, state.frames)
                if state.frames:
                    self._consume_frames(reading.stream, state)
                if (
                    state.clock is not None
                    and (reason is not None or state.clock.held)
                    and self._clock(reading.stream, state, reading.timestamp, reading, reason)
                ):
                    return reason  # held: counted once it is known whether the clock stepped
        if reason is not None:
            self.counters[reason] += 1
        else:
            self.counters["accepted"] += 1
        return reason

    def push_readings(self, readings: Iterable[Reading]) -> None:
        for r in readings:
            self.push_reading(r)

    def push_batch(self, items: Sequence[BatchItem]) -> None:
        """`push_reading` for every reading of `items` (Readings, ReadingBlocks and
        FrameBlocks, in arrival order): the same frames, windows, scores and drop counts.

        For an unfiltered model the items are grouped by stream, keeping each stream's
        order. Within a stream, a stretch of items that carry whole frames (a
        univariate model's readings and ReadingBlocks; FrameBlocks with exactly the
        model's channels) goes through the vectorized path (`_push_frames`) as far as
        it qualifies; everything else, and the rest of a stretch, reading by reading.
        Streams are independent (their own assembler, window buffer and alarm), so the
        only difference to pushing reading by reading is the order in which different
        streams' windows are queued: a stream's windows stay in time order. Streams are
        taken in order of first appearance, so they are created, and capped, in arrival
        order. Pre-filters run over the vectorized frames in one call (`FilterChain.many`).
        """
        push = self.push_reading
        groups: dict[str, list[BatchItem]] = {}
        for item in items:
            stream = item[0] if type(item) is Reading else item.stream
            group = groups.get(stream)
            if group is None:
                groups[stream] = [item]
            else:
                group.append(item)
        univariate = len(self.model.channels) == 1
        only = self.model.channels[0] if univariate else None
        perms = self._perms
        for stream, group in groups.items():
            run: list[BatchItem] = []
            for item in group:
                if isinstance(item, Reading):
                    whole = univariate and item[1] == only
                elif isinstance(item, ReadingBlock):
                    whole = univariate and item.channel == only
                elif isinstance(item, FrameBlock):
                    perm = perms.get(item.channels, _MISSING)
                    if perm is _MISSING:
                        perm = perms[item.channels] = self._permutation(item.channels)
                    whole = perm is not None
                else:
                    whole = False
                if whole:
                    run.append(item)
                    continue
                if run:
                    self._push_stretch(stream, run)
                    run = []
                push_each(item, push)
            if run:
                self._push_stretch(stream, run)

    def _permutation(self, channels: tuple[str, ...]) -> NDArray[np.intp] | None:
        """Columns of a FrameBlock with `channels` in the model's channel order, or None
        when the block does not carry exactly the model's channels."""
        if len(channels) != len(self.model.channels) or set(channels) != set(self.model.channels):
            return None
        return np.asarray([channels.index(c) for c in self.model.channels])

    def _push_stretch(self, stream: str, run: list[BatchItem]) -> None:
        """Items of one stream that each carry whole frames: vectorized as far as
        possible, the rest reading by reading."""
        if len(run) < _MIN_RUN and all_readings(run):
            for r in run:
                self.push_reading(r)
            return
        ts, frames = self._frame_columns(run)
        done = self._push_frames(stream, ts, frames)
        if done == len(ts):
            return
        push = self.push_reading
        for item in run:  # skip the rows done, the rest one reading at a time
            rows = 1 if isinstance(item, Reading) else len(item.timestamps)
            if done >= rows:
                done -= rows
                continue
            if isinstance(item, Reading):
                push(item)
            elif isinstance(item, ReadingBlock):
                for r in item[done:] if done else item:
                    push(r)
            else:
                for r in item.rows(done):
                    push(r)
            done = 0

    def _frame_columns(self, run: list[BatchItem]) -> tuple[FloatArray, FloatArray]:
        """(times (m,), frames (m, C)) float64 of a stretch of whole-frame items."""
        if len(run) == 1:
            item = run[0]
            if isinstance(item, ReadingBlock):
                return item.timestamps, item.values.reshape(-1, 1)
            if isinstance(item, FrameBlock):
                return item.timestamps, self._model_columns(item)
        t_parts: list[FloatArray] = []
        v_parts: list[FloatArray] = []
        t_loose: list[float] = []
        v_loose: list[float] = []
        for item in run:
            if isinstance(item, Reading):
                t_loose.append(item[2])
                v_loose.append(item[3])
                continue
            if t_loose:
                t_parts.append(np.array(t_loose, dtype=np.float64))
                v_parts.append(np.array(v_loose, dtype=np.float64).reshape(-1, 1))
                t_loose, v_loose = [], []
            t_parts.append(item.timestamps)
            if isinstance(item, ReadingBlock):
                v_parts.append(item.values.reshape(-1, 1))
            else:
                v_parts.append(self._model_columns(item))
        if t_loose:
            t_parts.append(np.array(t_loose, dtype=np.float64))
            v_parts.append(np.array(v_loose, dtype=np.float64).reshape(-1, 1))
        if len(t_parts) == 1:
            return t_parts[0], v_parts[0]
        return np.concatenate(t_parts), np.concatenate(v_parts)

    def _model_columns(self, block: FrameBlock) -> FloatArray:
        """The values of a block `push_batch` found whole, in the model's channel order."""
        perm = self._perms[block.channels]
        assert perm is not None  # whole: the block carries exactly the model's channels
        return block.values[:, perm]

    def _push_frames(self, stream: str, ts: FloatArray, frames: FloatArray) -> int:
        """The vectorized path of `push_batch`: whole frames of `stream` (times `ts`, values
        (m, C) in the model's channel order, in arrival order). Takes the longest prefix
        it can do exactly as `push_reading` would (one frame per consecutive bucket,
        finite values, nothing pending) and returns its length (0: nothing done)."""
        if len(ts) < 2:
            return 0
        state = self._state(stream)
        if state is None:
            return 0
        asm = state.assembler
        if not isinstance(asm, StreamAssembler):  # interpolation has no vectorized path
            return 0
        if state.clock is not None and state.clock.held:  # readings held for a clock step: one by one
            return 0
        # the scalar path computes math.floor per reading: the same IEEE operations
        buckets = np.floor(ts / asm.period + asm.offset)
        good = np.isfinite(frames).all(axis=1) & np.isfinite(buckets)
        good[1:] &= np.diff(buckets) == 1.0
        m = len(ts) if good.all() else int(np.argmin(good))
        if m < 2:
            return 0
        if m < len(ts):
            ts, frames, buckets = ts[:m], frames[:m], buckets[:m]
        buckets = buckets.astype(np.int64)
        if not asm.fast_run_ok(ts, buckets):
            return 0
        t_frames = asm.push_run(ts, buckets, frames)
        if self.sensors is not None:
            self.sensors.queue_rows(stream, t_frames, frames)
        self.counters["accepted"] += m * frames.shape[1]
        self.counters["frames"] += m
        if state.filters:  # fresh frames only (no stale one in a run): nothing resets them
            frames = state.filters.many(frames)
        z = (frames - state.mean) * state.inv_std
        if self.model.context:
            z = np.concatenate([z, context_rows(t_frames, self.model.context)], axis=1)
        at = self._n
        index, _ = state.windows.push_many(z, self._windows_out)
        k = len(index)
        if k:
            self._n = at + k
            self._meta.append(Run(stream, t_frames[index], frames[index]))
        return m

    def _windows_out(self, k: int) -> Float32Array:
        """The next `k` rows of the window batch (what `WindowBuffer.push_many` fills)."""
        at = self._n
        self._reserve(at + k)
        return self._x[at : at + k]

    def _reserve(self, n: int) -> None:
        if n > len(self._x):
            grown = np.empty((max(n, 2 * len(self._x)), *self._x.shape[1:]), dtype=np.float32)
            grown[: self._n] = self._x[: self._n]
            self._x = grown

    def push_row(self, stream: str, timestamp: float, values: FloatArray) -> str | None:
        """Add a reading for every channel of `stream` at once (a wide CSV row)."""
        state = self._state(stream)
        reason: str | None
        if state is None:
            reason = DropReason.STREAM_CAP
        else:
            reason = state.assembler.push_row(timestamp, values, state.frames)
            if state.frames:
                self._consume_frames(stream, state)
            if (
                state.clock is not None
                and (reason is not None or state.clock.held)
                and self._clock(stream, state, timestamp, (timestamp, values), reason)
            ):
                return reason  # held: counted once it is known whether the clock stepped
        self.counters[reason or "accepted"] += 1
        return reason

    def end_of_data(self) -> None:
        """Emit every frame still waiting (end of a file or recording)."""
        for stream, state in self.streams.items():
            state.assembler.flush(state.frames)
            if state.frames:
                self._consume_frames(stream, state)

    def _consume_frames(self, stream: str, state: StreamState) -> None:
        for t, values, stale in state.frames:
            self.counters["frames"] += 1
            if self.sensors is not None:
                if stale:
                    self.sensors.queue_gap(stream)
                else:
                    self.sensors.queue_row(stream, t, values)
            filtered = state.filtered(values, stale)
            if filtered is None:
                self.counters[DropReason.STALE_FRAMES] += 1
                continue
            z = (filtered - state.mean) * state.inv_std
            if self.model.context:
                z = np.concatenate([z, context_row(t, self.model.context)])
            window = state.windows.push(z)
            if window is not None:
                at = self._n
                if at >= len(self._x):
                    self._reserve(at + 1)
                self._x[at] = window
                self._n = at + 1
                self._meta.append((stream, t, filtered))
        state.frames.clear()

    # ------------------------------------------------------------------ scoring

    @property
    def pending(self) -> int:
        return self._n

    @property
    def sensors_pending(self) -> bool:
        """Frames wait for the sensor checks (`flush` runs them even without windows)."""
        return self.sensors is not None and self.sensors.queued

    def sensor_tick(self, now: float) -> list[Alert]:
        """The stale check at `now` (the daemon's clock): channels silent for too long."""
        if self.sensors is None:
            return []
        return self.sensors.tick(now, {s: st.assembler.last_times() for s, st in self.streams.items()})

    def last_reading_times(self) -> dict[str, float]:
        """Each stream's newest reading time (any channel)."""
        return {s: max(st.assembler.last_times()) for s, st in self.streams.items()}

    def flush(self) -> tuple[ScoreBatch, list[Alert]]:
        """Score every due window in one batch, then run the alarms in arrival order."""
        sensor_alerts = self.sensors.process() if self.sensors is not None else []
        entries, self._meta = self._meta, []
        n, self._n = self._n, 0
        if not n:
            return ScoreBatch.empty(), sensor_alerts
        model = self.model
        if model.scorer is None:
            raise ValueError(f"model {model.version!r} carries no scorer (geometry only); it cannot score windows")
        x_push = x = self._x[:n]  # standardized at push time (the shadow's input)
        streams, runs, times, observed = columns_of(entries)
        if runs is None:
            runs = runs_of(streams or [])
        masked = self._masks(runs, times) if self.sensors is not None else None
        if masked is not None:  # every channel in fault: nothing else to judge by, scored as is
            masked = keep_one_judge(masked)
        calibrator = self.calibrator
        rebased: list[_Rebased] = []  # rows scored with a re-baselined scaler, and that scaler
        if calibrator.overrides:
            x, rebased = self._rebased_inputs(x, runs)
        clean = x_push.copy() if masked is not None and calibrator.inputs_on and x is x_push else x_push
        if masked is not None:  # a channel in sensor fault: scored from the others (masking.py)
            mask_windows(x, masked, getattr(model.scorer, "reconstruct", None))
        out = self._score(x, masked)  # raw, per_channel, recon_last, codes
        if len(self._x) > 4096 and n < len(self._x) // 8:
            self._x = np.empty((max(256, 2 * n), *self._x.shape[1:]), dtype=np.float32)
        rescore = partial(self._rescore, clean, masked, out, rebased) if calibrator.inputs_on else None
        inputs = self._inputs(runs, observed) if calibrator.inputs_on else None
        # threshold units, per stream (calibrate.py)
        score = calibrator.calibrate(out[0], runs, times, inputs, rescore)
        raw, per_channel, recon_last, codes = out
        channel_scores, reconstructed = self._per_stream(runs, per_channel, recon_last)
        for rows, mean, sd in rebased:  # in order: a row's last entry is the scaler it was scored with
            reconstructed[rows] = recon_last[rows] * sd + mean
        scores = ScoreBatch(streams, times, score, raw, channel_scores, observed, reconstructed, runs=runs)
        if codes is not None:
            scores.codes = codes
            scores.latent_states = self._states  # states are assigned where used (ScoreBatch.states)
        alerts = self.alarm.update_batch(scores)
        if masked is not None and alerts:
            alerts = name_masked(alerts, self.alarm.emitted_at, scores, masked, model.channels)
        if alerts and self._states is not None and codes is not None:
            alerts = with_operating_states(alerts, self.alarm.emitted_at, scores, codes, self._states)
        if self.calibrator.events:
            events = self.calibrator.drain_events()
            self.counters["regime_changes"] += len(events)
            alerts = with_regime_changes(alerts, self.alarm.emitted_at, events, model.version, self.scaler_for)
        if self.shadow is not None:  # the same windows, the candidate's forward pass; nothing sent
            # (x is re-standardized in place: it is not read again here)
            try:
                self.shadow.observe(x_push, runs, scores, alerts, self.scaler_for)
            except Exception as exc:  # the candidate must never cost the serving model its scores
                self.shadow, self.shadow_error = None, f"{type(exc).__name__}: {exc}"
        self.counters["windows_scored"] += n
        return scores, sensor_alerts + alerts if sensor_alerts else alerts

    def _score(self, x: Float32Array, masked: np.ndarray | None) -> list[Any]:
        """[raw, per_channel, recon_last, codes or None] of windows `x` (masked channels left out)."""
        model = self.model
        assert model.scorer is not None
        codes = None
        if self._codes_fn is not None:
            raw, per_channel, recon_last, codes = self._codes_fn(x)
        else:
            raw, per_channel, recon_last = model.scorer.errors(x)
        if masked is not None:
            raw, per_channel = exclude_masked(raw, per_channel, masked, model.score_reduction)
        return [raw, per_channel, recon_last, codes]

    # ------------------------------------------------------------------ input re-baseline (input_baseline.py)

    def effective_scaler(self, stream: str) -> tuple[FloatArray, FloatArray]:
        """(mean, std) in raw units that `stream`'s windows are standardized with now: its
        push-time scaler (`scaler_for`), and over it its re-baselined one after a regime change."""
        mean, inv_std = self.scaler_for(stream)
        sd = 1.0 / inv_std
        inp = self.calibrator.overrides.get(stream)
        if inp is None:
            return mean, sd
        return mean + np.asarray(inp.c) * sd, sd * np.asarray(inp.s)

    def _rebased_inputs(self, x: Float32Array, runs: list[tuple[str, int, int]]) -> tuple[Float32Array, list[_Rebased]]:
        """`x` with the windows of streams with a re-baselined scaler re-standardized
        (``u * a + b`` on the scored channels, float32: the same operation on the same
        values whatever the batch), a copy when any; and the runs so changed."""
        overrides = self.calibrator.overrides
        c = len(self.model.channels)
        out = x
        rebased: list[_Rebased] = []
        for stream, start, stop in runs:
            inp = overrides.get(stream)
            if inp is None:
                continue
            if out is x:
                out = x.copy()
            a, b = inp.affine()
            out[start:stop, :, :c] = out[start:stop, :, :c] * a + b
            rebased.append((slice(start, stop), *self.effective_scaler(stream)))
        return out, rebased

    def _inputs(self, runs: list[tuple[str, int, int]], observed: list[FloatArray] | FloatArray) -> FloatArray:
        """Each window's last frame standardized with its stream's push-time scaler (rows x
        channels), in the calibrator's fixed point (`input_baseline.fixed_point`)."""
        obs = np.asarray(observed, dtype=np.float64).reshape(len(observed), len(self.model.channels))
        if self._row_mean is None:
            return fixed_point(obs, self.model.mean, self._u_scale)
        means, invs, lengths = [], [], []
        for stream, start, stop in runs:
            mean, inv = self.scaler_for(stream)
            means.append(mean)
            invs.append(inv)
            lengths.append(stop - start)
        scale = np.repeat(np.asarray(invs), lengths, axis=0) * U_SCALE
        return fixed_point(obs, np.repeat(np.asarray(means), lengths, axis=0), scale)

    def _rescore(
        self,
        clean: Float32Array,
        masked: np.ndarray | None,
        out: list[Any],
        rebased: list[_Rebased],
        stream: str,
        rows: NDArray[np.intp],
        trial: bool,
    ) -> Floats:
        """`stream`'s windows at `rows` scored again: with its scaler on trial (`trial`:
        only their raw errors, to verify it), or with the scaler the calibrator changed to at
        an earlier row of this batch (as a later batch would score them; the batch's outputs
        `out` updated). Returns their raw errors."""
        calibrator = self.calibrator
        c = len(self.model.channels)
        xr = clean[rows]
        affine = None
        if trial:
            inp = calibrator.streams[stream].inp
            assert inp is not None
            affine = inp.trial_affine()
        elif stream in calibrator.overrides:
            affine = calibrator.overrides[stream].affine()
        if affine is not None:
            a, b = affine
            xr[:, :, :c] = xr[:, :, :c] * a + b
        mr = masked[rows] if masked is not None else None
        if mr is not None:
            mask_windows(xr, mr, getattr(self.model.scorer, "reconstruct", None))
        new = self._score(xr, mr)
        if trial:  # only verifies the scaler on trial: the batch's outputs stay
            raw_trial: Floats = new[0]
            return raw_trial
        for i, part in enumerate(new):
            if part is None or out[i] is None:
                continue
            whole = np.array(out[i], copy=True)  # scorer outputs may be read-only views
            whole[rows] = part
            out[i] = whole
        rebased.append((rows, *self.effective_scaler(stream)))
        raw: Floats = new[0]
        return raw

    def _masks(self, runs: list[tuple[str, int, int]], times: list[float] | FloatArray) -> np.ndarray | None:
        """(B, C) bool: the channels of each queued window in sensor fault at its time, or None."""
        sensors = self.sensors
        assert sensors is not None
        if not sensors.masking:
            return None  # the common case: no fault anywhere, one cheap check per flush
        t = np.asarray(times, dtype=np.float64)
        out: np.ndarray | None = None
        for stream, start, stop in runs:
            m = sensors.masks(stream, t[start:stop])
            if m is not None:
                if out is None:
                    out = np.zeros((len(t), len(self.model.channels)), dtype=bool)
                out[start:stop] = m
        return out

    def _per_stream(
        self, runs: list[tuple[str, int, int]], per_channel: Floats, recon_last: Floats
    ) -> tuple[Floats, Floats]:
        """(channel_scores, reconstructed) with each row's stream's offline threshold
        (`threshold_for`) and, with adapters, its scaler. (The score itself is the online
        calibrator's, whose prior is the same threshold.)

        One lookup per run of a stream's rows (not per row), then gathers: the per-row
        threshold and scaler vectors are the per-run ones repeated over the runs' lengths.
        The arithmetic is that of one threshold for all (``raw * (1 / threshold)`` with the
        inverse cast to float32, as numpy casts a Python float against float32), so a
        model without adapters scores bit for bit as before."""
        threshold_for = self.threshold_for
        k = len(runs)
        thr = np.empty(k, dtype=np.float64)
        lengths = np.empty(k, dtype=np.intp)
        for j, (stream, start, stop) in enumerate(runs):
            thr[j] = threshold_for(stream)
            lengths[j] = stop - start
        inv = 1.0 / thr
        c = per_channel.shape[1]
        channel_scores = per_channel * np.repeat((inv / c).astype(np.float32), lengths)[:, None]
        model = self.model
        if self._row_mean is None or self._row_std is None or model.adapters is None:
            return channel_scores, recon_last * model.std + model.mean
        index, group_row = model.adapters.index, len(model.adapters)
        rows = np.fromiter((index.get(stream, group_row) for stream, _, _ in runs), dtype=np.intp, count=k)
        row_of = np.repeat(rows, lengths)
        return channel_scores, recon_last * self._row_std[row_of] + self._row_mean[row_of]


_Rebased: TypeAlias = tuple["slice | NDArray[np.intp]", FloatArray, FloatArray]
"""Rows of a batch scored with a re-baselined scaler, and its (mean, std) in raw units."""
