"""Bounded continual fine-tuning of the model: does it help on non-stationary feeds?

    .venv/bin/python bench/finetune.py                 # every case, ~10 min on 2 loaded cores
    .venv/bin/python bench/finetune.py --cases level_shift drift_slow --json out.json
    .venv/bin/python bench/finetune.py --variants B-per-map --seed 1   # A and the named variants
    .venv/bin/python bench/finetune.py --summarize s0.json s1.json      # pooled over runs

Issue 9 asks to try adapting the model itself to a new regime (fine-tuning on recent
normal windows, off the scoring thread, under a CPU budget) and to keep it only where it
measurably helps. Each case trains ONE model (`configs/univariate.yaml` or
`configs/pump.yaml`, first 15 % of the rows, at most 750, as bench/shifts.py) and streams
the whole series through the live `Runner` (as `run_backtest` does: row by row, a scoring
batch every 256 rows) under these variants:

  A       frozen model + the default online calibration (what ships)
  B-reg   A + a tune after every `regime_change` event: once `collect` (300) rows have
          passed since the event, tune a copy on the quiet windows since the event
  B-per   B-reg + a periodic tune every `every` (1000) rows on the quiet windows of
          the last `recent` (1000) rows
  C-per   the control: B-per's triggers and swaps with 0 optimizer steps (the same
          weights, a refitted prior, the calibration restart a swap brings)
  B-per-keep  B-per, the calibrator keeps its statistics over each swap
  B-per-map   B-per-keep, every stream's log-error statistics mapped onto the tuned model
          (x -> a + b x from both models' log errors on the tune's held-out windows)

"Quiet" = the calibrator scored the window < 1.0 and the alarm was not firing after it:
what the pipeline itself considered normal. A tune is 200 Adam steps (conv1d: 150) at the
training learning rate on batches of `model.batch_size` windows drawn from those windows,
with the training corruption (`train.py`'s `dae_step`, seeded: deterministic), from a copy
of the serving weights; its threshold is refitted (`fit_threshold`, the config's method)
on the tuned model's errors of the newest 25 % of those windows (held out of the tune).
The tuned model is installed `lag` (64) rows after the trigger with `Runner.install`,
the daemon's model swap: a data-defined swap point, so a live tune done off the scoring
thread and a replay that blocks on it swap at the same window. A swap restarts the
stream's online calibration from the new prior (as every model swap does), except in
B-per-keep and B-per-map. `--offline`: online calibration off in every variant (the model's own
absorption of a slow fault, without the calibrator's). Tune CPU seconds (`time.process_time`, one torch
thread) are reported per variant, total and the largest single tune (budget: <= 1 s).

The shifts.py cases get a *probe*: a short burst at 85 % of the rows, inside the new
regime (the shift's own label is at 60 %), so the table shows whether the adapted model
sees an anomaly in the new regime better than the frozen one. Risk cases: a slow drift
fault that grows over hours and stays on to the end (a tune on "normal" windows can
learn it as normal).

Cases (generators of bench/shifts.py, 60 s period; `monitor.core.synthetic.pump`, 1 s):

  level_shift, variance_change, trend_change, daily, random_walk, heavy_tail, sawtooth
                  shifts.py's series + a probe of 15 rows (`PROBE` gives each amplitude,
                  about 5 noise sd of the regime it lands in; daily: 6 rows at 0.5)
  drift_slow      sin + 0.2 noise, 6000 rows; from 40 % on a drift that grows linearly to
                  +2.0 at the end (60 h), all labelled (risk)
  pump_steps      20 000 rows, set-point steps (4/h), a cavitation fault at 85 % (300 rows)
  pump_recal      as pump_steps, and from 50 % on the flow sensor reads +15 for good
                  (a recalibrated sensor: a regime change), cavitation at 85 %
  pump_bearing_slow  30 000 rows; from 40 % a bearing fault ramping over 10 000 rows to
                  +0.08 vibration / +6 degC, labelled to the end (risk)

Sensor checks are off (`sensors=False`, as the retrain gates judge a model): this bench
judges the model, and with them on the shipped pipeline crashes on trend_change (the
trend leaves the learnt sensor range, the only channel is masked, its windows score a raw
error of 0, the calibrator re-baselines on ln(1e-300) and `math.exp` overflows; also
`bench/shifts.py --cases trend_change` on main 255c29e).

Per case and variant: each labelled stretch detected (y/n) and delay (rows), the share
of fault rows alerting for the long faults, false-alarm episodes per 10 000 normal rows,
the alerting share of normal rows, regime_change events, tunes and their CPU seconds.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
import shifts  # noqa: E402
import torch  # noqa: E402

from monitor.app.training import StreamData, train_bundle  # noqa: E402
from monitor.core.config import Config, load_config  # noqa: E402
from monitor.core.fleet import Fleet  # noqa: E402
from monitor.core.model.bundle import load_bundle  # noqa: E402
from monitor.core.model.calibrate import fit_threshold  # noqa: E402
from monitor.core.model.scorer import AutoencoderScorer  # noqa: E402
from monitor.core.model.train import _deterministic, dae_step  # noqa: E402
from monitor.core.runner import Runner  # noqa: E402
from monitor.core.scoring_model import ScoringModel  # noqa: E402
from monitor.core.synthetic import CHANNELS, Fault, pump  # noqa: E402
from monitor.core.types import Alert  # noqa: E402

Series = tuple[np.ndarray, np.ndarray, np.ndarray]  # times, values (N, C), labels

# ---------------------------------------------------------------------------- cases

PROBE = {  # shifts.py case -> (amplitude, rows) of the burst at 85 %
    "level_shift": (1.0, 15),
    "variance_change": (4.0, 15),
    "trend_change": (1.0, 15),
    "daily": (0.5, 6),
    "random_walk": (0.25, 15),
    "heavy_tail": (6.0, 15),
    "sawtooth": (0.25, 15),
}


PROBE_SCALE = [1.0]  # --probe-scale: every probe's amplitude times this


def _probed(name: str) -> Callable[[int], Series]:
    def make(seed: int) -> Series:
        t, v, lab = shifts.CASES[name](seed)
        v, lab = v.copy(), lab.copy()
        amp, rows = PROBE[name]
        amp *= PROBE_SCALE[0]
        s = int(0.85 * len(t))
        v[s : s + rows] += amp
        lab[s : s + rows] = 1
        return t, v[:, None], lab

    return make


def drift_slow(seed: int, n: int = 6000) -> Series:
    rng = np.random.default_rng(seed)
    v, lab, s = shifts._base(n, rng), np.zeros(n), int(0.4 * n)
    v[s:] += 2.0 * np.arange(n - s) / (n - s)
    lab[s:] = 1
    return shifts._grid(n), v[:, None], lab


def pump_steps(seed: int, n: int = 20_000) -> Series:
    s = int(0.85 * n)
    return pump(n, seed=seed, faults=[Fault(s, s + 300, "cavitation")])


def pump_recal(seed: int, n: int = 20_000) -> Series:
    t, v, lab = pump_steps(seed, n)
    v = v.copy()
    v[n // 2 :, 0] += 15.0
    return t, v, lab


def pump_bearing_slow(seed: int, n: int = 30_000) -> Series:
    t, v, lab = pump(n, seed=seed)
    v, lab, s = v.copy(), lab.copy(), int(0.4 * n)
    ramp = np.minimum(1.0, np.arange(n - s) / 10_000.0)
    v[s:, 3] += 0.08 * ramp
    v[s:, 4] += 6.0 * ramp
    lab[s:] = 1
    return t, v, lab


CASES: dict[str, Callable[[int], Series]] = {name: _probed(name) for name in PROBE}
CASES.update(drift_slow=drift_slow, pump_steps=pump_steps, pump_recal=pump_recal, pump_bearing_slow=pump_bearing_slow)
# optimizer steps per tune: fixed (deterministic), sized to <= 1 s of one loaded core here
STEPS_DENSE, STEPS_CONV = 200, 150
LONG_FAULT = {"drift_slow", "pump_bearing_slow"}  # report the share of fault rows alerting


def config_for(name: str) -> tuple[Config, list[str]]:
    """The case's config, with the errors-only re-baseline the trial was measured against
    (`rebaseline_scaler` off: its one-chunk scaler trials score windows a second time, which
    `Recording` would take for more windows than the pipeline scored)."""
    pump_case = name.startswith("pump")
    cfg = load_config(ROOT / "configs" / ("pump.yaml" if pump_case else "univariate.yaml"), environ={})
    online = dataclasses.replace(cfg.calibration.online, rebaseline_scaler=False)
    cfg = dataclasses.replace(cfg, calibration=dataclasses.replace(cfg.calibration, online=online))
    return cfg, list(CHANNELS) if pump_case else ["value"]


# ---------------------------------------------------------------------------- tuning


@dataclasses.dataclass
class Tuning:
    regime: bool = True  # tune after each regime_change
    every: int = 0  # rows between periodic tunes (0: none)
    recent: int = 1000  # rows of quiet windows a periodic tune learns from
    collect: int = 300  # rows after a regime_change before its tune
    lag: int = 64  # rows from a tune's trigger to its swap (the data-defined swap point)
    steps: int = 200  # optimizer steps per tune (fixed: deterministic; CPU time is measured)
    holdout: float = 0.25  # newest share of the tune windows kept out to refit the threshold
    min_windows: int = 100  # fewer quiet windows: no tune
    keep_calibration: bool = False  # keep the calibrator's statistics over the swap
    map_calibration: bool = False  # ... mapped onto the tuned model's errors (implies keep)


class Recording:
    """A scorer that keeps a copy of every window it scores (the pipeline's own windows)."""

    def __init__(self, inner: AutoencoderScorer):
        self.inner = inner
        self.module = inner.module
        self.parts: list[np.ndarray] = []
        reconstruct = getattr(inner, "reconstruct", None)
        if reconstruct is not None:
            self.reconstruct = reconstruct

    def errors(self, x: np.ndarray):
        self.parts.append(np.array(x, dtype=np.float32))
        return self.inner.errors(x)

    def errors_and_codes(self, x: np.ndarray):
        self.parts.append(np.array(x, dtype=np.float32))
        return self.inner.errors_and_codes(x)


def fine_tune(module: torch.nn.Module, windows: np.ndarray, cfg: Config, steps: int, seed: int) -> torch.nn.Module:
    """`steps` Adam steps from a copy of `module` on `windows` (N, W, C), train.py's objective."""
    mc = cfg.model
    tuned = copy.deepcopy(module)
    for p in tuned.parameters():
        p.requires_grad_(True)
    data = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))
    gen = torch.Generator().manual_seed(seed)
    noise_gen = torch.Generator().manual_seed(seed + 1)
    with _deterministic(torch.device("cpu")):
        opt = torch.optim.Adam(tuned.parameters(), lr=mc.learning_rate, weight_decay=mc.weight_decay)
        tuned.train()
        for _ in range(steps):
            x = data[torch.randint(len(data), (min(mc.batch_size, len(data)),), generator=gen)]
            dae_step(tuned, x, mc, noise_gen, opt)
    tuned.eval()
    return tuned


def tuned_model(
    base: ScoringModel, windows: np.ndarray, cfg: Config, tune: Tuning, k: int
) -> tuple[ScoringModel, float, float] | None:
    """The tuned model and the affine map ``ln e_new ~ a + b ln e_old`` that both models'
    errors on the held-out windows give (mean and spread of the log errors)."""
    n_hold = max(20, int(tune.holdout * len(windows)))
    fit, hold = windows[:-n_hold], windows[-n_hold:]
    if len(fit) < 20:
        return None
    assert base.scorer is not None
    module = fine_tune(base.scorer.module, fit, cfg, tune.steps, cfg.model.seed + 1000 * k)
    scorer = AutoencoderScorer(module)
    raw, _, _ = scorer.errors(hold)
    threshold = fit_threshold(raw, cfg.calibration)["threshold"]
    new = np.log(np.maximum(raw.astype(np.float64), 1e-12))
    old = np.log(np.maximum(base.scorer.errors(hold)[0].astype(np.float64), 1e-12))
    b = float(new.std() / old.std()) if old.std() > 0 else 1.0
    a = float(new.mean() - b * old.mean())
    model = dataclasses.replace(base, version=f"{base.version}+ft{k}", scorer=scorer, threshold=threshold)
    return model, a, b


def map_calibrator(cal, a: float, b: float, prior: float) -> None:
    """Move every stream's log-error statistics by ``x -> a + b x`` (bench only: the
    fixed-point chunk sums lose their integer values, which batch independence needs)."""
    fx = 1024.0  # calibrate._X_SCALE
    for st in cal.streams.values():
        st.s1, st.s2 = a * st.s0 + b * st.s1, a * a * st.s0 + 2 * a * b * st.s1 + b * b * st.s2
        st.d1, st.d2 = a * st.d0 + b * st.d1, a * a * st.d0 + 2 * a * b * st.d1 + b * b * st.d2
        af = a * fx
        st.p1, st.p2 = af * st.p0 + b * st.p1, af * af * st.p0 + 2 * af * b * st.p1 + b * b * st.p2
        st.prior = prior
        cal._moments(st)


# ---------------------------------------------------------------------------- the run


@dataclasses.dataclass
class Outcome:
    alert: np.ndarray  # (N,) alarm state after each row
    alerts: list[Alert]
    tunes: int
    tune_cpu: list[float]
    swaps_at: list[int]


def stream(cfg: Config, t: np.ndarray, v: np.ndarray, model: ScoringModel, tune: Tuning | None, train: int) -> Outcome:
    """Rows through the live runner, as `run_backtest`; with `tune`: fine-tunes and swaps."""
    gcfg = cfg.fleet()[0]
    group = gcfg.name
    name = cfg.data.stream
    recorder = Recording(model.scorer)  # type: ignore[arg-type]
    serving = dataclasses.replace(model, scorer=recorder)
    fleet = Fleet.single(serving, gcfg, sensors=False)  # the model alone (see the docstring)
    w_time: list[float] = []
    w_score: list[float] = []
    alerts: list[Alert] = []
    firing_since: list[tuple[float, float | None]] = []  # anomaly episodes (start, end)

    def scored(r) -> None:
        w_time.extend(r.scores.times)
        w_score.extend(r.scores.score)

    def alerted(a: Alert) -> None:
        alerts.append(a)
        if a.kind != "anomaly":
            return
        if a.state == "firing":
            firing_since.append((a.started_at, None))
        elif firing_since and firing_since[-1][1] is None:
            firing_since[-1] = (firing_since[-1][0], a.ended_at)

    runner = Runner(fleet, on_scores=scored, on_alert=alerted)
    n = len(t)
    row_windows = np.zeros(n, dtype=np.int64)
    pending_swaps: dict[int, tuple[ScoringModel, float, float]] = {}
    handled_events = 0
    next_periodic = train + tune.every if tune is not None and tune.every else None
    cpu: list[float] = []
    swaps: list[int] = []
    regime_due: list[tuple[int, float]] = []  # (row of the tune, data time the regime began)

    def quiet_windows(t0: float, t1: float) -> np.ndarray:
        runner.flush()
        x = np.concatenate(recorder.parts) if recorder.parts else np.zeros((0, 1, 1), np.float32)
        recorder.parts = [x]
        wt, ws = np.asarray(w_time), np.asarray(w_score)
        assert len(x) == len(wt), (len(x), len(wt))
        ok = (wt > t0) & (wt <= t1) & (ws < 1.0)
        for s, e in firing_since:
            ok &= ~((wt >= s) & (wt <= (e if e is not None else np.inf)))
        return x[ok]

    def start_tune(i: int, t0: float) -> None:
        windows = quiet_windows(t0, float(t[i]))
        if len(windows) < tune.min_windows:  # type: ignore[union-attr]
            return
        c0 = time.process_time()
        current = fleet.model(group)
        assert current is not None and isinstance(current.scorer, Recording)
        base = dataclasses.replace(current, scorer=current.scorer.inner)
        new = tuned_model(base, windows, cfg, tune, len(cpu) + 1)  # type: ignore[arg-type]
        cpu.append(time.process_time() - c0)
        if new is not None:
            pending_swaps[i + tune.lag] = new  # type: ignore[union-attr]

    for i in range(n):
        runner.push_row(name, float(t[i]), v[i])
        row_windows[i] = runner.windows + runner.pending
        if (i + 1) % 256 == 0 and runner.pending:
            runner.flush()
        if tune is None:
            continue
        if i in pending_swaps:
            new, a, b = pending_swaps.pop(i)
            pipe = fleet.pipeline(group)
            assert pipe is not None
            old_cal = pipe.calibrator
            rec = Recording(new.scorer)  # type: ignore[arg-type]
            rec.parts = recorder.parts
            runner.install(group, dataclasses.replace(new, scorer=rec))
            recorder = rec
            if tune.keep_calibration or tune.map_calibration:
                pipe.calibrator = old_cal
            if tune.map_calibration:
                map_calibrator(old_cal, a, b, new.threshold)
            swaps.append(i)
        if tune.regime:
            events = [a for a in alerts if a.kind == "regime_change"]
            for ev in events[handled_events:]:
                at = float(ev.ended_at or ev.started_at)
                regime_due.append((int(np.searchsorted(t, at)) + tune.collect, at))
            handled_events = len(events)
            if regime_due and i >= regime_due[0][0]:
                start_tune(i, regime_due.pop(0)[1])
                if next_periodic is not None:
                    next_periodic = i + tune.every
        if next_periodic is not None and i >= next_periodic:
            start_tune(i, float(t[max(0, i - tune.recent)]))
            next_periodic = i + tune.every
    runner.finish()
    if n:
        row_windows[-1] = len(w_time)
    changes = {(a.started_at if a.state == "firing" else a.ended_at): a.state for a in alerts if a.kind == "anomaly"}
    w_state = np.zeros(len(w_time), dtype=np.int8)
    firing = 0
    for j, ts in enumerate(w_time):
        state = changes.get(ts)
        if state is not None:
            firing = 1 if state == "firing" else 0
        w_state[j] = firing
    alert = np.zeros(n, dtype=np.int8)
    has = row_windows > 0
    alert[has] = w_state[row_windows[has] - 1]
    return Outcome(alert, alerts, len(cpu), cpu, swaps)


def measure(o: Outcome, labels: np.ndarray, test: slice, long_fault: bool) -> dict:
    a, lab = o.alert[test].astype(bool), labels[test].astype(bool)
    normal = ~lab
    fa = [(i, j) for i, j in shifts.segments(a) if not lab[i:j].any()]
    out: dict = {
        "fa_per_10k": 1e4 * len(fa) / max(int(normal.sum()), 1),
        "fa_rows_pct": 100.0 * float(a[normal].mean()) if normal.any() else 0.0,
        "regime_changes": sum(1 for x in o.alerts if x.kind == "regime_change"),
        "tunes": o.tunes,
        "tune_cpu_s": float(sum(o.tune_cpu)),
        "tune_cpu_max_s": float(max(o.tune_cpu, default=0.0)),
        "segments": [],
    }
    for i, j in shifts.segments(lab):
        hits = np.flatnonzero(a[i:j])
        seg = {"detected": bool(hits.size), "delay_rows": int(hits[0]) if hits.size else None}
        if long_fault:
            seg["fault_rows_alerting_pct"] = 100.0 * float(a[i:j].mean())
        out["segments"].append(seg)
    return out


VARIANTS = ("A", "C-per", "B-reg", "B-per", "B-per-keep", "B-per-map")


def tuning_for(label: str, steps: int) -> Tuning | None:
    """A: frozen; C-per: B-per's swaps with 0 steps (the same weights, a refitted prior
    and a calibration restart: the control); B-*: see the module doc."""
    if label == "A":
        return None
    periodic = label != "B-reg"
    return Tuning(
        regime=True,
        every=1000 if periodic else 0,
        steps=0 if label == "C-per" else steps,
        keep_calibration=label.endswith("-keep"),
        map_calibration=label.endswith("-map"),
    )


def run_case(name: str, seed: int, online: bool = True, variants: tuple[str, ...] = VARIANTS) -> dict:
    cfg, channels = config_for(name)
    if not online:
        cal = cfg.calibration
        cfg = dataclasses.replace(
            cfg, calibration=dataclasses.replace(cal, online=dataclasses.replace(cal.online, enabled=False))
        )
    steps = STEPS_CONV if cfg.model.architecture == "conv1d" else STEPS_DENSE
    t, v, lab = CASES[name](seed)
    n = len(t)
    train = min(int(0.15 * n), 750)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        sd = StreamData(cfg.data.stream, channels, t[:train], v[:train])
        outcome = train_bundle([sd], cfg, Path(tmp), write_plots=False)
        model = ScoringModel.from_bundle(load_bundle(outcome.bundle_path))
    row: dict = {"case": name, "rows": n, "train_rows": train, "train_s": time.perf_counter() - started}
    for label in variants:
        o = stream(cfg, t, v, model, tuning_for(label, steps), train)
        row[label] = measure(o, lab, slice(train, n), name in LONG_FAULT)
    return row


def fmt(m: dict) -> str:
    segs = " ".join(
        ("y" if s["detected"] else "n")
        + ("" if s["delay_rows"] is None else f"@{s['delay_rows']}")
        + (f"({s['fault_rows_alerting_pct']:.0f}%)" if "fault_rows_alerting_pct" in s else "")
        for s in m["segments"]
    )
    return (
        f"{segs:>14} {m['fa_per_10k']:6.1f} {m['fa_rows_pct']:5.1f} {m['regime_changes']:3d} "
        f"{m['tunes']:3d} {m['tune_cpu_s']:5.2f} {m['tune_cpu_max_s']:4.2f}"
    )


def summarize(runs: list[list[dict]]) -> list[str]:
    """Per variant over every (seed, case): stretches detected, paired delays and false
    alarms against A, tune CPU. `runs`: the --json output of one or more runs."""
    rows = [r for run in runs for r in run]
    lines = [f"summary over {len(rows)} (seed, case) runs; paired against A on the same model"]
    for lab in [v for v in VARIANTS if all(v in r for r in rows)]:
        det = tot = 0
        probe_det = probe_tot = 0
        delays: list[int] = []
        worse = better = 0
        fa, fa_rows, cov = [], [], []
        cpu, cpu_max = 0.0, 0.0
        for r in rows:
            m, a = r[lab], r["A"]
            for k, (seg, aseg) in enumerate(zip(m["segments"], a["segments"], strict=True)):
                tot += 1
                det += seg["detected"]
                if k == len(m["segments"]) - 1 and r["case"] in PROBE:
                    probe_tot += 1
                    probe_det += seg["detected"]
                if seg["detected"] and aseg["detected"]:
                    delays.append(seg["delay_rows"] - aseg["delay_rows"])
                if "fault_rows_alerting_pct" in seg:
                    cov.append(seg["fault_rows_alerting_pct"])
            fa.append(m["fa_per_10k"])
            fa_rows.append(m["fa_rows_pct"])
            worse += m["fa_per_10k"] > a["fa_per_10k"] + 1e-9
            better += m["fa_per_10k"] < a["fa_per_10k"] - 1e-9
            cpu += m["tune_cpu_s"]
            cpu_max = max(cpu_max, m["tune_cpu_max_s"])
        dl = f"{np.median(delays):+.0f}" if delays else "-"
        lines.append(
            f"{lab:10s} detected {det}/{tot} (probes {probe_det}/{probe_tot}), delay vs A median {dl} rows "
            f"on {len(delays)} both caught; FA/10k mean {np.mean(fa):.1f} (worse than A in {worse}, better in "
            f"{better}); FA rows {np.mean(fa_rows):.1f} %; long faults alerting {np.mean(cov) if cov else 0:.0f} % "
            f"of rows; tune cpu {cpu:.1f} s, max {cpu_max:.2f} s"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS, help="A is always run")
    ap.add_argument("--probe-scale", type=float, default=1.0, help="the probes' amplitudes times this")
    ap.add_argument("--offline", action="store_true", help="online calibration off (the model's own absorption)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--summarize", nargs="+", type=Path, metavar="JSON", help="only summarize earlier --json runs")
    args = ap.parse_args(argv)
    if args.summarize:
        print("\n".join(summarize([json.loads(p.read_text()) for p in args.summarize])))
        return 0
    torch.set_num_threads(1)
    PROBE_SCALE[0] = args.probe_scale
    variants = tuple(v for v in VARIANTS if v == "A" or v in args.variants)
    keep = (" --offline" if args.offline else "") + (
        f" --probe-scale {args.probe_scale:g}" if args.probe_scale != 1 else ""
    )
    print(f"# .venv/bin/python bench/finetune.py --seed {args.seed}{keep} --cases {' '.join(args.cases)}")
    print(
        "# per variant: labelled stretches det@delay (fault rows alerting), FA/10k, FA rows %, "
        "regime_change events, tunes, tune cpu s (total, max)"
    )
    rows = []
    for name in args.cases:
        row = run_case(name, args.seed, not args.offline, variants)
        rows.append(row)
        print(f"{name:18s}", " | ".join(f"{lab}: {fmt(row[lab])}" for lab in variants), flush=True)
    print("\n".join(summarize([rows])))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
